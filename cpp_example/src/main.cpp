// bgsdk_cpp: run a bgsdk full-image ONNX model on one strip and write the defect heatmap.
//
//   bgsdk_cpp [--repeat N] [--threads N] [--raw-shape A,B,C] [--defects-json FILE]
//             [--threshold T] [--min-area A] [--verify] MODEL INPUT OUTPUT
//
// The same numbers as the Python SDK (bgsdk.Segmenter): strip_io reads INPUT into (3,H,W)
// float32 exactly like bgsdk.io.read_image; bgsdk::Model (bgsdk_model.hpp, the part to copy
// into an application) scales it by 1/255 and runs it; channel 0 of `output` is written.
// Errors print one line `bgsdk_cpp: error: <file>: <problem>` and exit with status 2, like
// the Python command-line tools.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <fstream>
#include <cstdlib>
#include <iostream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "bgsdk_model.hpp"
#include "defects.hpp"
#include "integrity.hpp"
#include "strip_io.hpp"

namespace {

constexpr const char* kProg = "bgsdk_cpp";

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model, input, output;
  int repeat = 1;
  int threads = 0;  // 0 = ONNX Runtime's default (as the Python SDK)
  std::optional<std::vector<int64_t>> raw_shape;
  std::string defects_json;  // empty: no defect list
  std::optional<double> threshold;
  std::optional<int64_t> min_area;
  bool verify = false;  // check MODEL against the sha256 in its model.json before loading it
};

constexpr const char* kUsage =
    "usage: bgsdk_cpp [--repeat N] [--threads N] [--raw-shape A,B,C] [--defects-json FILE] [--threshold T]\n"
    "                 [--min-area A] [--verify] MODEL INPUT OUTPUT\n"
    "\n"
    "Run a bgsdk full-image ONNX model on one strip and write the defect heatmap.\n"
    "\n"
    "  MODEL              full-image model (input 'input' (N,3,H,W), output 'output')\n"
    "  INPUT              float32 TIFF with 3 or 4 channels, (C,H,W) or (H,W,C);\n"
    "                     or raw little-endian float32 with --raw-shape\n"
    "  OUTPUT             heatmap (H,W) float32: .tif/.tiff, .npy, or raw otherwise\n"
    "  --repeat N         run N times and report the median run time (default 1)\n"
    "  --threads N        intra-op threads (default: ONNX Runtime's choice)\n"
    "  --raw-shape A,B,C  INPUT is raw float32 of this shape, e.g. 4,976,176 or 976,176,3\n"
    "  --defects-json F   also write the defect list (as bgsdk's Result.defects) and verdict as JSON\n"
    "  --threshold T      pixel threshold for the defect list (default: the model's operating point, else 0.5)\n"
    "  --min-area A       smallest defect in pixels (default: the model's operating point, else 1)\n"
    "  --verify           refuse MODEL unless its sha256 matches the model.json beside it\n";

int parse_int(const std::string& opt, const std::string& text, int min) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < min || v > 1000000)
    throw UsageError("invalid value '" + text + "' for " + opt + " (an integer >= " + std::to_string(min) + ")");
  return static_cast<int>(v);
}

std::vector<int64_t> parse_shape(std::string text) {
  std::replace(text.begin(), text.end(), 'x', ',');  // 4x976x176 works too
  std::vector<int64_t> shape;
  std::string item;
  std::istringstream s(text);
  while (std::getline(s, item, ',')) shape.push_back(parse_int("--raw-shape", item, 1));
  if (shape.size() != 3) throw UsageError("--raw-shape needs three sizes, e.g. 4,976,176 (got '" + text + "')");
  return shape;
}

