// bgsdk_model.cpp: the Model of bgsdk_model.hpp (see there). Needs ONNX Runtime's C++ API only.
#define ORT_API_MANUAL_INIT  // check the library version ourselves, with a clear message
#include "bgsdk_model.hpp"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <utility>

namespace bgsdk {
namespace {

constexpr const char* kContractKey = "bgsdk.contract";  // bgsdk.contract.CONTRACT_KEY
constexpr const char* kOperatingPointKey = "bgsdk.operating_point";  // bgsdk.operating_point.OPERATING_POINT_KEY
constexpr const char* kInputName = "input";             // bgsdk.contract INPUT_NAME
constexpr const char* kOutputName = "output";           // bgsdk.contract OUTPUT_NAME

std::optional<double> json_top_level_number(const std::string& json, const std::string& key) {
  const auto k = json_top_level_value(json, key);
  if (!k) return std::nullopt;
  const char* begin = json.c_str() + *k;
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin) return std::nullopt;
  return v;
}

std::string join_names(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "'" : ", '") + x + "'";
  return s.empty() ? std::string("none") : s;
}

// One environment per process (ONNX Runtime's logging and global state); made by init_onnxruntime.
std::unique_ptr<Ort::Env>& global_env() {
  static std::unique_ptr<Ort::Env> env;
  return env;
}

}  // namespace

std::optional<size_t> json_top_level_value(const std::string& json, const std::string& key) {
  int depth = 0;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      std::string s;
      size_t j = i + 1;
      for (; j < json.size() && json[j] != '"'; ++j) {
        if (json[j] == '\\' && j + 1 < json.size()) ++j;
        s += json[j];
      }
      size_t k = j + 1;
      while (k < json.size() && std::isspace(static_cast<unsigned char>(json[k]))) ++k;
      if (depth == 1 && k < json.size() && json[k] == ':' && s == key) {
        ++k;
        while (k < json.size() && std::isspace(static_cast<unsigned char>(json[k]))) ++k;
        return k;
      }
      i = j;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return std::nullopt;
}

std::string shape_str(const std::vector<int64_t>& shape) {
  std::ostringstream s;
  s << '(';
  for (size_t i = 0; i < shape.size(); ++i) {
    if (i) s << ", ";
    if (shape[i] < 0) s << '?'; else s << shape[i];
  }
  if (shape.size() == 1) s << ',';
  s << ')';
  return s.str();
}

// Checks the library before any C++ API use: a binary needs headers no newer than the library.
std::string init_onnxruntime() {
  const OrtApiBase* base = OrtGetApiBase();
  if (!global_env()) {
    const OrtApi* api = base->GetApi(ORT_API_VERSION);
    if (api == nullptr) {
      throw Error("libonnxruntime", std::string("version ") + base->GetVersionString() +
                                        " is older than the headers this program was built with (API " +
                                        std::to_string(ORT_API_VERSION) + "); rebuild against matching headers");
    }
    Ort::InitApi(api);
    global_env() = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "bgsdk");
  }
  return base->GetVersionString();
}

int onnxruntime_api_version() { return ORT_API_VERSION; }

struct Model::Impl {
  std::string path;
  Ort::Session session{nullptr};
  std::vector<int64_t> input_shape;
  Contract contract;
  OperatingPoint op;
  std::vector<float> scaled;  // the model's input buffer, reused across runs

  void check_signature();
  void read_contract();
  void read_operating_point();
};

namespace {
Ort::SessionOptions session_options(int threads) {
  Ort::SessionOptions options;
  if (threads > 0) options.SetIntraOpNumThreads(threads);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);  // = Python's default
  return options;
}
}  // namespace

Model::Model(const std::string& path, int threads) : impl_(std::make_unique<Impl>()) {
  init_onnxruntime();
  impl_->path = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(path, "file not found");
  try {
    impl_->session = Ort::Session(*global_env(), path.c_str(), session_options(threads));
  } catch (const Ort::Exception& e) {
    throw Error(path, std::string("cannot load the model (") + e.what() + ")");
  }
  impl_->check_signature();
  impl_->read_contract();
  impl_->read_operating_point();
}

