// bgsdk/defects.hpp: the defect list of one heatmap, the same as bgsdk.defects.find_defects in Python.
//
// A defect is an 8-connected component of pixels with heatmap > threshold (strictly) and at least
// min_area pixels. Components are listed in raster order of their first pixel (top to bottom, then
// left to right) -- scipy.ndimage.label's order -- with ids 1..n after the min_area filter.
// Polarity compares the target with the mean of the references over the component.
// Standard library only.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace bgsdk {

struct Defect {
  int id = 0;
  double x = 0, y = 0;             // centroid: x = column, y = row
  int64_t x0 = 0, y0 = 0, x1 = 0, y1 = 0;  // inclusive bounding box
  int64_t area = 0;
  float peak = 0;                  // max probability over the component
  double mean = 0;                 // mean probability (accumulated in double, like the SDK)
  std::string polarity;            // "bright" or "dark"
};

// heatmap: (H,W) row-major; image: the (C,H,W) input pixels (0..255) the model ran on, the target
// then C-1 >= 1 references (Model::fill_references gives it for a golden-template pair).
// Throws std::invalid_argument when image is not whole (H,W) planes, at least two.
std::vector<Defect> find_defects(const std::vector<float>& heatmap, int64_t height, int64_t width,
                                 float threshold, int64_t min_area, const std::vector<float>& image);

// {"threshold": ..., "min_area": ..., "verdict": "pass"|"fail", "defects": [{id, x, y, x0, y0, x1, y1,
// area, peak, mean, polarity}, ...]} -- the keys of bgsdk.defects.DEFECT_FIELDS.
std::string defects_json(const std::vector<Defect>& defects, float threshold, int64_t min_area);

}  // namespace bgsdk
