// json_scan.hpp (library-internal): the few top-level fields the library reads from small JSON
// objects -- the model's metadata and the model.json manifest. A tiny scanner instead of a JSON
// library; nested objects such as the contract's "extra" are skipped, so look-alike keys inside
// them are never read.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace bgsdk::json {

// Where the value of a top-level `"key":` starts (whitespace skipped), or nullopt.
std::optional<size_t> top_level_value(const std::string& json, const std::string& key);

// The number at a top-level `"key":`, or nullopt when absent or not a number.
std::optional<double> top_level_number(const std::string& json, const std::string& key);

// The string at a top-level `"key": "value"` (no escapes needed by the callers), or nullopt.
std::optional<std::string> top_level_string(const std::string& json, const std::string& key);

// How many elements the array at a top-level `"key": [...]` has, or nullopt when it is no array.
std::optional<size_t> top_level_array_size(const std::string& json, const std::string& key);

}  // namespace bgsdk::json
