// minimal.cpp: the bgsdk_model library in a few lines, in the style of ONNX Runtime's C++ samples.
//   bgsdk_minimal MODEL STRIP.f32 HEATMAP.f32
// STRIP.f32: raw float32 (C,H,W), pixels 0..255 -- target, ref1, ref2 for a 3-channel model, or a
// golden-template pair (target, template). The model says C, H and W. HEATMAP.f32: raw (H,W) float32.
#include <filesystem>
#include <fstream>
#include <iostream>
#include <vector>

#include "bgsdk/model.hpp"

int main(int argc, char* argv[]) {
  if (argc != 4) {
    std::cerr << "usage: " << argv[0] << " MODEL STRIP.f32 HEATMAP.f32\n";
    return 2;
  }
  try {
    // 1. Load the model; it knows its image size, channels and input scaling (its metadata).
    bgsdk::Model model(argv[1]);
    const int64_t h = model.height(), w = model.width();

    // 2. Read the strip: K*H*W float32 values, K = the model's channels, or 2 for a golden-template pair.
    std::ifstream in(argv[2], std::ios::binary | std::ios::ate);
    if (!in) throw bgsdk::Error(argv[2], "cannot be opened");
    const auto bytes = static_cast<size_t>(in.tellg()), plane = static_cast<size_t>(h * w) * sizeof(float);
    if (bytes != plane * static_cast<size_t>(model.channels()) && bytes != plane * 2)
      throw bgsdk::Error(argv[2], "expected raw float32 (" + std::to_string(model.channels()) + " or 2, " +
                                      std::to_string(h) + ", " + std::to_string(w) + ")");
    std::vector<float> strip(bytes / sizeof(float));
    if (!in.seekg(0).read(reinterpret_cast<char*>(strip.data()), static_cast<std::streamsize>(bytes)))
      throw bgsdk::Error(argv[2], "cannot be read");

    // 3. Run: the (H,W) defect probability.
    const std::vector<float> heatmap = model.run(strip, h, w);

    // 4. Write it (to a temporary file first, so a failure never leaves half a heatmap).
    const std::string tmp = std::string(argv[3]) + ".tmp";
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(heatmap.data()), static_cast<std::streamsize>(heatmap.size() * sizeof(float)));
    out.close();
    if (!out) throw bgsdk::Error(argv[3], "cannot be written");
    std::filesystem::rename(tmp, argv[3]);
    std::cout << "wrote " << argv[3] << " (" << h << "x" << w << " float32)\n";
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
