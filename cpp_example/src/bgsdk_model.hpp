// bgsdk_model.hpp: a bgsdk full-image ONNX model, run with ONNX Runtime's C++ API.
//
// The part an integrator copies (with bgsdk_model.cpp). It owns the whole model contract: the
// I/O names, the check that an image fits the model, and the input scaling (pixels / the
// contract's input_scale, 255 by default) -- so `Model::run` takes pixels exactly as they are
// stored in the strip files (0..255) and gives back the defect heatmap, the same numbers as
// `bgsdk.Segmenter(model).run(image).heatmap` in Python.
//
// This header needs only the C++17 standard library; ONNX Runtime stays inside bgsdk_model.cpp.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace bgsdk {

// Every error names the file (or "libonnxruntime") it is about and the problem (cf. bgsdk.errors).
class Error : public std::runtime_error {
 public:
  Error(const std::string& source, const std::string& problem)
      : std::runtime_error(source.empty() ? problem : source + ": " + problem) {}
};

// "(1, 3, 976, 176)", with "?" for a symbolic dimension (a negative value).
std::string shape_str(const std::vector<int64_t>& shape);

// Where the value of a top-level `"key":` starts in a small JSON object (whitespace skipped), or
// nullopt. The model metadata and the manifest need only a few top-level fields, so a tiny scanner
// instead of a JSON library; nested objects such as "extra" are skipped.
std::optional<size_t> json_top_level_value(const std::string& json, const std::string& key);

// Checks the ONNX Runtime library against the headers this program was built with and sets up
// the runtime; call once before creating a Model. Returns the library's version string.
std::string init_onnxruntime();

// The ONNX Runtime C API version the program was built against (ORT_API_VERSION).
int onnxruntime_api_version();

// What the model's bgsdk.contract metadata says (all optional in the file).
struct Contract {
  bool present = false;
  double input_scale = 255.0;  // the model expects file values / input_scale
  std::optional<int64_t> height, width;
};

// The model's calibrated operating point (metadata "bgsdk.operating_point", written by build-model);
// absent in models built before calibration existed: then 0.5 / 1, as in the Python SDK.
struct OperatingPoint {
  bool present = false;
  double threshold = 0.5;
  int64_t min_area = 1;
};

class Model {
 public:
  // Loads `path` and checks it is a bgsdk full-image model: one float32 input 'input' (N,3,H,W)
  // and an output 'output'. threads = ONNX Runtime intra-op threads, 0 = its own choice.
  Model(const std::string& path, int threads = 0);
  // The same, from the file's bytes already in memory (read_verified_model() in integrity.hpp):
  // the bytes that were checked are the bytes that are loaded. `path` names the model in errors.
  Model(const std::string& path, const std::vector<unsigned char>& bytes, int threads = 0);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  const Contract& contract() const;
  const OperatingPoint& operating_point() const;
  const std::vector<int64_t>& input_shape() const;  // (N,3,H,W); -1 where symbolic

  // Throws an Error naming `source` when an image of this size does not fit the model.
  void check_size(int64_t height, int64_t width, const std::string& source) const;

  // Runs one image: `chw` is (3,H,W) float32 in file units (0..255): target, ref1, ref2. It is
  // divided by the contract's input_scale here (float32, as the SDK does). Returns the (H,W)
  // defect probability (output channel 0).
  std::vector<float> run(const std::vector<float>& chw, int64_t height, int64_t width);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bgsdk
