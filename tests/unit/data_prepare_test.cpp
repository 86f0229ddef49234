// prepare_data end to end on real text: what the directory holds, that the streams decode
// back to the documents, byte-identical output on a second run, the output-directory rules,
// the input errors, and dataset::open refusing every kind of damage.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "data/checksum.hpp"
#include "data/dataset.hpp"
#include "data/error.hpp"
#include "data/prepare.hpp"
#include "data/text.hpp"
#include "data/tokenizer.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace fs = std::filesystem;
namespace {

prepare_options small_options(const std::string& out) {
  prepare_options opt;
  opt.inputs = testing::small_corpus();
  opt.out_dir = out;
  opt.vocab_size = 600;
  opt.val_fraction = 0.1;
  opt.progress = [](const std::string&) {};
  return opt;
}

std::map<std::string, std::string> directory_bytes(const std::string& dir) {
  std::map<std::string, std::string> files;
  for (const auto& e : fs::directory_iterator(dir))
    files[e.path().filename().string()] = testing::read_file(e.path().string());
  return files;
}

TEST(Prepare, WritesADirectoryWhoseStreamsDecodeToTheDocuments) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  std::vector<std::string> messages;
  prepare_options opt = small_options(dir / "data");
  opt.progress = [&](const std::string& m) { messages.push_back(m); };
  prepare_result r = prepare_data(opt);
  EXPECT_FALSE(messages.empty());
  EXPECT_TRUE(r.trained_tokenizer);
  EXPECT_EQ(r.input_files, 4);
  auto names = directory_bytes(dir / "data");
  std::set<std::string> expected{"manifest.json", "tokenizer.model", "train-00000.bin",
                                 "validation-00000.bin"};
  std::set<std::string> got;
  for (const auto& [name, bytes] : names) got.insert(name);
  EXPECT_EQ(got, expected);

  dataset d = dataset::open(dir / "data");
  EXPECT_EQ(d.vocab_size(), r.vocab_size);
  EXPECT_EQ(d.train_tokens(), r.train_tokens);
  EXPECT_EQ(d.validation_tokens(), r.validation_tokens);
  EXPECT_EQ(d.eos_id(), 2);
  EXPECT_EQ(d.manifest().dtype, token_dtype::uint16);
  EXPECT_GT(d.validation_tokens(), 0);
  EXPECT_NEAR(
      static_cast<double>(r.validation_documents) / (r.train_documents + r.validation_documents),
      0.1, 0.05);

  // Decode each stream, splitting at eos: the documents come back, train and validation
  // together being exactly the input's documents, each once.
  tokenizer tok = tokenizer::load(d.tokenizer_path());
  std::multiset<std::string> decoded;
  std::vector<std::int64_t> counts(static_cast<std::size_t>(d.vocab_size()), 0);
  for (bool train : {true, false}) {
    std::int64_t n = train ? d.train_tokens() : d.validation_tokens();
    std::vector<std::int32_t> ids(static_cast<std::size_t>(n));
    (train ? d.read_train_tokens(0, n, ids.data()) : d.read_validation_tokens(0, n, ids.data()));
    ASSERT_EQ(ids.back(), d.eos_id());
    std::vector<std::int32_t> doc;
    for (auto id : ids) {
      if (train) counts[static_cast<std::size_t>(id)]++;
      if (id == d.eos_id()) {
        decoded.insert(tok.decode(doc));
        doc.clear();
      } else {
        doc.push_back(id);
      }
    }
  }
  std::multiset<std::string> original;
  for (const auto& f : testing::small_corpus())
    for (auto& doc : split_documents(normalise_text(read_text_file(f)))) original.insert(doc);
  EXPECT_EQ(decoded, original);

  // The manifest's entropy is that of the train tokens.
  double h = 0;
  for (auto c : counts)
    if (c) {
      double p = static_cast<double>(c) / d.train_tokens();
      h -= p * std::log(p);
    }
  EXPECT_NEAR(d.unigram_entropy(), h, 1e-9);
  EXPECT_GT(d.unigram_entropy(), 3.0);
  EXPECT_LT(d.unigram_entropy(), std::log(static_cast<double>(d.vocab_size())));
}

TEST(Prepare, SameInputSameBytesWhereverTheOutputGoes) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  prepare_data(small_options(dir / "one"));
  prepare_data(small_options(dir / "two/nested"));
  auto a = directory_bytes(dir / "one"), b = directory_bytes(dir / "two/nested");
  EXPECT_EQ(a.size(), 4u);
  EXPECT_TRUE(a == b);
  // And a second run over the first directory replaces it with the same bytes.
  prepare_data(small_options(dir / "one"));
  EXPECT_TRUE(directory_bytes(dir / "one") == a);
  // A different split seed gives a different split (the comparison above can fail).
  prepare_options other = small_options(dir / "three");
  other.seed = 1;
  prepare_data(other);
  EXPECT_NE(directory_bytes(dir / "three").at("manifest.json"), a.at("manifest.json"));
}

