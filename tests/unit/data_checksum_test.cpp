// checksum64: the same value in one buffer or in pieces, for a file and its bytes; sensitive
// to every single-bit flip, to word swaps and to length; and pinned, because manifests and
// checkpoints store its values.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <set>

#include "data/checksum.hpp"
#include "data/error.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace {

std::vector<unsigned char> random_bytes(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<unsigned char> v(n);
  for (auto& b : v) b = static_cast<unsigned char>(rng());
  return v;
}

TEST(Checksum, StreamInAnySplitEqualsWholeBuffer) {
  for (std::size_t n : {0, 1, 7, 8, 31, 32, 33, 64, 100, 1000, 4099}) {
    auto bytes = random_bytes(n, static_cast<std::uint32_t>(n));
    std::uint64_t whole = checksum64(bytes.data(), bytes.size());
    std::mt19937 rng(7);
    for (int trial = 0; trial < 20; ++trial) {
      checksum64_stream s;
      std::size_t at = 0;
      while (at < n) {
        std::size_t take = std::min<std::size_t>(n - at, rng() % 70);
        s.update(bytes.data() + at, take);
        at += take;
      }
      EXPECT_EQ(s.digest(), whole) << "n=" << n;
    }
  }
}

TEST(Checksum, EveryBitFlipChangesTheValue) {
  auto bytes = random_bytes(203, 1);
  std::uint64_t base = checksum64(bytes.data(), bytes.size());
  std::set<std::uint64_t> seen{base};
  for (std::size_t i = 0; i < bytes.size(); ++i)
    for (int bit = 0; bit < 8; ++bit) {
      bytes[i] ^= static_cast<unsigned char>(1u << bit);
      seen.insert(checksum64(bytes.data(), bytes.size()));
      bytes[i] ^= static_cast<unsigned char>(1u << bit);
    }
  EXPECT_EQ(seen.size(), 1 + bytes.size() * 8);
}

TEST(Checksum, TwoFlipsInTheSameBitOfDifferentWordsDoNotCancel) {
  std::vector<unsigned char> zeros(256, 0);
  std::uint64_t base = checksum64(zeros.data(), zeros.size());
  for (std::size_t a = 7; a < zeros.size(); a += 8)
    for (std::size_t b = a + 8; b < zeros.size(); b += 8) {
      zeros[a] = zeros[b] = 0x80;
      EXPECT_NE(checksum64(zeros.data(), zeros.size()), base) << a << "," << b;
      zeros[a] = zeros[b] = 0;
    }
}

TEST(Checksum, SwappedWordsAndLengthsDiffer) {
  auto bytes = random_bytes(64, 3);
  std::uint64_t base = checksum64(bytes.data(), bytes.size());
  std::swap_ranges(bytes.begin(), bytes.begin() + 8, bytes.begin() + 32);
  EXPECT_NE(checksum64(bytes.data(), bytes.size()), base);
  std::set<std::uint64_t> by_length;
  std::vector<unsigned char> zeros(200, 0);
  for (std::size_t n = 0; n <= zeros.size(); ++n) by_length.insert(checksum64(zeros.data(), n));
  EXPECT_EQ(by_length.size(), zeros.size() + 1);
}

TEST(Checksum, ValuesArePinned) {
  // Stored in manifests and checkpoints: a change here invalidates every one of them.
  EXPECT_EQ(checksum_to_hex(checksum64("", 0)), checksum_to_hex(checksum64(nullptr, 0)));
  const std::string text = "The quick brown fox jumps over the lazy dog";
  std::uint64_t a = checksum64(text.data(), text.size());
  std::uint64_t b = checksum64("glam", 4);
  EXPECT_EQ(checksum_to_hex(a), "0x614465b5c22f7ea2");
  EXPECT_EQ(checksum_to_hex(b), "0x851f37bbf65b3a22");
}

TEST(Checksum, FileChecksumMatchesBufferChecksum) {
  testing::scratch_dir dir;
  auto bytes = random_bytes(3 * (1 << 20) + 17, 5);  // spans several read blocks
  std::string path = dir / "blob";
  testing::write_file(path, std::string(bytes.begin(), bytes.end()));
  EXPECT_EQ(file_checksum64(path), checksum64(bytes.data(), bytes.size()));
  testing::write_file(dir / "empty", "");
  EXPECT_EQ(file_checksum64(dir / "empty"), checksum64(nullptr, 0));
  testing::expect_error_mentions([&] { file_checksum64(dir / "missing"); }, {dir / "missing"});
}

TEST(Checksum, HexRoundTripAndRejection) {
  for (std::uint64_t v :
       {std::uint64_t{0}, std::uint64_t{1}, ~std::uint64_t{0}, std::uint64_t{0x0123456789abcdef}}) {
    std::uint64_t back = 7;
    ASSERT_TRUE(checksum_from_hex(checksum_to_hex(v), back));
    EXPECT_EQ(back, v);
  }
  std::uint64_t v;
  EXPECT_FALSE(checksum_from_hex("0x123", v));
  EXPECT_FALSE(checksum_from_hex("0x0123456789ABCDEF", v));
  EXPECT_FALSE(checksum_from_hex("1x0123456789abcdef", v));
  EXPECT_FALSE(checksum_from_hex("0x0123456789abcdeg", v));
}

TEST(Checksum, FastEnoughForCheckpoints) {
  auto bytes = random_bytes(64 << 20, 9);
  auto t0 = std::chrono::steady_clock::now();
  volatile std::uint64_t sink = checksum64(bytes.data(), bytes.size());
  (void)sink;
  double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  double gbps = bytes.size() / s / 1e9;
  RecordProperty("GB_per_s", std::to_string(gbps));
  std::printf("checksum64: %.2f GB/s\n", gbps);
  EXPECT_GT(gbps, 0.5);
}

}  // namespace
}  // namespace glam
