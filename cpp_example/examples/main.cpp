// bgsdk_cpp: run a bgsdk full-image ONNX model on one strip and write the defect heatmap.
//
//   bgsdk_cpp [options] MODEL INPUT OUTPUT                 one file: target, ref1, ref2[, mask]
//   bgsdk_cpp [options] MODEL TARGET REF1 REF2 OUTPUT      three single-channel files
//   bgsdk_cpp [options] MODEL TARGET TEMPLATE OUTPUT       a golden-template pair (also as one 2-channel file)
//
// The same numbers as the Python SDK (bgsdk.Segmenter): strip_io reads the views into (C,H,W)
// float32 exactly like bgsdk.io.read_image; bgsdk::Model (the bgsdk_model library) fills the
// reference channels from a golden template, scales by 1/255 and runs; channel 0 of `output` is
// written. Options: options.cpp. Errors print one line `bgsdk_cpp: error: <file>: <problem>` and
// exit with status 2, like the Python command-line tools.
#include <algorithm>
#include <chrono>
#include <iostream>
#include <string>
#include <vector>

#include "bgsdk/defects.hpp"
#include "bgsdk/integrity.hpp"
#include "bgsdk/model.hpp"
#include "options.hpp"
#include "strip_io.hpp"

namespace {

constexpr const char* kProg = "bgsdk_cpp";
using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

std::string joined(const std::vector<std::string>& items) {
  std::string s;
  for (const auto& x : items) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The defect list of bgsdk's Result.defects, written atomically as JSON; returns how many.
size_t write_defects(const cli::Options& o, const bgsdk::Model& model, const std::vector<float>& heatmap,
                     const strip_io::Image& img) {
  const auto& op = model.operating_point();
  const float threshold = static_cast<float>(o.threshold.value_or(op.threshold));
  const int64_t min_area = o.min_area.value_or(op.min_area);
  // Polarity compares the target with the references the model saw (a template fills them all).
  const std::vector<float> image = model.fill_references(img.chw, img.height, img.width);
  const auto defects = bgsdk::find_defects(heatmap, img.height, img.width, threshold, min_area, image);
  strip_io::write_text(o.defects_json, bgsdk::defects_json(defects, threshold, min_area));
  return defects.size();
}

void report(const cli::Options& o, const bgsdk::Model& model, const strip_io::Image& img, double read_ms,
            double load_ms, std::vector<double> run_ms, const std::vector<float>& heatmap) {
  std::sort(run_ms.begin(), run_ms.end());
  const size_t n = run_ms.size();
  const double median = n % 2 ? run_ms[n / 2] : 0.5 * (run_ms[n / 2 - 1] + run_ms[n / 2]);
  const float peak = *std::max_element(heatmap.begin(), heatmap.end());
  std::cout.setf(std::ios::fixed);
  std::cout.precision(2);
  std::cout << "input: " << joined(o.inputs) << " (" << img.layout << ", "
            << (img.channels == 2 ? "target + golden template" : "target + " + std::to_string(img.channels - 1) + " references")
            << ", " << img.height << "x" << img.width << ")\n"
            << "model: " << o.model << " (input " << bgsdk::shape_str(model.input_shape()) << ", takes "
            << model.channels() << "x" << model.height() << "x" << model.width() << ", contract "
            << (model.contract().present ? "found" : "absent") << ", scale 1/" << model.contract().input_scale << ")\n"
            << "read_ms: " << read_ms << "\nload_ms: " << load_ms << "\n"
            << "run_ms_median: " << median << " (of " << n << "; min " << run_ms.front() << ", max " << run_ms.back()
            << ")\n";
  std::cout.precision(6);
  std::cout << "wrote: " << o.output << " (" << img.height << "x" << img.width << " float32, max " << peak << ")\n";
}

int run(const cli::Options& o) {
  const std::string version = bgsdk::init_onnxruntime();
  std::cout << kProg << ": onnxruntime " << version << " (built with API " << bgsdk::onnxruntime_api_version() << ")\n";
  auto t0 = Clock::now();
  const strip_io::Image img = strip_io::read_input(o.inputs, o.raw_shape);
  const double read_ms = ms_since(t0);
  t0 = Clock::now();
  bgsdk::Model model = o.verify ? bgsdk::Model(o.model, bgsdk::read_verified_model(o.model), o.threads)
                                : bgsdk::Model(o.model, o.threads);
  const double load_ms = ms_since(t0);
  model.check_image(img.channels, img.height, img.width, o.inputs.front());
  std::vector<float> heatmap;
  std::vector<double> run_ms;
  for (int r = 0; r < o.repeat; ++r) {
    t0 = Clock::now();
    heatmap = model.run(img.chw, img.height, img.width);
    run_ms.push_back(ms_since(t0));
  }
  strip_io::write_output(o.output, heatmap, img.height, img.width);
  if (!o.defects_json.empty()) {
    const size_t n = write_defects(o, model, heatmap, img);
    std::cout << "defects: " << n << " (" << (n == 0 ? "pass" : "fail") << ") -> " << o.defects_json << "\n";
  }
  report(o, model, img, read_ms, load_ms, std::move(run_ms), heatmap);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    return run(cli::parse_args(argc, argv));
  } catch (const cli::UsageError& e) {
    const std::string usage(cli::kUsage);
    std::cerr << usage.substr(0, usage.find('\n') + 1) << kProg << ": error: " << e.what() << " (see --help)\n";
    return 2;
  } catch (const std::exception& e) {  // bgsdk::Error names the file; anything else is still one line
    std::cerr << kProg << ": error: " << e.what() << "\n";
    return 2;
  }
}
