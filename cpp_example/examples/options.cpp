// options.cpp: see options.hpp.
#include "options.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <iostream>
#include <sstream>

namespace cli {

const char* const kUsage =
    "usage: bgsdk_cpp [options] MODEL INPUT OUTPUT\n"
    "       bgsdk_cpp [options] MODEL TARGET REF1 REF2 OUTPUT\n"
    "       bgsdk_cpp [options] MODEL TARGET TEMPLATE OUTPUT\n"
    "\n"
    "Run a bgsdk full-image ONNX model on one strip and write the defect heatmap.\n"
    "\n"
    "  MODEL              full-image model (input 'input' (N,C,H,W), output 'output'); it says H, W and C\n"
    "  INPUT              float32 TIFF, (C,H,W) or (H,W,C): target, ref1, ref2[, mask] (3 or 4 channels)\n"
    "                     or a golden-template pair target, template (2 channels: the template is used\n"
    "                     for every reference); or raw little-endian float32 with --raw-shape\n"
    "  TARGET REF1 REF2   the views as separate single-channel (H,W) files; TARGET TEMPLATE: a pair\n"
    "  OUTPUT             heatmap (H,W) float32: .tif/.tiff, .npy, or raw otherwise\n"
    "  --repeat N         run N times and report the median run time (default 1)\n"
    "  --threads N        intra-op threads (default: ONNX Runtime's choice)\n"
    "  --raw-shape A,B[,C] the inputs are raw float32 of this shape, e.g. 4,976,176, 976,176,3 or 976,176\n"
    "  --defects-json F   also write the defect list (as bgsdk's Result.defects) and verdict as JSON\n"
    "  --threshold T      pixel threshold for the defect list (default: the model's operating point, else 0.5)\n"
    "  --min-area A       smallest defect in pixels (default: the model's operating point, else 1)\n"
    "  --verify           refuse MODEL unless its sha256 matches the model.json beside it\n";

namespace {

int parse_int(const std::string& opt, const std::string& text, int min) {
  char* end = nullptr;
  const long v = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || v < min || v > 1000000)
    throw UsageError("invalid value '" + text + "' for " + opt + " (an integer >= " + std::to_string(min) + ")");
  return static_cast<int>(v);
}

double parse_double(const std::string& opt, const std::string& text) {
  char* end = nullptr;
  const double v = std::strtod(text.c_str(), &end);
  if (text.empty() || *end != '\0' || !std::isfinite(v)) throw UsageError("invalid value '" + text + "' for " + opt);
  return v;
}

std::vector<int64_t> parse_shape(std::string text) {
  std::replace(text.begin(), text.end(), 'x', ',');  // 4x976x176 works too
  std::vector<int64_t> shape;
  std::string item;
  std::istringstream s(text);
  while (std::getline(s, item, ',')) shape.push_back(parse_int("--raw-shape", item, 1));
  if (shape.size() != 2 && shape.size() != 3)
    throw UsageError("--raw-shape needs two or three sizes, e.g. 4,976,176 or 976,176 (got '" + text + "')");
  return shape;
}

}  // namespace

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
      o.threshold = parse_double(a, value());
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
  if (pos.size() < 3 || pos.size() > 5)
    throw UsageError("expected MODEL INPUT OUTPUT, MODEL TARGET TEMPLATE OUTPUT or MODEL TARGET REF1 REF2 OUTPUT, got " +
                     std::to_string(pos.size()) + " argument(s)");
  o.model = pos.front();
  o.output = pos.back();
  o.inputs.assign(pos.begin() + 1, pos.end() - 1);
  return o;
}

}  // namespace cli
