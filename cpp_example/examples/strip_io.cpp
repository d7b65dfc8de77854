// strip_io.cpp: see strip_io.hpp.
#include "strip_io.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <utility>

#include <unistd.h>

namespace strip_io {

namespace fs = std::filesystem;
using bgsdk::Error;
using bgsdk::shape_str;

namespace {

std::vector<uint8_t> read_file(const std::string& path) {
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(path, "file not found");
  if (fs::is_directory(path, ec)) throw Error(path, "is a directory, not a file");
  std::ifstream f(path, std::ios::binary | std::ios::ate);
  if (!f) throw Error(path, "cannot be opened");
  const std::streamoff size = f.tellg();
  if (size <= 0) throw Error(path, "file is empty (0 bytes)");
  std::vector<uint8_t> bytes(static_cast<size_t>(size));
  f.seekg(0);
  if (!f.read(reinterpret_cast<char*>(bytes.data()), size)) throw Error(path, "cannot be read");
  return bytes;
}

// Minimal TIFF reader: baseline or BigTIFF, either byte order, uncompressed, strips,
// 32-bit IEEE float samples, contiguous or planar, one or more pages. Pages are stacked
// the way tifffile stacks them; tifffile's `{"shape": [...]}` description is honoured, so a
// channel-last file written by tifffile reads back as (H,W,C) here too.
class TiffReader {
 public:
  explicit TiffReader(std::string path) : path_(std::move(path)), b_(read_file(path_)) {}

  Array read() {
    if (b_.size() < 8) fail("not a TIFF file (too short)");
    if (b_[0] == 'I' && b_[1] == 'I') big_endian_ = false;
    else if (b_[0] == 'M' && b_[1] == 'M') big_endian_ = true;
    else fail("not a TIFF file (bad byte-order mark)");
    const auto magic = uint_at(2, 2);
    uint64_t ifd = 0;
    if (magic == 42) {
      ifd = uint_at(4, 4);
    } else if (magic == 43) {
      bigtiff_ = true;
      if (uint_at(4, 2) != 8) fail("unsupported BigTIFF offset size");
      ifd = uint_at(8, 8);
    } else {
      fail("not a TIFF file (bad magic number " + std::to_string(magic) + ")");
    }

    std::vector<Page> pages;
    std::set<uint64_t> seen;
    while (ifd != 0) {
      if (!seen.insert(ifd).second) fail("IFD chain loops");
      pages.push_back(parse_ifd(ifd));
      const Page& page = pages.back();
      if (page.width != pages[0].width || page.height != pages[0].height || page.spp != pages[0].spp ||
          page.planar != pages[0].planar) {
        fail("pages differ in size or samples (page " + std::to_string(pages.size() - 1) + ")");
      }
      ifd = page.next;
    }
    if (pages.empty()) fail("no image in file");
    const Page& first = pages[0];
    const size_t per_page = static_cast<size_t>(first.width * first.height * first.spp);
    if (first.width > (1 << 24) || first.height > (1 << 24) || first.spp > 64 ||
        per_page * 4 * pages.size() > b_.size())  // uncompressed pixels must fit in the file
      fail("truncated TIFF (the file is smaller than its " + std::to_string(first.height) + "x" +
           std::to_string(first.width) + "x" + std::to_string(first.spp) + " float32 pages)");
    std::vector<float> data(per_page * pages.size());  // one allocation: pixels are copied once
    for (size_t i = 0; i < pages.size(); ++i) copy_pixels(pages[i], data.data() + i * per_page);

    Array a;
    a.data = std::move(data);
    a.shape = shaped_description(first.description, a.data.size());
    if (a.shape.empty()) {  // stack pages: (pages, page shape), like tifffile
      if (pages.size() > 1) a.shape.push_back(static_cast<int64_t>(pages.size()));
      if (first.planar == 2) a.shape.push_back(first.spp);
      a.shape.push_back(first.height);
      a.shape.push_back(first.width);
      if (first.planar == 1) a.shape.push_back(first.spp);
    }
    a.shape.erase(std::remove(a.shape.begin(), a.shape.end(), int64_t{1}), a.shape.end());  // squeeze
    return a;
  }

