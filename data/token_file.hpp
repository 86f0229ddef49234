#pragma once
// Token shard files: a flat little-endian array of uint16 or uint32 token ids, nothing else
// (the manifest holds the count, dtype and checksum), so that a reader can mmap it and index
// it directly. Writers checksum the bytes as they write them.
#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "data/checksum.hpp"

namespace glam {

enum class token_dtype { uint16, uint32 };

// uint16 when every id fits (vocab <= 65536), else uint32.
token_dtype dtype_for_vocab(std::int64_t vocab_size);
std::size_t bytes_per_token(token_dtype dtype);
std::string dtype_name(token_dtype dtype);  // "uint16" / "uint32"
// Throws data_error naming `where` for any other name.
token_dtype dtype_from_name(const std::string& name, const std::string& where);

// One shard file as the manifest lists it.
struct shard_info {
  std::string file;  // name inside the data directory
  std::int64_t tokens = 0;
  std::uint64_t bytes = 0;
  std::uint64_t checksum = 0;
};

// Writes a stream of tokens as shard files <prefix>-00000.bin, <prefix>-00001.bin, ... in
// `dir`, each holding at most `max_tokens_per_shard` tokens. An empty stream writes one
// empty shard, so that every stream has at least one file.
class token_stream_writer {
 public:
  token_stream_writer(std::string dir, std::string prefix, token_dtype dtype,
                      std::int64_t max_tokens_per_shard);
  ~token_stream_writer();
  token_stream_writer(const token_stream_writer&) = delete;
  token_stream_writer& operator=(const token_stream_writer&) = delete;

  // Throws data_error if an id does not fit the dtype.
  void append(const std::int32_t* ids, std::size_t count);
  // Flushes and closes the last shard; returns every shard written.
  std::vector<shard_info> finish();
  std::int64_t tokens() const { return total_; }

 private:
  void open_next();
  void close_current();

  std::string dir_, prefix_;
  token_dtype dtype_;
  std::int64_t max_tokens_;
  std::int64_t total_ = 0;
  std::FILE* file_ = nullptr;
  shard_info current_;
  checksum64_stream current_checksum_;
  std::vector<shard_info> shards_;
  std::vector<unsigned char> buffer_;
};

// A read-only memory mapping of one shard file.
class mapped_token_file {
 public:
  // Maps `path` and checks its size against `expected_tokens`; with verify_checksum, also
  // its checksum. Throws data_error naming the file and the mismatch.
  static mapped_token_file open(const std::string& path, token_dtype dtype,
                                std::int64_t expected_tokens, bool verify_checksum,
                                std::uint64_t expected_checksum);
  mapped_token_file(mapped_token_file&& other) noexcept;
  mapped_token_file& operator=(mapped_token_file&& other) noexcept;
  mapped_token_file(const mapped_token_file&) = delete;
  mapped_token_file& operator=(const mapped_token_file&) = delete;
  ~mapped_token_file();

  std::int64_t tokens() const { return tokens_; }
  // Copies tokens [offset, offset + count) as int32; the range must lie inside the file.
  void read(std::int64_t offset, std::int64_t count, std::int32_t* out) const;

 private:
  mapped_token_file() = default;
  const unsigned char* data_ = nullptr;
  std::size_t size_ = 0;
  std::int64_t tokens_ = 0;
  token_dtype dtype_ = token_dtype::uint16;
};

}  // namespace glam
