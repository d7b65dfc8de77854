// defects.cpp: see bgsdk/defects.hpp.
#include "bgsdk/defects.hpp"

#include <cstdio>
#include <sstream>
#include <stdexcept>

namespace bgsdk {

std::vector<Defect> find_defects(const std::vector<float>& heatmap, int64_t height, int64_t width,
                                 float threshold, int64_t min_area, const std::vector<float>& image) {
  const int64_t n = height * width;
  if (n <= 0 || static_cast<int64_t>(heatmap.size()) != n || image.size() % static_cast<size_t>(n) != 0 ||
      static_cast<int64_t>(image.size()) < 2 * n)
    throw std::invalid_argument("find_defects: need an (H,W) heatmap and a (C,H,W) image with C >= 2");
  const int64_t refs = static_cast<int64_t>(image.size()) / n - 1;
  std::vector<int32_t> label(static_cast<size_t>(n), 0);
  std::vector<int64_t> stack;
  std::vector<Defect> out;
  int32_t next = 0;
  for (int64_t start = 0; start < n; ++start) {  // raster scan: components in order of first pixel
    if (label[start] || !(heatmap[start] > threshold)) continue;
    label[start] = ++next;
    stack.assign(1, start);
    Defect d;
    d.x0 = d.x1 = start % width;
    d.y0 = d.y1 = start / width;
    d.peak = heatmap[start];
    double sum_x = 0, sum_y = 0, sum_p = 0, sum_contrast = 0;
    while (!stack.empty()) {
      const int64_t p = stack.back();
      stack.pop_back();
      const int64_t r = p / width, c = p % width;
      ++d.area;
      sum_x += static_cast<double>(c);
      sum_y += static_cast<double>(r);
      sum_p += static_cast<double>(heatmap[p]);
      double ref_sum = 0;  // for two references: (r1 + r2) / 2, the SDK's 0.5 * (r1 + r2) exactly
      for (int64_t c = 1; c <= refs; ++c) ref_sum += static_cast<double>(image[c * n + p]);
      sum_contrast += static_cast<double>(image[p]) - ref_sum / static_cast<double>(refs);
      if (heatmap[p] > d.peak) d.peak = heatmap[p];
      if (c < d.x0) d.x0 = c;
      if (c > d.x1) d.x1 = c;
      if (r < d.y0) d.y0 = r;
      if (r > d.y1) d.y1 = r;
      for (int64_t dr = -1; dr <= 1; ++dr) {
        for (int64_t dc = -1; dc <= 1; ++dc) {
          const int64_t rr = r + dr, cc = c + dc;
          if (rr < 0 || rr >= height || cc < 0 || cc >= width) continue;
          const int64_t q = rr * width + cc;
          if (!label[q] && heatmap[q] > threshold) {
            label[q] = next;
            stack.push_back(q);
          }
        }
      }
    }
    if (d.area < min_area) continue;
    const double a = static_cast<double>(d.area);
    d.x = sum_x / a;
    d.y = sum_y / a;
    d.mean = sum_p / a;
    d.polarity = sum_contrast / a >= 0 ? "bright" : "dark";
    d.id = static_cast<int>(out.size()) + 1;
    out.push_back(d);
  }
  return out;
}

namespace {
std::string num(double v, int digits) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*g", digits, v);
  return buf;
}
}  // namespace

std::string defects_json(const std::vector<Defect>& defects, float threshold, int64_t min_area) {
  std::ostringstream s;
  s << "{\"threshold\": " << num(threshold, 9) << ", \"min_area\": " << min_area << ", \"verdict\": \""
    << (defects.empty() ? "pass" : "fail") << "\", \"defects\": [";
  for (size_t i = 0; i < defects.size(); ++i) {
    const Defect& d = defects[i];
    s << (i ? ", " : "") << "{\"id\": " << d.id << ", \"x\": " << num(d.x, 17) << ", \"y\": " << num(d.y, 17)
      << ", \"x0\": " << d.x0 << ", \"y0\": " << d.y0 << ", \"x1\": " << d.x1 << ", \"y1\": " << d.y1
      << ", \"area\": " << d.area << ", \"peak\": " << num(d.peak, 9) << ", \"mean\": " << num(d.mean, 17)
      << ", \"polarity\": \"" << d.polarity << "\"}";
  }
  s << "]}\n";
  return s.str();
}

}  // namespace bgsdk
