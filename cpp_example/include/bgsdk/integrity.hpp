// bgsdk/integrity.hpp: check a model file against the sha256 in the model.json that build-model writes
// beside it -- the C++ side of `bgsdk.Segmenter(path, verify=True)` / `bgsdk inspect --verify`.
//
// read_verified_model() reads the file once, hashes those bytes and returns them; bgsdk::Model
// then loads the model from the same bytes, so nothing can change between the check and the load.
#pragma once

#include <string>
#include <vector>

namespace bgsdk {

// SHA-256 of `data` as 64 lowercase hex digits (FIPS 180-4; no crypto library needed).
std::string sha256_hex(const std::vector<unsigned char>& data);

// "model.onnx" -> "model.json" (the rule build-model writes by; bgsdk.integrity.manifest_path_for).
std::string manifest_path_for(const std::string& model_path);

// The model file's bytes, after checking them against model_sha256 (and model_bytes) in the
// manifest. Throws bgsdk::Error naming the model file when the manifest is missing or unusable,
// or when the bytes do not match it.
std::vector<unsigned char> read_verified_model(const std::string& model_path);

}  // namespace bgsdk
