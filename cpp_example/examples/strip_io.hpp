// strip_io.hpp: reading strip images and writing heatmaps, the way the Python SDK does.
//
// Not needed to run a model (that is the bgsdk_model library): this is the example's file I/O. The
// rules are bgsdk.io's: a float32 TIFF (or raw float32 of a given shape) with 3 or 4 channels, first
// (C,H,W) or last (H,W,C); channels 0..2 = target, ref1, ref2 (channel 3, the mask, ignored);
// NaN/Inf rejected. Two more ways in: a golden-template pair (2 channels: target, template), and
// the views as separate single-channel (H,W) files (target, ref1, ref2; or target, template). The TIFF reader is a small built-in one for uncompressed float32 baseline
// TIFF (what tifffile and the research code write); README.md says why it is not libtiff.
// Errors are bgsdk::Error naming the file.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "bgsdk/model.hpp"  // bgsdk::Error, bgsdk::shape_str

namespace strip_io {

// An array as stored in a file: row-major float32 with its shape.
struct Array {
  std::vector<float> data;
  std::vector<int64_t> shape;
};

// The image as bgsdk::Model::run takes it: (C,H,W) float32, 0..255 -- target, ref1, ref2 (C = 3), or
// a golden-template pair, target and template (C = 2).
struct Image {
  std::vector<float> chw;
  int64_t channels = 0;
  int64_t height = 0;
  int64_t width = 0;
  std::string layout;  // how the source was stored ("CHW", "HWC" or "3 files"), for the log line
};

// bgsdk.io.to_chw's rule, with pairs: 2, 3 or 4 channels first (preferred) or last; 4 drops the mask.
Image to_chw(Array a, const std::string& source);

// INPUT as the example takes it: .tif/.tiff, or raw little-endian float32 of `raw_shape`. One path:
// a file holding all views; two or three paths: one single-channel (H,W) file per view, same size.
Image read_input(const std::vector<std::string>& paths, const std::optional<std::vector<int64_t>>& raw_shape);

// Float32 TIFF pages, stacked as tifffile stacks them (its {"shape": [...]} description honoured).
Array read_tiff(const std::string& path);

// Raw little-endian float32 with a shape given on the command line.
Array read_raw(const std::string& path, const std::vector<int64_t>& shape);

// Writes an (H,W) float32 array atomically (temp file in the same folder, then rename):
// .tif/.tiff -> TIFF, .npy -> NumPy, any other name -> raw float32, row-major.
void write_output(const std::string& path, const std::vector<float>& hw, int64_t h, int64_t w);

// Writes text atomically (the same temp-file-and-rename), e.g. a JSON report next to the heatmap.
void write_text(const std::string& path, const std::string& text);

// `text` as a JSON string literal, quotes included ("a\"b" for a"b), for hand-built JSON.
std::string json_string(const std::string& text);

}  // namespace strip_io