 private:
  struct Page {
    int64_t width = 0, height = 0, spp = 1, planar = 1, rows_per_strip = 0;
    std::vector<uint64_t> offsets, counts;
    std::string description;
    uint64_t next = 0;
  };

  [[noreturn]] void fail(const std::string& problem) const { throw Error(path_, problem); }

  uint64_t uint_at(uint64_t off, unsigned size) const {
    if (off + size > b_.size() || off + size < off) fail("truncated or corrupt TIFF (offset out of range)");
    uint64_t v = 0;
    for (unsigned i = 0; i < size; ++i) {
      const unsigned shift = big_endian_ ? 8 * (size - 1 - i) : 8 * i;
      v |= static_cast<uint64_t>(b_[off + i]) << shift;
    }
    return v;
  }

  static unsigned type_size(uint64_t type) {
    switch (type) {
      case 1: case 2: case 6: case 7: return 1;  // BYTE ASCII SBYTE UNDEFINED
      case 3: case 8: return 2;                  // SHORT SSHORT
      case 4: case 9: case 11: case 13: return 4;  // LONG SLONG FLOAT IFD
      case 5: case 10: case 12: case 16: case 17: case 18: return 8;  // RATIONAL DOUBLE LONG8 ...
      default: return 0;
    }
  }

  Page parse_ifd(uint64_t ifd) const {
    const unsigned word = bigtiff_ ? 8 : 4;
    const uint64_t n = uint_at(ifd, bigtiff_ ? 8 : 2);
    const uint64_t entries = ifd + (bigtiff_ ? 8 : 2);
    const uint64_t entry_size = bigtiff_ ? 20 : 12;
    Page p;
    int64_t bits = 1, format = 1, compression = 1;
    for (uint64_t e = 0; e < n; ++e) {
      const uint64_t at = entries + e * entry_size;
      const auto tag = uint_at(at, 2), type = uint_at(at + 2, 2), count = uint_at(at + 4, word);
      const unsigned size = type_size(type);
      if (size == 0) continue;  // unknown type: skip, as readers must
      const uint64_t bytes = size * count;
      const uint64_t value_at = bytes <= word ? at + 4 + word : uint_at(at + 4 + word, word);
      if (count > b_.size() || value_at > b_.size() || bytes > b_.size() - value_at)
        fail("corrupt TIFF (tag " + std::to_string(tag) + " points past the end of the file)");
      auto ints = [&]() {
        if (type != 1 && type != 3 && type != 4 && type != 16) fail("tag " + std::to_string(tag) + " is not an integer");
        std::vector<uint64_t> v(count);
        for (uint64_t i = 0; i < count; ++i) v[i] = uint_at(value_at + i * size, size);
        if (v.empty()) fail("tag " + std::to_string(tag) + " is empty");
        return v;
      };
      auto all_equal = [&](const std::vector<uint64_t>& v) {
        if (!std::all_of(v.begin(), v.end(), [&](uint64_t x) { return x == v[0]; }))
          fail("samples of different types (tag " + std::to_string(tag) + ") are not supported");
        return static_cast<int64_t>(v[0]);
      };
      switch (tag) {
        case 256: p.width = ints()[0]; break;
        case 257: p.height = ints()[0]; break;
        case 258: bits = all_equal(ints()); break;
        case 259: compression = ints()[0]; break;
        case 270:
          if (type == 2 && value_at + count <= b_.size())
            p.description.assign(reinterpret_cast<const char*>(&b_[value_at]), count);
          break;
        case 273: p.offsets = ints(); break;
        case 277: p.spp = ints()[0]; break;
        case 278: p.rows_per_strip = ints()[0]; break;
        case 279: p.counts = ints(); break;
        case 284: p.planar = ints()[0]; break;
        case 322: case 323: case 324: case 325: fail("tiled TIFF is not supported (write strips)");
        case 339: format = all_equal(ints()); break;
        default: break;
      }
    }
    p.next = uint_at(entries + n * entry_size, word);
    if (compression != 1)
      fail("compressed TIFF (compression " + std::to_string(compression) +
           ") is not supported: write it uncompressed, e.g. tifffile.imwrite(path, a) without compression=");
    if (format != 3 || bits != 32)
      fail("expected float32 samples (SampleFormat 3, 32 bits), got SampleFormat " + std::to_string(format) +
           " with " + std::to_string(bits) + " bits: convert the image to float32 (values 0..255)");
    if (p.width <= 0 || p.height <= 0) fail("image has no width/height");
    if (p.spp < 1) fail("bad SamplesPerPixel");
    if (p.planar != 1 && p.planar != 2) fail("bad PlanarConfiguration " + std::to_string(p.planar));
    if (p.offsets.empty() || p.offsets.size() != p.counts.size()) fail("missing or inconsistent strip offsets");
    return p;
  }

