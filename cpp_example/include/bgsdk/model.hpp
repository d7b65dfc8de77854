// bgsdk/model.hpp: a bgsdk full-image ONNX model, run with ONNX Runtime's C++ API.
//
// The library an integrator links (CMake target bgsdk::model, see README.md). It owns the whole
// model contract: the I/O names, the image size and channel count the model takes (read from the
// model's input shape and its bgsdk.contract metadata, never assumed), how a golden-template pair
// fills the reference channels, and the input scaling (pixels / the contract's input_scale, 255 by
// default) -- so `Model::run` takes pixels exactly as they are stored in the strip files (0..255)
// and gives back the defect heatmap, the same numbers as `bgsdk.Segmenter(model).run(image).heatmap`.
//
// This header needs only the C++17 standard library; ONNX Runtime stays inside the library.
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

// Checks the ONNX Runtime library against the headers the library was built with and sets up the
// runtime. Model does this itself; call it first only to print the version. Returns the version.
std::string init_onnxruntime();

// The ONNX Runtime C API version the library was built against (ORT_API_VERSION).
int onnxruntime_api_version();

// What the model's bgsdk.contract metadata says (all optional in the file).
struct Contract {
  bool present = false;
  double input_scale = 255.0;  // the model expects file values / input_scale
  std::optional<int64_t> height, width;
  std::optional<int64_t> channels;  // the number of names in "input_channels"
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
  // Loads `path` and checks it is a bgsdk full-image model: one float32 input 'input' (N,C,H,W) and
  // an output 'output'. threads = ONNX Runtime intra-op threads, 0 = its own choice.
  explicit Model(const std::string& path, int threads = 0);
  // The same, from the file's bytes already in memory (read_verified_model() in integrity.hpp):
  // the bytes that were checked are the bytes that are loaded. `path` names the model in errors.
  Model(const std::string& path, const std::vector<unsigned char>& bytes, int threads = 0);
  ~Model();
  Model(Model&&) noexcept;
  Model& operator=(Model&&) noexcept;

  // What every image must be: C channels (target, then C-1 references; 3 for target, ref1, ref2)
  // of H x W pixels -- from the contract, else from the model's fixed input shape.
  int64_t channels() const;
  int64_t height() const;
  int64_t width() const;

  const Contract& contract() const;
  const OperatingPoint& operating_point() const;
  const std::vector<int64_t>& input_shape() const;  // (N,C,H,W); -1 where symbolic

  // Throws an Error naming `source` unless an image of `channels` x height x width fits the model:
  // the model's size, and either the model's channel count or 2 (a golden-template pair).
  void check_image(int64_t channels, int64_t height, int64_t width, const std::string& source) const;

  // The model's C input channels from `image` ((K,H,W) float32, K = channels() or 2): unchanged
  // when K = C; for a golden-template pair (target, template) the template fills every reference
  // channel, e.g. (target, template, template) for a 3-channel model. Values stay in file units.
  std::vector<float> fill_references(const std::vector<float>& image, int64_t height, int64_t width) const;

  // Runs one image: `image` is (K,H,W) float32 in file units (0..255), K = channels() (target,
  // ref1, ref2) or 2 (target, golden template; see fill_references). It is divided by the
  // contract's input_scale here (float32, as the SDK does). Returns the (H,W) defect probability
  // (output channel 0).
  std::vector<float> run(const std::vector<float>& image, int64_t height, int64_t width);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace bgsdk