TEST(Prepare, SmallShardsAndAGivenTokenizer) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  prepare_data(small_options(dir / "a"));
  prepare_options opt = small_options(dir / "b");
  opt.tokenizer = dir / "a/tokenizer.model";
  opt.max_shard_tokens = 5000;
  prepare_result r = prepare_data(opt);
  EXPECT_FALSE(r.trained_tokenizer);
  EXPECT_GT(r.train_shards, 3);
  dataset a = dataset::open(dir / "a"), b = dataset::open(dir / "b");
  EXPECT_FALSE(b.manifest().tokenizer_trained);
  ASSERT_EQ(a.train_tokens(), b.train_tokens());
  // Same tokens whether stored in one shard or many, and batches cross shard boundaries.
  std::vector<std::int32_t> x(static_cast<std::size_t>(a.train_tokens())), y(x.size());
  a.read_train_tokens(0, a.train_tokens(), x.data());
  b.read_train_tokens(0, b.train_tokens(), y.data());
  EXPECT_EQ(x, y);
  std::vector<std::int32_t> p(8 * 129), q(8 * 129);
  a.train_batch(1, 3, 0, 1, 8, 128, p.data());
  b.train_batch(1, 3, 0, 1, 8, 128, q.data());
  EXPECT_EQ(p, q);
}

TEST(Prepare, InputErrorsNameTheFileAndWriteNothing) {
  testing::scratch_dir dir;
  testing::write_file(dir / "good.txt", "one\n%\ntwo\n%\nthree\n");
  testing::write_file(dir / "empty.txt", "");
  testing::write_file(dir / "blank.txt", " \n\t\n");
  testing::write_file(dir / "binary.bin", std::string("text\0\1\2", 7));
  testing::write_file(dir / "latin1.txt", "abc\xE9");
  auto fails = [&](std::vector<std::string> inputs, std::vector<std::string> parts) {
    prepare_options opt;
    opt.inputs = std::move(inputs);
    opt.out_dir = dir / "out";
    opt.progress = [](const std::string&) {};
    testing::expect_error_mentions([&] { prepare_data(opt); }, parts);
    EXPECT_FALSE(fs::exists(dir / "out"));
  };
  fails({dir / "good.txt", dir / "missing.txt"}, {dir / "missing.txt", "does not exist"});
  fails({dir / "empty.txt"}, {dir / "empty.txt", "empty"});
  fails({dir / "good.txt", dir / "blank.txt"}, {dir / "blank.txt", "no text"});
  fails({dir / "binary.bin"}, {dir / "binary.bin", "binary", "offset 4"});
  fails({dir / "latin1.txt"}, {dir / "latin1.txt", "UTF-8", "offset 3"});
  testing::write_file(dir / "single.txt", "just one document, no separators\n");
  fails({dir / "single.txt"}, {"1 document", "at least 2"});
  prepare_options opt;
  opt.inputs = {dir / "good.txt"};
  opt.out_dir = dir / "out";
  opt.val_fraction = 0;
  testing::expect_error_mentions([&] { prepare_data(opt); }, {"--val-fraction"});
  opt.val_fraction = 0.05;
  opt.vocab_size = 10;
  testing::expect_error_mentions([&] { prepare_data(opt); }, {"--vocab-size is 10"});
  opt.inputs = {};
  testing::expect_error_mentions([&] { prepare_data(opt); }, {"--input"});
}

TEST(Prepare, RefusesAnUnrelatedNonEmptyOutputDirectory) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  fs::create_directories(dir / "mine");
  testing::write_file(dir / "mine/notes.txt", "precious");
  testing::expect_error_mentions([&] { prepare_data(small_options(dir / "mine")); },
                                 {dir / "mine", "not empty", "notes.txt", "refusing"});
  EXPECT_EQ(directory_bytes(dir / "mine").size(), 1u);
  testing::write_file(dir / "file", "x");
  testing::expect_error_mentions([&] { prepare_data(small_options(dir / "file")); },
                                 {"not a directory"});
  // An empty directory is fine.
  fs::create_directories(dir / "empty");
  prepare_data(small_options(dir / "empty"));
  EXPECT_TRUE(fs::exists(dir / "empty/manifest.json"));
}

