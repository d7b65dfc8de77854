// model.cpp: the Model of bgsdk/model.hpp (see there). Needs ONNX Runtime's C++ API only.
#define ORT_API_MANUAL_INIT  // check the library version ourselves, with a clear message
#include "bgsdk/model.hpp"

#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <filesystem>
#include <sstream>
#include <utility>

#include "json_scan.hpp"

namespace bgsdk {
namespace {

constexpr const char* kContractKey = "bgsdk.contract";                // bgsdk.contract.CONTRACT_KEY
constexpr const char* kOperatingPointKey = "bgsdk.operating_point";  // bgsdk.operating_point.OPERATING_POINT_KEY
constexpr const char* kInputName = "input";                           // bgsdk.contract INPUT_NAME
constexpr const char* kOutputName = "output";                         // bgsdk.contract OUTPUT_NAME
constexpr int64_t kDefaultChannels = 3;  // target, ref1, ref2: the I/O contract, when nothing says otherwise
constexpr int64_t kPairChannels = 2;     // a golden-template pair: target, template

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

Ort::SessionOptions session_options(int threads) {
  Ort::SessionOptions options;
  if (threads > 0) options.SetIntraOpNumThreads(threads);
  options.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);  // = Python's default
  return options;
}

// The model's value for one dimension: the contract's, which a fixed input dimension must agree with
// (else the contract is wrong), or the fixed input dimension; -1 when neither says.
int64_t resolve_dim(std::optional<int64_t> from_contract, int64_t from_shape, const std::string& what,
                    const std::string& path, const std::vector<int64_t>& shape) {
  if (from_contract && from_shape > 0 && *from_contract != from_shape)
    throw Error(path, "contract " + what + " " + std::to_string(*from_contract) + " disagrees with the input shape " +
                          shape_str(shape));
  return from_contract.value_or(from_shape > 0 ? from_shape : -1);
}

// Which plane of a K-plane image feeds model channel c: its own, or for a pair the template for every reference.
size_t source_plane(int64_t c, int64_t k, int64_t model_channels) {
  return static_cast<size_t>(k == model_channels ? c : std::min<int64_t>(c, 1));
}

}  // namespace

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
  int64_t channels = kDefaultChannels, height = -1, width = -1;
  std::vector<float> scaled;  // the model's input buffer, reused across runs

  void open(Ort::Session s);
  int64_t planes(const Model& self, const std::vector<float>& image, int64_t height, int64_t width) const;
  void check_signature();
  void read_contract();
  void read_operating_point();
  void resolve_image();
};

void Model::Impl::open(Ort::Session s) {
  session = std::move(s);
  check_signature();
  read_contract();
  read_operating_point();
  resolve_image();
}

Model::Model(const std::string& path, int threads) : impl_(std::make_unique<Impl>()) {
  init_onnxruntime();
  impl_->path = path;
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) throw Error(path, "file not found");
  try {
    impl_->open(Ort::Session(*global_env(), path.c_str(), session_options(threads)));
  } catch (const Ort::Exception& e) {
    throw Error(path, std::string("cannot load the model (") + e.what() + ")");
  }
}

Model::Model(const std::string& path, const std::vector<unsigned char>& bytes, int threads)
    : impl_(std::make_unique<Impl>()) {
  init_onnxruntime();
  impl_->path = path;
  try {
    impl_->open(Ort::Session(*global_env(), bytes.data(), bytes.size(), session_options(threads)));
  } catch (const Ort::Exception& e) {
    throw Error(path, std::string("cannot load the model (") + e.what() + ")");
  }
}

Model::~Model() = default;
Model::Model(Model&&) noexcept = default;
Model& Model::operator=(Model&&) noexcept = default;

int64_t Model::channels() const { return impl_->channels; }
int64_t Model::height() const { return impl_->height; }
int64_t Model::width() const { return impl_->width; }
const Contract& Model::contract() const { return impl_->contract; }
const OperatingPoint& Model::operating_point() const { return impl_->op; }
const std::vector<int64_t>& Model::input_shape() const { return impl_->input_shape; }

void Model::check_image(int64_t channels, int64_t height, int64_t width, const std::string& source) const {
  const Impl& m = *impl_;
  if (height != m.height || width != m.width) {
    throw Error(source, "image is " + std::to_string(height) + "x" + std::to_string(width) + " (HxW) but the model " +
                            m.path + " expects input " + shape_str({m.input_shape[0], m.channels, m.height, m.width}));
  }
  if (channels != m.channels && channels != kPairChannels) {
    const std::string takes = m.channels == kPairChannels ? "2 (target and a golden template)"
                                                          : std::to_string(m.channels) + " (target and " +
                                                                std::to_string(m.channels - 1) +
                                                                " references) or 2 (target and a golden template)";
    throw Error(source, "image has " + std::to_string(channels) + " channels but the model " + m.path + " takes " + takes);
  }
}

// How many (H,W) planes `image` holds, checked against the model.
int64_t Model::Impl::planes(const Model& self, const std::vector<float>& image, int64_t height, int64_t width) const {
  const size_t plane = height > 0 && width > 0 ? static_cast<size_t>(height * width) : 0;
  if (plane == 0 || image.size() % plane != 0)
    throw Error("image", std::to_string(image.size()) + " values are not whole " + std::to_string(height) + "x" +
                             std::to_string(width) + " planes (K*H*W)");
  const auto k = static_cast<int64_t>(image.size() / plane);
  self.check_image(k, height, width, "image");
  return k;
}

