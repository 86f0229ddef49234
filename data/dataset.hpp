#pragma once
// A prepared data directory, opened for training: memory-mapped token shards, verified
// against the manifest, and the sample order of section 4 of the design (see
// data/sample_order.hpp for the exact definition).
//
// Thread-safe: every const member may be called from any thread. Copies share the mappings
// and the permutation cache.
#include <cstdint>
#include <memory>
#include <string>

#include "data/manifest.hpp"

namespace glam {

class dataset {
 public:
  // Reads the manifest and checks the tokenizer and every shard: presence, size and
  // checksum. Throws data_error naming the file and what is wrong.
  static dataset open(const std::string& dir);

  std::int64_t vocab_size() const;
  std::int64_t train_tokens() const;
  std::int64_t validation_tokens() const;
  // The longest seq_len for which at least one full window (seq_len + 1 tokens) exists in
  // both the train and the validation stream.
  std::int64_t longest_trainable_sequence() const;
  double unigram_entropy() const;  // nats per token, of the train stream
  std::int32_t eos_id() const;
  std::string tokenizer_path() const;
  std::string directory() const;
  const data_manifest& manifest() const;
  // checksum64 of manifest.json's bytes: identifies the data (e.g. in a checkpoint).
  std::uint64_t fingerprint() const;

  // Train windows of length seq_len: (train_tokens - 1) / seq_len.
  std::int64_t train_windows(std::int64_t seq_len) const;
  // The window drawn at global sample position p (see sample_order.hpp).
  std::int64_t train_window(std::uint64_t seed, std::int64_t position, std::int64_t seq_len) const;

  // tokens [batch, seq_len + 1] (int32, row-major) for (seed, step, shard): row b is the
  // window at position (step·shards + shard)·batch + b. A pure function of its arguments.
  void train_batch(std::uint64_t seed, std::int64_t step, std::int64_t shard, std::int64_t shards,
                   std::int64_t batch, std::int64_t seq_len, std::int32_t* out) const;
  // Validation batch `index` for shard s: row b is validation window
  // ((index·shards + s)·batch + b) mod (number of validation windows): the windows in order,
  // wrapping around.
  void validation_batch(std::int64_t index, std::int64_t shard, std::int64_t shards,
                        std::int64_t batch, std::int64_t seq_len, std::int32_t* out) const;
  std::int64_t validation_windows(std::int64_t seq_len) const;

  // Raw access to the streams (tokens [offset, offset + count)), as int32.
  void read_train_tokens(std::int64_t offset, std::int64_t count, std::int32_t* out) const;
  void read_validation_tokens(std::int64_t offset, std::int64_t count, std::int32_t* out) const;

 private:
  struct impl;
  explicit dataset(std::shared_ptr<const impl> p);
  std::shared_ptr<const impl> impl_;
};

}  // namespace glam