  void copy_pixels(const Page& p, float* out) const {
    const uint64_t values = static_cast<uint64_t>(p.width) * p.height * p.spp;
    uint64_t need = values * 4;
    auto* dst = reinterpret_cast<uint8_t*>(out);
    for (size_t s = 0; s < p.offsets.size() && need > 0; ++s) {
      const uint64_t n = std::min<uint64_t>(p.counts[s], need);
      if (p.offsets[s] + n > b_.size()) fail("truncated TIFF (strip " + std::to_string(s) + " past end of file)");
      std::memcpy(dst, &b_[p.offsets[s]], n);
      dst += n;
      need -= n;
    }
    if (need) fail("strips hold fewer bytes than the image size");
    if (big_endian_) {
      auto* bytes = reinterpret_cast<uint8_t*>(out);
      for (uint64_t i = 0; i < values; ++i) std::reverse(bytes + 4 * i, bytes + 4 * i + 4);
    }
  }

  // tifffile writes `{"shape": [4, 976, 176]}` into the first page's ImageDescription.
  static std::vector<int64_t> shaped_description(const std::string& d, size_t values) {
    if (d.empty() || d[0] != '{') return {};
    const auto key = d.find("\"shape\"");
    if (key == std::string::npos) return {};
    const auto open = d.find('[', key), close = d.find(']', key);
    if (open == std::string::npos || close == std::string::npos || close < open) return {};
    std::vector<int64_t> shape;
    std::istringstream s(d.substr(open + 1, close - open - 1));
    std::string item;
    uint64_t total = 1;
    while (std::getline(s, item, ',')) {
      char* end = nullptr;
      const long long v = std::strtoll(item.c_str(), &end, 10);
      if (end == item.c_str() || v <= 0) return {};
      shape.push_back(v);
      total *= static_cast<uint64_t>(v);
    }
    return total == values ? shape : std::vector<int64_t>{};
  }

