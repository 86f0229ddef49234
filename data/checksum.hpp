#pragma once
// A fast, non-cryptographic 64-bit checksum for data shards, tokenizer files and checkpoint
// unit files. It catches accidental corruption (truncation, bit flips, swapped blocks), not
// tampering. The value is defined on the bytes alone: little-endian loads, the same on every
// machine, and the same whether the bytes arrive in one buffer or in pieces.
//
// Structure: four independent 64-bit lanes consume 32-byte stripes (multiply-rotate-multiply
// per 8-byte word), so the inner loop has four independent dependency chains; the lanes are
// folded, the tail (< 32 bytes) is mixed in word by word then byte by byte, the length is
// mixed in, and a final avalanche spreads every input bit over the whole result.
#include <cstddef>
#include <cstdint>
#include <string>

namespace glam {

std::uint64_t checksum64(const void* data, std::size_t size);

// Reads the file in blocks; throws data_error naming the path if it cannot be read.
std::uint64_t file_checksum64(const std::string& path);

// Incremental form: update() with the bytes in any split, digest() equals checksum64 of
// their concatenation. digest() does not end the stream.
class checksum64_stream {
 public:
  checksum64_stream();
  void update(const void* data, std::size_t size);
  std::uint64_t digest() const;

 private:
  std::uint64_t lanes_[4];
  unsigned char pending_[32];
  std::size_t pending_size_ = 0;
  std::uint64_t total_ = 0;
};

// "0x" followed by 16 lower-case hex digits (the manifests' form: JSON numbers are doubles
// to many readers and cannot hold every 64-bit value).
std::string checksum_to_hex(std::uint64_t value);
// Parses the form above; returns false on anything else.
bool checksum_from_hex(const std::string& text, std::uint64_t& value);

}  // namespace glam
