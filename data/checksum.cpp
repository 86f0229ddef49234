#include "data/checksum.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include "data/error.hpp"

namespace glam {
namespace {

// Odd 64-bit constants with well-spread bits (golden ratio and splitmix64's multipliers).
constexpr std::uint64_t k1 = 0x9E3779B97F4A7C15ull;
constexpr std::uint64_t k2 = 0xBF58476D1CE4E5B9ull;
constexpr std::uint64_t k3 = 0x94D049BB133111EBull;
constexpr std::uint64_t k4 = 0xD6E8FEB86659FD93ull;

inline std::uint64_t rotl(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

// Explicit little-endian load, so the value does not depend on the host's byte order.
inline std::uint64_t load64(const unsigned char* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

// One word into one lane: the multiply carries low bits up, the rotation brings high bits
// back down, so that no bit of the word is lost to the top of the product.
inline std::uint64_t round(std::uint64_t lane, std::uint64_t word) {
  lane += word * k2;
  lane = rotl(lane, 31);
  return lane * k1;
}

inline std::uint64_t avalanche(std::uint64_t h) {
  h ^= h >> 30;
  h *= k2;
  h ^= h >> 27;
  h *= k3;
  h ^= h >> 31;
  return h;
}

inline void consume_stripe(std::uint64_t* lanes, const unsigned char* p) {
  lanes[0] = round(lanes[0], load64(p));
  lanes[1] = round(lanes[1], load64(p + 8));
  lanes[2] = round(lanes[2], load64(p + 16));
  lanes[3] = round(lanes[3], load64(p + 24));
}

}  // namespace

checksum64_stream::checksum64_stream() : lanes_{k1 + k2, k2, 0, 0 - k1} {}

void checksum64_stream::update(const void* data, std::size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  total_ += size;
  if (pending_size_ > 0) {
    std::size_t take = std::min(size, sizeof(pending_) - pending_size_);
    std::memcpy(pending_ + pending_size_, p, take);
    pending_size_ += take;
    p += take;
    size -= take;
    if (pending_size_ < sizeof(pending_)) return;
    consume_stripe(lanes_, pending_);
    pending_size_ = 0;
  }
  while (size >= 32) {
    consume_stripe(lanes_, p);
    p += 32;
    size -= 32;
  }
  if (size > 0) {
    std::memcpy(pending_, p, size);
    pending_size_ = size;
  }
}

std::uint64_t checksum64_stream::digest() const {
  std::uint64_t h =
      rotl(lanes_[0], 1) + rotl(lanes_[1], 7) + rotl(lanes_[2], 12) + rotl(lanes_[3], 18);
  for (std::uint64_t lane : lanes_) h = (h ^ round(0, lane)) * k1 + k4;
  h += total_;
  std::size_t i = 0;
  for (; i + 8 <= pending_size_; i += 8) h = rotl(h ^ round(0, load64(pending_ + i)), 27) * k1 + k4;
  for (; i < pending_size_; ++i) h = rotl(h ^ (pending_[i] * k3), 11) * k1;
  return avalanche(h);
}

std::uint64_t checksum64(const void* data, std::size_t size) {
  checksum64_stream s;
  s.update(data, size);
  return s.digest();
}

std::uint64_t file_checksum64(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f)
    throw data_error("cannot open " + path + " to compute its checksum: " + std::strerror(errno));
  std::vector<unsigned char> block(1 << 20);
  checksum64_stream s;
  for (;;) {
    std::size_t n = std::fread(block.data(), 1, block.size(), f.get());
    s.update(block.data(), n);
    if (n < block.size()) {
      if (std::ferror(f.get()))
        throw data_error("read error in " + path +
                         " while computing its checksum: " + std::strerror(errno));
      break;
    }
  }
  return s.digest();
}

std::string checksum_to_hex(std::uint64_t value) {
  char text[19];
  std::snprintf(text, sizeof(text), "0x%016llx", static_cast<unsigned long long>(value));
  return text;
}

bool checksum_from_hex(const std::string& text, std::uint64_t& value) {
  if (text.size() != 18 || text[0] != '0' || text[1] != 'x') return false;
  std::uint64_t v = 0;
  for (std::size_t i = 2; i < text.size(); ++i) {
    char c = text[i];
    int d;
    if (c >= '0' && c <= '9')
      d = c - '0';
    else if (c >= 'a' && c <= 'f')
      d = c - 'a' + 10;
    else
      return false;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  value = v;
  return true;
}

}  // namespace glam