std::vector<float> Model::fill_references(const std::vector<float>& image, int64_t height, int64_t width) const {
  const int64_t k = impl_->planes(*this, image, height, width);
  const size_t plane = static_cast<size_t>(height * width);
  std::vector<float> out(plane * static_cast<size_t>(impl_->channels));
  for (int64_t c = 0; c < impl_->channels; ++c) {
    const auto src = image.begin() + static_cast<std::ptrdiff_t>(source_plane(c, k, impl_->channels) * plane);
    std::copy(src, src + static_cast<std::ptrdiff_t>(plane), out.begin() + static_cast<std::ptrdiff_t>(c * plane));
  }
  return out;
}

std::vector<float> Model::run(const std::vector<float>& image, int64_t height, int64_t width) {
  Impl& m = *impl_;
  const int64_t k = m.planes(*this, image, height, width);
  const size_t plane = static_cast<size_t>(height * width);
  // The SDK's normalisation: float32 division by the contract's scale (255), straight into the input buffer.
  const float scale = static_cast<float>(m.contract.input_scale);
  m.scaled.resize(plane * static_cast<size_t>(m.channels));
  for (int64_t c = 0; c < m.channels; ++c) {
    const float* src = image.data() + source_plane(c, k, m.channels) * plane;
    std::transform(src, src + plane, m.scaled.begin() + static_cast<std::ptrdiff_t>(c * plane),
                   [scale](float v) { return v / scale; });
  }

  const Ort::MemoryInfo cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
  const std::array<int64_t, 4> shape{1, m.channels, height, width};
  Ort::Value input = Ort::Value::CreateTensor<float>(cpu, m.scaled.data(), m.scaled.size(), shape.data(), shape.size());
  const char* in_names[] = {kInputName};
  const char* out_names[] = {kOutputName};
  std::vector<Ort::Value> outputs;
  try {
    outputs = m.session.Run(Ort::RunOptions{nullptr}, in_names, &input, 1, out_names, 1);
  } catch (const Ort::Exception& e) {
    throw Error(m.path, std::string("inference failed (") + e.what() + ")");
  }
  const auto out_shape = outputs.at(0).GetTensorTypeAndShapeInfo().GetShape();
  if (out_shape.size() != 4 || out_shape[0] != 1 || out_shape[1] < 1 || out_shape[2] != height ||
      out_shape[3] != width) {
    throw Error(m.path, "output '" + std::string(kOutputName) + "' has shape " + shape_str(out_shape) +
                            ", expected " + shape_str({1, 3, height, width}));
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
  if (input_shape.size() != 4) throw Error(path, "input 'input' has shape " + shape_str(input_shape) + ", expected (N, C, H, W)");
}

void Model::Impl::read_contract() {
  Ort::AllocatorWithDefaultOptions alloc;
  const auto meta = session.GetModelMetadata();
  const auto text = meta.LookupCustomMetadataMapAllocated(kContractKey, alloc);
  if (!text) return;  // not required: then the input shape says what the model takes
  const std::string s(text.get());
  contract.present = true;
  if (const auto v = json::top_level_number(s, "input_scale")) {
    if (!(*v > 0) || !std::isfinite(*v)) throw Error(path, "contract input_scale is not a positive number");
    contract.input_scale = *v;
  }
  for (auto [key, field] : {std::pair{"height", &contract.height}, std::pair{"width", &contract.width}}) {
    if (const auto v = json::top_level_number(s, key)) {
      if (!(*v >= 1) || *v != std::floor(*v)) throw Error(path, std::string("contract ") + key + " is not a positive integer");
      *field = static_cast<int64_t>(*v);
    }
  }
  if (const auto n = json::top_level_array_size(s, "input_channels")) contract.channels = static_cast<int64_t>(*n);
}

void Model::Impl::read_operating_point() {
  Ort::AllocatorWithDefaultOptions alloc;
  const auto meta = session.GetModelMetadata();
  const auto text = meta.LookupCustomMetadataMapAllocated(kOperatingPointKey, alloc);
  if (!text) return;
  const std::string s(text.get());
  const auto t = json::top_level_number(s, "threshold");
  const auto a = json::top_level_number(s, "min_area");
  if (!t || !std::isfinite(*t) || !a || !(*a >= 1))
    throw Error(path, "metadata 'bgsdk.operating_point' has no valid threshold/min_area");
  op = {true, *t, static_cast<int64_t>(*a)};
}

// Channels, height and width, as the SDK decides them: the contract's, which a fixed input shape
// must agree with, else the fixed input shape. A size that nothing fixes is an error (the SDK's too).
void Model::Impl::resolve_image() {
  const int64_t c = resolve_dim(contract.channels, input_shape[1], "input_channels count", path, input_shape);
  channels = c > 0 ? c : kDefaultChannels;
  if (channels < kPairChannels)
    throw Error(path, "input 'input' has shape " + shape_str(input_shape) +
                          ": a bgsdk model takes the target and at least one reference channel");
  height = resolve_dim(contract.height, input_shape[2], "height", path, input_shape);
  width = resolve_dim(contract.width, input_shape[3], "width", path, input_shape);
  if (height < 1 || width < 1)
    throw Error(path, "input 'input' has no fixed image size " + shape_str(input_shape) + " and the model has no '" +
                          std::string(kContractKey) + "' metadata to say which size it expects");
}

}  // namespace bgsdk
