// json_scan.cpp: see json_scan.hpp.
#include "json_scan.hpp"

#include <cctype>
#include <cstdlib>

namespace bgsdk::json {
namespace {

size_t skip_space(const std::string& s, size_t i) {
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  return i;
}

// The index of the closing quote of the string literal that opens at `i`.
size_t string_end(const std::string& s, size_t i) {
  size_t j = i + 1;
  for (; j < s.size() && s[j] != '"'; ++j)
    if (s[j] == '\\' && j + 1 < s.size()) ++j;
  return j;
}

}  // namespace

std::optional<size_t> top_level_value(const std::string& json, const std::string& key) {
  int depth = 0;
  for (size_t i = 0; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      const size_t j = string_end(json, i);
      std::string s;
      for (size_t k = i + 1; k < j; ++k) {
        if (json[k] == '\\' && k + 1 < j) ++k;
        s += json[k];
      }
      size_t k = skip_space(json, j + 1);
      if (depth == 1 && k < json.size() && json[k] == ':' && s == key) return skip_space(json, k + 1);
      i = j;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return std::nullopt;
}

std::optional<double> top_level_number(const std::string& json, const std::string& key) {
  const auto k = top_level_value(json, key);
  if (!k) return std::nullopt;
  const char* begin = json.c_str() + *k;
  char* end = nullptr;
  const double v = std::strtod(begin, &end);
  if (end == begin) return std::nullopt;
  return v;
}

std::optional<std::string> top_level_string(const std::string& json, const std::string& key) {
  const auto k = top_level_value(json, key);
  if (!k || *k >= json.size() || json[*k] != '"') return std::nullopt;
  const size_t end = json.find('"', *k + 1);
  if (end == std::string::npos) return std::nullopt;
  return json.substr(*k + 1, end - *k - 1);
}

std::optional<size_t> top_level_array_size(const std::string& json, const std::string& key) {
  const auto k = top_level_value(json, key);
  if (!k || *k >= json.size() || json[*k] != '[') return std::nullopt;
  size_t count = 0;
  bool item = false;  // inside an element that has not been counted yet
  int depth = 0;
  for (size_t i = *k + 1; i < json.size(); ++i) {
    const char c = json[i];
    if (c == '"') {
      i = string_end(json, i);
    } else if (c == '[' || c == '{') {
      ++depth;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    } else if (c == ']') {
      return count + (item ? 1 : 0);
    } else if (c == ',' && depth == 0) {
      ++count;
      item = false;
      continue;
    }
    if (!std::isspace(static_cast<unsigned char>(c))) item = true;
  }
  return std::nullopt;  // unterminated
}

}  // namespace bgsdk::json