TEST(Prepare, TinyTextStillGetsBothSplits) {
  testing::scratch_dir dir;
  std::string text;
  for (int i = 0; i < 6; ++i)
    text += "Document number " + std::to_string(i) + " says something short.\n%\n";
  testing::write_file(dir / "t.txt", text);
  prepare_options opt;
  opt.inputs = {dir / "t.txt"};
  opt.out_dir = dir / "out";
  opt.vocab_size = 300;
  opt.val_fraction = 0.01;  // rounds to no document: one is taken anyway
  opt.progress = [](const std::string&) {};
  prepare_result r = prepare_data(opt);
  EXPECT_EQ(r.validation_documents, 1);
  EXPECT_EQ(r.train_documents, 5);
  dataset d = dataset::open(dir / "out");
  EXPECT_GT(d.longest_trainable_sequence(), 4);
}

class OpenDamaged : public ::testing::Test {
 protected:
  void SetUp() override {
    GLAM_REQUIRE_FORTUNES();
    prepare_data(small_options(dir_ / "d"));
    ASSERT_NO_THROW(dataset::open(dir_ / "d"));
  }
  std::string path(const std::string& name) { return dir_ / ("d/" + name); }
  void refused(const std::vector<std::string>& parts) {
    testing::expect_error_mentions([&] { dataset::open(dir_ / "d"); }, parts);
  }
  testing::scratch_dir dir_;
};

TEST_F(OpenDamaged, FlippedShardByte) {
  std::string bytes = testing::read_file(path("train-00000.bin"));
  bytes[bytes.size() / 2] ^= 1;
  testing::write_file(path("train-00000.bin"), bytes);
  refused({path("train-00000.bin"), "checksum", "prepare the data again"});
}

TEST_F(OpenDamaged, TruncatedValidationShard) {
  std::string bytes = testing::read_file(path("validation-00000.bin"));
  testing::write_file(path("validation-00000.bin"), bytes.substr(0, bytes.size() - 2));
  refused({path("validation-00000.bin"), "bytes but the manifest says"});
}

TEST_F(OpenDamaged, MissingShard) {
  fs::remove(path("train-00000.bin"));
  refused({path("train-00000.bin"), "cannot be opened"});
}

TEST_F(OpenDamaged, ChangedTokenizer) {
  std::string bytes = testing::read_file(path("tokenizer.model"));
  bytes[100] ^= 0x40;
  testing::write_file(path("tokenizer.model"), bytes);
  refused({path("tokenizer.model"), "checksum"});
}

TEST_F(OpenDamaged, ManifestMissingGarbledOrFromAnotherVersion) {
  std::string good = testing::read_file(path("manifest.json"));
  fs::remove(path("manifest.json"));
  refused({"manifest.json", "glam data prepare"});
  testing::write_file(path("manifest.json"), good.substr(0, 200));
  refused({path("manifest.json"), "not valid JSON"});
  std::string v2 = good;
  v2.replace(v2.find("\"format_version\": 1"), 19, "\"format_version\": 9");
  testing::write_file(path("manifest.json"), v2);
  refused({path("manifest.json"), "format_version 9"});
  // A manifest whose checksum no longer matches its shard.
  std::string edited = good;
  auto at = edited.find("\"checksum\": \"0x", edited.find("train-00000.bin") - 80);
  ASSERT_NE(at, std::string::npos);
  char& digit = edited[at + 15];
  digit = digit == '0' ? '1' : '0';
  testing::write_file(path("manifest.json"), edited);
  refused({path("train-00000.bin"), "checksum"});
}

TEST_F(OpenDamaged, NotADataDirectory) {
  testing::expect_error_mentions([&] { dataset::open(dir_ / "nowhere"); },
                                 {dir_ / "nowhere", "does not exist"});
}

TEST(PrepareFortunes, WholeCorpusWithTheDefaultVocabulary) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  prepare_options opt;
  opt.inputs = {testing::fortunes_dir};
  opt.exclude_suffixes = {".dat"};
  opt.out_dir = dir / "fortunes";
  opt.progress = [](const std::string&) {};
  prepare_result r = prepare_data(opt);
  std::printf(
      "fortunes: %lld files, %llu bytes, vocab %lld, %lld train + %lld validation tokens, "
      "entropy %.4f nats; tokenizer %.1f s, total %.1f s\n",
      static_cast<long long>(r.input_files), static_cast<unsigned long long>(r.input_bytes),
      static_cast<long long>(r.vocab_size), static_cast<long long>(r.train_tokens),
      static_cast<long long>(r.validation_tokens), r.unigram_entropy, r.tokenizer_seconds,
      r.total_seconds);
  EXPECT_EQ(r.vocab_size, 8192);
  EXPECT_EQ(r.input_files, static_cast<std::int64_t>(testing::fortune_files().size()));
  EXPECT_LT(r.tokenizer_seconds, 60.0);
  dataset d = dataset::open(opt.out_dir);
  EXPECT_GT(d.longest_trainable_sequence(), 1024);
  EXPECT_GT(d.train_tokens(), 400'000);
}

}  // namespace
}  // namespace glam
