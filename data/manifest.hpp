#pragma once
// manifest.json of a prepared data directory: what the directory holds and the checksums
// that prove it. Written last (temp file, then rename), so a directory with a valid manifest
// is complete.
#include <cstdint>
#include <string>
#include <vector>

#include "data/token_file.hpp"

namespace glam {

constexpr const char* manifest_file_name = "manifest.json";
constexpr const char* manifest_format = "glam-data";
constexpr int manifest_format_version = 1;

struct source_info {
  std::string file;  // base name only: the manifest does not depend on where inputs live
  std::uint64_t bytes = 0;
  std::uint64_t checksum = 0;
  std::int64_t documents = 0;
};

struct data_manifest {
  int format_version = manifest_format_version;
  std::int64_t vocab_size = 0;
  std::int32_t unk_id = 0, bos_id = 1, eos_id = 2;
  std::string tokenizer_file = "tokenizer.model";
  std::uint64_t tokenizer_bytes = 0;
  std::uint64_t tokenizer_checksum = 0;
  bool tokenizer_trained = true;  // false when given with --tokenizer
  token_dtype dtype = token_dtype::uint16;
  std::vector<shard_info> train, validation;
  std::int64_t train_tokens = 0, validation_tokens = 0;
  std::int64_t train_documents = 0, validation_documents = 0;
  double unigram_entropy = 0;  // nats per token, of the train stream
  // How it was made (for the record; the dataset does not read these back for anything).
  std::int64_t vocab_size_requested = 0;
  double val_fraction = 0;
  std::uint64_t split_seed = 0;
  std::vector<source_info> sources;
};

// Serialised form: pretty JSON with sorted keys, so equal manifests are equal bytes.
std::string manifest_to_json(const data_manifest& m);
// Parses and checks every field; throws data_error naming `where` (the file) and the field.
data_manifest manifest_from_json(const std::string& text, const std::string& where);

// <dir>/manifest.json. read_manifest throws data_error when it is missing or invalid.
data_manifest read_manifest(const std::string& dir);
void write_manifest(const std::string& dir, const data_manifest& m);

}  // namespace glam