Options parse_args(int argc, char** argv) {
  Options o;
  std::vector<std::string> pos;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string {
      if (i + 1 >= argc) throw UsageError("option " + a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      std::exit(0);
    } else if (a == "--repeat") {
      o.repeat = parse_int(a, value(), 1);
    } else if (a == "--threads") {
      o.threads = parse_int(a, value(), 0);
    } else if (a == "--defects-json") {
      o.defects_json = value();
    } else if (a == "--threshold") {
      const std::string t = value();
      char* end = nullptr;
      const double v = std::strtod(t.c_str(), &end);
      if (t.empty() || *end != '\0' || !std::isfinite(v)) throw UsageError("invalid value '" + t + "' for --threshold");
      o.threshold = v;
    } else if (a == "--min-area") {
      o.min_area = parse_int(a, value(), 1);
    } else if (a == "--raw-shape") {
      o.raw_shape = parse_shape(value());
    } else if (a == "--verify") {
      o.verify = true;
    } else if (a.size() > 1 && a[0] == '-' && a != "-") {
      throw UsageError("unknown option " + a);
    } else {
      pos.push_back(a);
    }
  }
  if (pos.size() != 3) throw UsageError("expected MODEL INPUT OUTPUT, got " + std::to_string(pos.size()) + " argument(s)");
  o.model = pos[0];
  o.input = pos[1];
  o.output = pos[2];
  return o;
}

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

int run(const Options& o) {
  using clock = std::chrono::steady_clock;
  const std::string version = bgsdk::init_onnxruntime();
  std::cout << kProg << ": onnxruntime " << version << " (built with API " << bgsdk::onnxruntime_api_version() << ")\n";
  auto t0 = clock::now();
  const strip_io::Image img = strip_io::read_input(o.input, o.raw_shape);
  const double read_ms = ms_since(t0);
  t0 = clock::now();
  bgsdk::Model model = o.verify ? bgsdk::Model(o.model, bgsdk::read_verified_model(o.model), o.threads)
                                : bgsdk::Model(o.model, o.threads);
  const double load_ms = ms_since(t0);
  model.check_size(img.height, img.width, o.input);
  std::vector<float> heatmap;
  std::vector<double> run_ms;
  for (int r = 0; r < o.repeat; ++r) {
    t0 = clock::now();
    heatmap = model.run(img.chw, img.height, img.width);
    run_ms.push_back(ms_since(t0));
  }
  strip_io::write_output(o.output, heatmap, img.height, img.width);
  if (!o.defects_json.empty()) {
    const auto& op = model.operating_point();
    const float threshold = static_cast<float>(o.threshold.value_or(op.threshold));
    const int64_t min_area = o.min_area.value_or(op.min_area);
    const auto defects = bgsdk::find_defects(heatmap, img.height, img.width, threshold, min_area, img.chw);
    std::ofstream f(o.defects_json);
    f << bgsdk::defects_json(defects, threshold, min_area);
    if (!f) throw bgsdk::Error(o.defects_json, "cannot write the defect list");
    std::cout << "defects: " << defects.size() << " (" << (defects.empty() ? "pass" : "fail") << ") -> "
              << o.defects_json << "\n";
  }
  std::sort(run_ms.begin(), run_ms.end());
  const size_t n = run_ms.size();
  const double median = n % 2 ? run_ms[n / 2] : 0.5 * (run_ms[n / 2 - 1] + run_ms[n / 2]);
  const float peak = *std::max_element(heatmap.begin(), heatmap.end());
  std::cout.setf(std::ios::fixed);
  std::cout.precision(2);
  std::cout << "input: " << o.input << " (" << img.layout << ", " << img.height << "x" << img.width << ")\n"
            << "model: " << o.model << " (input " << bgsdk::shape_str(model.input_shape()) << ", contract "
            << (model.contract().present ? "found" : "absent") << ", scale 1/" << model.contract().input_scale << ")\n"
            << "read_ms: " << read_ms << "\nload_ms: " << load_ms << "\n"
            << "run_ms_median: " << median << " (of " << n << "; min " << run_ms.front() << ", max " << run_ms.back()
            << ")\n";
  std::cout.precision(6);
  std::cout << "wrote: " << o.output << " (" << img.height << "x" << img.width << " float32, max " << peak << ")\n";
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(parse_args(argc, argv));
  } catch (const UsageError& e) {
    const std::string usage(kUsage);
    std::cerr << usage.substr(0, usage.find('\n') + 1) << kProg << ": error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {  // bgsdk::Error names the file; anything else is still one line
    std::cerr << kProg << ": error: " << e.what() << "\n";
    return 2;
  }
}