  std::string path_;
  std::vector<uint8_t> b_;
  bool big_endian_ = false;
  bool bigtiff_ = false;
};

std::string lower_suffix(const std::string& path) {
  std::string ext = fs::path(path).extension().string();
  std::transform(ext.begin(), ext.end(), ext.begin(), [](unsigned char c) { return std::tolower(c); });
  return ext;
}

void put16(std::string& s, uint16_t v) { s.append(reinterpret_cast<const char*>(&v), 2); }
void put32(std::string& s, uint32_t v) { s.append(reinterpret_cast<const char*>(&v), 4); }

std::string tiff_bytes(const std::vector<float>& hw, int64_t h, int64_t w) {
  // Little-endian baseline TIFF, one page, one strip, SampleFormat IEEE float.
  const uint32_t data_bytes = static_cast<uint32_t>(hw.size() * 4);
  const uint32_t data_at = 8;
  const uint32_t ifd_at = data_at + data_bytes;
  const std::vector<std::array<uint32_t, 3>> tags = {  // tag, type, value (all single values)
      {256, 4, static_cast<uint32_t>(w)}, {257, 4, static_cast<uint32_t>(h)}, {258, 3, 32}, {259, 3, 1},
      {262, 3, 1}, {273, 4, data_at}, {277, 3, 1}, {278, 4, static_cast<uint32_t>(h)},
      {279, 4, data_bytes}, {284, 3, 1}, {339, 3, 3}};
  std::string s = "II";
  put16(s, 42);
  put32(s, ifd_at);
  s.append(reinterpret_cast<const char*>(hw.data()), data_bytes);
  put16(s, static_cast<uint16_t>(tags.size()));
  for (const auto& t : tags) {
    put16(s, static_cast<uint16_t>(t[0]));
    put16(s, static_cast<uint16_t>(t[1]));
    put32(s, 1);
    if (t[1] == 3) { put16(s, static_cast<uint16_t>(t[2])); put16(s, 0); } else { put32(s, t[2]); }
  }
  put32(s, 0);  // no next IFD
  return s;
}

std::string npy_bytes(const std::vector<float>& hw, int64_t h, int64_t w) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(h) + ", " +
                       std::to_string(w) + "), }";
  const size_t unpadded = 10 + header.size() + 1;
  header.append((64 - unpadded % 64) % 64, ' ');
  header.push_back('\n');
  std::string s("\x93NUMPY\x01\x00", 8);
  put16(s, static_cast<uint16_t>(header.size()));
  s += header;
  s.append(reinterpret_cast<const char*>(hw.data()), hw.size() * 4);
  return s;
}

// Temp file in the same folder, then rename: a crash never leaves a half-written file.
void write_atomic(const std::string& path, const std::string& bytes) {
  const fs::path final_path(path);
  std::error_code ec;
  if (final_path.has_parent_path()) fs::create_directories(final_path.parent_path(), ec);
  const fs::path tmp = final_path.parent_path() /
                       ("." + final_path.filename().string() + "." + std::to_string(::getpid()) + ".tmp");
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f || !f.write(bytes.data(), static_cast<std::streamsize>(bytes.size())) || !f.flush()) {
      fs::remove(tmp, ec);
      throw Error(path, "cannot write the output");
    }
  }
  fs::rename(tmp, final_path, ec);
  if (ec) {
    fs::remove(tmp, ec);
    throw Error(path, "cannot write the output (" + ec.message() + ")");
  }
}

}  // namespace

// bgsdk.io.to_chw's rule, with pairs: 2, 3 or 4 channels first (preferred) or last; 4 drops the mask.
Image to_chw(Array a, const std::string& source) {
  if (a.shape.size() != 3) {
    throw Error(source, "expected a 3-D image (C,H,W) or (H,W,C) with 2, 3 or 4 channels, got shape " +
                            shape_str(a.shape));
  }
  const int64_t d0 = a.shape[0], d1 = a.shape[1], d2 = a.shape[2];
  auto is_views = [](int64_t c) { return c >= 2 && c <= 4; };
  Image img;
  if (is_views(d0)) {
    img = {std::move(a.data), std::min<int64_t>(d0, 3), d1, d2, "CHW"};
    img.chw.resize(static_cast<size_t>(img.channels * d1 * d2));  // the first C planes: no copy
  } else if (is_views(d2)) {
    img = {{}, std::min<int64_t>(d2, 3), d0, d1, "HWC"};
    img.chw.resize(static_cast<size_t>(img.channels * d0 * d1));
    for (int64_t c = 0; c < img.channels; ++c)
      for (int64_t p = 0; p < d0 * d1; ++p) img.chw[c * d0 * d1 + p] = a.data[p * d2 + c];
  } else {
    throw Error(source, "expected 2 to 4 channels (target, ref1, ref2[, mask] or target, template) first or last, "
                        "got shape " + shape_str(a.shape));
  }
  if (img.height == 0 || img.width == 0) throw Error(source, "image is empty (shape " + shape_str(a.shape) + ")");
  return img;
}