Model::Model(const std::string& path, const std::vector<unsigned char>& bytes, int threads)
    : impl_(std::make_unique<Impl>()) {
  init_onnxruntime();
  impl_->path = path;
  try {
    impl_->session = Ort::Session(*global_env(), bytes.data(), bytes.size(), session_options(threads));
  } catch (const Ort::Exception& e) {
    throw Error(path, std::string("cannot load the model (") + e.what() + ")");
  }
  impl_->check_signature();
  impl_->read_contract();
  impl_->read_operating_point();
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

const Contract& Model::contract() const { return impl_->contract; }
const std::vector<int64_t>& Model::input_shape() const { return impl_->input_shape; }

// Same check as the SDK: the image must match the model's (N,3,H,W) input.
void Model::check_size(int64_t height, int64_t width, const std::string& source) const {
  const auto& s = impl_->input_shape;
  const int64_t h = s[2] > 0 ? s[2] : impl_->contract.height.value_or(-1);
  const int64_t w = s[3] > 0 ? s[3] : impl_->contract.width.value_or(-1);
  if ((h > 0 && height != h) || (w > 0 && width != w)) {
    throw Error(source, "image is " + std::to_string(height) + "x" + std::to_string(width) +
                            " (HxW) but the model " + impl_->path + " expects input " + shape_str({s[0], 3, h, w}));
  }
}

std::vector<float> Model::run(const std::vector<float>& chw, int64_t height, int64_t width) {
  const auto& path = impl_->path;
  if (static_cast<int64_t>(chw.size()) != 3 * height * width)
    throw Error(path, "run() needs 3*H*W values, got " + std::to_string(chw.size()));
  check_size(height, width, "image");
  // The SDK's normalisation: float32 division by the contract's scale (255).
  const float scale = static_cast<float>(impl_->contract.input_scale);
  impl_->scaled.resize(chw.size());
  std::transform(chw.begin(), chw.end(), impl_->scaled.begin(), [scale](float v) { return v / scale; });

  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const std::array<int64_t, 4> shape{1, 3, height, width};
  Ort::Value input = Ort::Value::CreateTensor<float>(cpu, impl_->scaled.data(), impl_->scaled.size(), shape.data(),
                                                     shape.size());
  const char* in_names[] = {kInputName};
  const char* out_names[] = {kOutputName};
  std::vector<Ort::Value> outputs;
  try {
    outputs = impl_->session.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
  } catch (const Ort::Exception& e) {
    throw Error(path, std::string("inference failed (") + e.what() + ")");
  }
  const auto out_shape = outputs.at(0).GetTensorTypeAndShapeInfo().GetShape();
  if (out_shape.size() != 4 || out_shape[0] != 1 || out_shape[1] < 1 || out_shape[2] != height ||
      out_shape[3] != width) {
    throw Error(path, "output '" + std::string(kOutputName) + "' has shape " + shape_str(out_shape) + ", expected " +
                          shape_str({1, 3, height, width}));
  }
  const float* p = outputs[0].GetTensorData<float>();
  return std::vector<float>(p, p + height * width);  // channel 0
}

void Model::Impl::check_signature() {
  Ort::AllocatorWithDefaultOptions alloc;
  std::vector<std::string> inputs, outputs;
  for (size_t i = 0; i < session.GetInputCount(); ++i) inputs.emplace_back(session.GetInputNameAllocated(i, alloc).get());
  for (size_t i = 0; i < session.GetOutputCount(); ++i)
    outputs.emplace_back(session.GetOutputNameAllocated(i, alloc).get());
  if (inputs.size() != 1 || inputs[0] != kInputName)
    throw Error(path, "expected one input named 'input' (a bgsdk full-image model), found " + join_names(inputs));
  if (std::find(outputs.begin(), outputs.end(), kOutputName) == outputs.end())
    throw Error(path, "expected an output named 'output' (a bgsdk full-image model), found " + join_names(outputs));
  const auto type_info = session.GetInputTypeInfo(0);
  if (type_info.GetONNXType() != ONNX_TYPE_TENSOR) throw Error(path, "input 'input' is not a tensor");
  const auto tensor = type_info.GetTensorTypeAndShapeInfo();
  if (tensor.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT) throw Error(path, "input 'input' is not float32");
  input_shape = tensor.GetShape();
  if (input_shape.size() != 4 || (input_shape[1] > 0 && input_shape[1] != 3))
    throw Error(path, "input 'input' has shape " + shape_str(input_shape) + ", expected (N, 3, H, W)");
}

void Model::Impl::read_contract() {
  Ort::AllocatorWithDefaultOptions alloc;
  const auto meta = session.GetModelMetadata();
  const auto json = meta.LookupCustomMetadataMapAllocated(kContractKey, alloc);
  if (!json) return;  // not required: the input shape is what is validated
  const std::string text(json.get());
  contract.present = true;
  if (const auto v = json_top_level_number(text, "input_scale")) {
    if (!(*v > 0) || !std::isfinite(*v)) throw Error(path, "contract input_scale is not a positive number");
    contract.input_scale = *v;
  }
  if (const auto v = json_top_level_number(text, "height")) contract.height = static_cast<int64_t>(*v);
  if (const auto v = json_top_level_number(text, "width")) contract.width = static_cast<int64_t>(*v);
  if ((contract.height && input_shape[2] > 0 && *contract.height != input_shape[2]) ||
      (contract.width && input_shape[3] > 0 && *contract.width != input_shape[3]))
    throw Error(path, "contract image size disagrees with the input shape " + shape_str(input_shape));
}

void Model::Impl::read_operating_point() {
  Ort::AllocatorWithDefaultOptions alloc;
  const auto meta = session.GetModelMetadata();
  const auto json = meta.LookupCustomMetadataMapAllocated(kOperatingPointKey, alloc);
  if (!json) return;
  const std::string text(json.get());
  const auto t = json_top_level_number(text, "threshold");
  const auto a = json_top_level_number(text, "min_area");
  if (!t || !std::isfinite(*t) || !a || !(*a >= 1))
    throw Error(path, "metadata 'bgsdk.operating_point' has no valid threshold/min_area");
  op = {true, *t, static_cast<int64_t>(*a)};
}

const OperatingPoint& Model::operating_point() const { return impl_->op; }

}  // namespace bgsdk
