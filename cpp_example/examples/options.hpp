// options.hpp: the bgsdk_cpp command line (what main.cpp runs with), parsed without a library.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

// A bad command line: main prints the usage line and this message, exit status 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Options {
  std::string model, output;
  std::vector<std::string> inputs;  // one file with every view, or 2-3 single-channel files
  int repeat = 1;
  int threads = 0;  // 0 = ONNX Runtime's default (as the Python SDK)
  std::optional<std::vector<int64_t>> raw_shape;
  std::string defects_json;  // empty: no defect list
  std::optional<double> threshold;
  std::optional<int64_t> min_area;
  bool verify = false;  // check MODEL against the sha256 in its model.json before loading it
};

extern const char* const kUsage;

// Parses argv; prints the usage and exits 0 on -h/--help; throws UsageError for anything wrong.
Options parse_args(int argc, char** argv);

}  // namespace cli