// Raw little-endian float32 with a shape given on the command line.
Array read_raw(const std::string& path, const std::vector<int64_t>& shape) {
  const auto bytes = read_file(path);
  int64_t n = 1;
  for (auto d : shape) n *= d;
  if (static_cast<int64_t>(bytes.size()) != n * 4) {
    throw Error(path, "size " + std::to_string(bytes.size()) + " bytes does not match --raw-shape " +
                          shape_str(shape) + " float32 (" + std::to_string(n * 4) + " bytes)");
  }
  Array a;
  a.shape = shape;
  a.data.resize(static_cast<size_t>(n));
  std::memcpy(a.data.data(), bytes.data(), bytes.size());
  return a;
}

Array read_tiff(const std::string& path) { return TiffReader(path).read(); }

namespace {

Array read_array(const std::string& path, const std::optional<std::vector<int64_t>>& raw_shape) {
  if (raw_shape) return read_raw(path, *raw_shape);
  const auto ext = lower_suffix(path);
  if (ext == ".tif" || ext == ".tiff") return read_tiff(path);
  throw Error(path, "unsupported input type '" + ext + "': use a float32 .tif/.tiff, or raw float32 with --raw-shape");
}

void check_finite(const std::vector<float>& v, const std::string& source) {
  const auto bad = std::count_if(v.begin(), v.end(), [](float x) { return !std::isfinite(x); });
  if (bad) throw Error(source, "contains " + std::to_string(bad) + " NaN/Inf value(s)");
}

// Views in separate files: each one (H,W) channel (a leading or trailing 1 is squeezed away), all one size.
Image stack_views(const std::vector<std::string>& paths, const std::optional<std::vector<int64_t>>& raw_shape) {
  Image img;
  img.channels = static_cast<int64_t>(paths.size());
  img.layout = std::to_string(paths.size()) + " files";
  for (const auto& path : paths) {
    Array a = read_array(path, raw_shape);
    a.shape.erase(std::remove(a.shape.begin(), a.shape.end(), int64_t{1}), a.shape.end());
    if (a.shape.size() != 2)
      throw Error(path, "expected one channel (H,W) per file when the views come in separate files, got shape " +
                            shape_str(a.shape));
    if (img.chw.empty()) {
      img.height = a.shape[0];
      img.width = a.shape[1];
    } else if (a.shape[0] != img.height || a.shape[1] != img.width) {
      throw Error(path, "image is " + std::to_string(a.shape[0]) + "x" + std::to_string(a.shape[1]) + " but " +
                            paths[0] + " is " + std::to_string(img.height) + "x" + std::to_string(img.width));
    }
    check_finite(a.data, path);
    img.chw.insert(img.chw.end(), a.data.begin(), a.data.end());
  }
  return img;
}

}  // namespace

Image read_input(const std::vector<std::string>& paths, const std::optional<std::vector<int64_t>>& raw_shape) {
  if (paths.size() == 2 || paths.size() == 3) return stack_views(paths, raw_shape);
  if (paths.size() != 1) throw Error("", "expected 1, 2 or 3 input files, got " + std::to_string(paths.size()));
  Image img = to_chw(read_array(paths[0], raw_shape), paths[0]);
  check_finite(img.chw, paths[0]);
  return img;
}

void write_output(const std::string& path, const std::vector<float>& hw, int64_t h, int64_t w) {
  const auto ext = lower_suffix(path);
  const std::string bytes = (ext == ".tif" || ext == ".tiff") ? tiff_bytes(hw, h, w)
                            : ext == ".npy"                    ? npy_bytes(hw, h, w)
                                : std::string(reinterpret_cast<const char*>(hw.data()), hw.size() * 4);
  write_atomic(path, bytes);
}

void write_text(const std::string& path, const std::string& text) { write_atomic(path, text); }

std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\u%04x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace strip_io
