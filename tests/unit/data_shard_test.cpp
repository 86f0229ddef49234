// Token shards and the manifest: write/read round trip for both dtypes and across shard
// boundaries, ids that do not fit, and the corruption a reader must catch (size, checksum,
// damaged manifest fields).
#include <gtest/gtest.h>

#include <filesystem>
#include <random>

#include "data/checksum.hpp"
#include "data/error.hpp"
#include "data/manifest.hpp"
#include "data/token_file.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace {

std::vector<std::int32_t> random_ids(std::size_t n, std::int32_t below, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> v(n);
  for (auto& x : v) x = static_cast<std::int32_t>(rng() % static_cast<std::uint32_t>(below));
  return v;
}

struct dtype_case {
  token_dtype dtype;
  std::int32_t below;
};

class ShardRoundTrip : public ::testing::TestWithParam<dtype_case> {};

TEST_P(ShardRoundTrip, WritesShardsOfBoundedSizeAndReadsTheSameIds) {
  auto [dtype, below] = GetParam();
  testing::scratch_dir dir;
  auto ids = random_ids(10'007, below, 11);
  ids[0] = below - 1;  // the largest id must survive
  token_stream_writer w(dir.path(), "train", dtype, 4096);
  // Appends of awkward sizes, so that some cross a shard boundary.
  for (std::size_t at = 0; at < ids.size();) {
    std::size_t n = std::min<std::size_t>(ids.size() - at, 1 + (at * 7919) % 3000);
    w.append(ids.data() + at, n);
    at += n;
  }
  auto shards = w.finish();
  ASSERT_EQ(shards.size(), 3u);
  EXPECT_EQ(shards[0].file, "train-00000.bin");
  EXPECT_EQ(shards[2].file, "train-00002.bin");
  EXPECT_EQ(shards[0].tokens, 4096);
  EXPECT_EQ(shards[2].tokens, 10'007 - 2 * 4096);
  std::vector<std::int32_t> back;
  for (const auto& s : shards) {
    EXPECT_EQ(s.bytes, static_cast<std::uint64_t>(s.tokens) * bytes_per_token(dtype));
    EXPECT_EQ(std::filesystem::file_size(dir / s.file), s.bytes);
    EXPECT_EQ(file_checksum64(dir / s.file), s.checksum);
    auto f = mapped_token_file::open(dir / s.file, dtype, s.tokens, true, s.checksum);
    std::vector<std::int32_t> part(static_cast<std::size_t>(s.tokens));
    f.read(0, s.tokens, part.data());
    back.insert(back.end(), part.begin(), part.end());
  }
  EXPECT_EQ(back, ids);
}

INSTANTIATE_TEST_SUITE_P(Dtypes, ShardRoundTrip,
                         ::testing::Values(dtype_case{token_dtype::uint16, 65536},
                                           dtype_case{token_dtype::uint32, 300000}),
                         [](const ::testing::TestParamInfo<dtype_case>& info) {
                           return dtype_name(info.param.dtype);
                         });

TEST(Shard, LittleEndianOnDisk) {
  testing::scratch_dir dir;
  token_stream_writer w(dir.path(), "t", token_dtype::uint16, 100);
  std::int32_t ids[] = {0x0102, 0xA0B0};
  w.append(ids, 2);
  w.finish();
  EXPECT_EQ(testing::read_file(dir / "t-00000.bin"), std::string("\x02\x01\xB0\xA0", 4));
  EXPECT_EQ(dtype_for_vocab(65536), token_dtype::uint16);
  EXPECT_EQ(dtype_for_vocab(65537), token_dtype::uint32);
}

TEST(Shard, IdsThatDoNotFitAreRefused) {
  testing::scratch_dir dir;
  token_stream_writer w(dir.path(), "t", token_dtype::uint16, 100);
  std::int32_t big = 65536, negative = -1;
  testing::expect_error_mentions([&] { w.append(&big, 1); }, {"65536", "uint16"});
  testing::expect_error_mentions([&] { w.append(&negative, 1); }, {"-1"});
}

TEST(Shard, AnEmptyStreamStillHasOneFile) {
  testing::scratch_dir dir;
  token_stream_writer w(dir.path(), "validation", token_dtype::uint16, 100);
  auto shards = w.finish();
  ASSERT_EQ(shards.size(), 1u);
  EXPECT_EQ(shards[0].tokens, 0);
  auto f = mapped_token_file::open(dir / shards[0].file, token_dtype::uint16, 0, true,
                                   shards[0].checksum);
  EXPECT_EQ(f.tokens(), 0);
}

TEST(Shard, CorruptionAndTruncationAreDetected) {
  testing::scratch_dir dir;
  auto ids = random_ids(1000, 8000, 2);
  token_stream_writer w(dir.path(), "s", token_dtype::uint16, 1 << 20);
  w.append(ids.data(), ids.size());
  shard_info s = w.finish().at(0);
  std::string path = dir / s.file;
  std::string good = testing::read_file(path);

  std::string flipped = good;
  flipped[777] ^= 0x10;
  testing::write_file(path, flipped);
  testing::expect_error_mentions(
      [&] { mapped_token_file::open(path, token_dtype::uint16, s.tokens, true, s.checksum); },
      {path, "checksum", checksum_to_hex(s.checksum), "prepare the data again"});

  testing::write_file(path, good.substr(0, good.size() - 2));
  testing::expect_error_mentions(
      [&] { mapped_token_file::open(path, token_dtype::uint16, s.tokens, true, s.checksum); },
      {path, "1998 bytes", "1000 uint16 tokens"});

  std::filesystem::remove(path);
  testing::expect_error_mentions(
      [&] { mapped_token_file::open(path, token_dtype::uint16, s.tokens, true, s.checksum); },
      {path, "cannot be opened"});

  testing::write_file(path, good);
  auto f = mapped_token_file::open(path, token_dtype::uint16, s.tokens, true, s.checksum);
  std::int32_t out[3];
  f.read(997, 3, out);
  EXPECT_EQ(out[2], ids[999]);
  EXPECT_THROW(f.read(998, 3, out), data_error);
}

data_manifest sample_manifest() {
  data_manifest m;
  m.vocab_size = 8192;
  m.tokenizer_bytes = 1234;
  m.tokenizer_checksum = 0xfeedfacecafebeefull;
  m.train = {{"train-00000.bin", 100, 200, 1}, {"train-00001.bin", 50, 100, 2}};
  m.validation = {{"validation-00000.bin", 10, 20, 3}};
  m.train_tokens = 150;
  m.validation_tokens = 10;
  m.train_documents = 7;
  m.validation_documents = 1;
  m.unigram_entropy = 5.4321098765432101;
  m.vocab_size_requested = 8192;
  m.val_fraction = 0.05;
  m.split_seed = 9;
  m.sources = {{"fortunes", 24516, 0x1234, 431}};
  return m;
}

TEST(Manifest, JsonRoundTripIsExact) {
  data_manifest m = sample_manifest();
  std::string text = manifest_to_json(m);
  data_manifest back = manifest_from_json(text, "m.json");
  EXPECT_EQ(manifest_to_json(back), text);
  EXPECT_EQ(back.unigram_entropy, m.unigram_entropy);  // bit-exact through JSON
  EXPECT_EQ(back.tokenizer_checksum, m.tokenizer_checksum);
  EXPECT_EQ(back.train.size(), 2u);
  EXPECT_EQ(back.train[1].checksum, 2u);
  EXPECT_EQ(back.sources.at(0).documents, 431);
}

TEST(Manifest, DamagedManifestsAreRefusedNamingTheField) {
  std::string good = manifest_to_json(sample_manifest());
  auto edit = [&](const std::string& from, const std::string& to) {
    std::string t = good;
    auto at = t.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    return t.replace(at, from.size(), to);
  };
  auto refuses = [](const std::string& text, std::vector<std::string> parts) {
    parts.insert(parts.begin(), "m.json");
    testing::expect_error_mentions([&] { manifest_from_json(text, "m.json"); }, parts);
  };
  refuses("{ not json", {"not valid JSON"});
  refuses(good.substr(0, good.size() / 2), {"not valid JSON"});
  refuses(edit("\"format_version\": 1", "\"format_version\": 2"),
          {"format_version 2", "prepare the data again"});
  refuses(edit("\"glam-data\"", "\"other\""), {"format"});
  refuses(edit("\"vocab_size\": 8192", "\"vocab_size\": \"8192\""),
          {"vocab_size is not an integer"});
  refuses(edit("\"eos_id\": 2,", ""), {"eos_id is missing"});
  refuses(edit("\"token_dtype\": \"uint16\"", "\"token_dtype\": \"int8\""), {"int8"});
  refuses(edit("\"checksum\": \"0xfeedfacecafebeef\"", "\"checksum\": \"feed\""),
          {"tokenizer.checksum"});
  refuses(edit("\"tokens\": 150", "\"tokens\": 151"), {"train.tokens is 151", "150"});
  refuses(edit("\"train-00001.bin\"", "\"../x.bin\""), {"train.shards[1].file"});
  refuses(edit("\"bytes\": 100,", "\"bytes\": 99,"), {"train-00001.bin", "99 bytes"});
}

TEST(Manifest, ReadAndWriteThroughTheDirectory) {
  testing::scratch_dir dir;
  testing::expect_error_mentions([&] { read_manifest(dir.path()); },
                                 {dir.path(), "manifest.json", "glam data prepare"});
  write_manifest(dir.path(), sample_manifest());
  EXPECT_FALSE(std::filesystem::exists(dir / "manifest.json.tmp"));
  EXPECT_EQ(read_manifest(dir.path()).train_tokens, 150);
}

}  // namespace
}  // namespace glam
