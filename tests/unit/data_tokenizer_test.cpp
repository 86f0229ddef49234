// The tokenizer on real text: a unigram model trained on some fortune files encodes and
// decodes every fortune document (seen or not, with characters it never saw) back to the
// same bytes; training is deterministic; a bad model file gets a clear error.
#include <gtest/gtest.h>

#include <chrono>

#include "data/error.hpp"
#include "data/text.hpp"
#include "data/tokenizer.hpp"
#include "tests/unit/data_testing.hpp"

namespace glam {
namespace {

std::vector<std::string> documents_of(const std::vector<std::string>& files) {
  std::vector<std::string> docs;
  for (const auto& f : files) {
    auto d = split_documents(normalise_text(read_text_file(f)));
    docs.insert(docs.end(), d.begin(), d.end());
  }
  return docs;
}

class TokenizerTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!testing::have_fortunes()) return;
    dir_ = new testing::scratch_dir;
    tokenizer_training_options opt;
    opt.vocab_size = 1000;
    train_tokenizer(documents_of(testing::small_corpus()), opt, *dir_ / "tok.model");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { GLAM_REQUIRE_FORTUNES(); }
  static testing::scratch_dir* dir_;
};
testing::scratch_dir* TokenizerTest::dir_ = nullptr;

TEST_F(TokenizerTest, SpecialIdsAndVocabulary) {
  tokenizer tok = tokenizer::load(*dir_ / "tok.model");
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.piece(3), "\n");  // the newline piece comes right after the control pieces
  EXPECT_GT(tok.vocab_size(), 500);
  EXPECT_LE(tok.vocab_size(), 1000);
  // Newline is one token, not its byte.
  EXPECT_EQ(tok.encode("\n"), std::vector<std::int32_t>{3});
}

TEST_F(TokenizerTest, RoundTripsEveryFortuneDocument) {
  tokenizer tok = tokenizer::load(*dir_ / "tok.model");
  auto docs = documents_of(testing::fortune_files());  // mostly text it was not trained on
  ASSERT_GT(docs.size(), 5000u);
  std::size_t tokens = 0, bytes = 0;
  for (const auto& d : docs) {
    auto ids = tok.encode(d);
    for (auto id : ids) {
      ASSERT_GE(id, 0);
      ASSERT_LT(id, tok.vocab_size());
      ASSERT_NE(id, tok.unk_id()) << "byte fallback should leave nothing unknown";
    }
    ASSERT_EQ(tok.decode(ids), d);
    tokens += ids.size();
    bytes += d.size();
  }
  // A trained unigram model compresses English: well under one token per byte.
  EXPECT_LT(static_cast<double>(tokens) / bytes, 0.5);
}

TEST_F(TokenizerTest, RoundTripsUnseenCharactersAndWhitespace) {
  tokenizer tok = tokenizer::load(*dir_ / "tok.model");
  for (std::string text :
       {std::string("  leading spaces,  double  spaces and trailing  "),
        std::string("\n\nnewlines\n\n\nrun\n"), std::string("tabs\tand\t\ttabs"),
        std::string(
            "na\xC3\xAFve caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80"),
        std::string("digits 1234567890 and symbols ~`@#$^&*()_+={}[]|\\:;\"'<>,.?/")}) {
    EXPECT_EQ(tok.decode(tok.encode(text)), text);
  }
}

// Streaming: the pieces text_stream gives out concatenate to decode(all tokens), and a
// character spread over several byte-fallback tokens comes out whole, never as U+FFFD.
TEST_F(TokenizerTest, TextStreamGivesOutWholeCharactersAsTheyComplete) {
  tokenizer tok = tokenizer::load(*dir_ / "tok.model");
  const std::string replacement = "\xEF\xBF\xBD";
  for (std::string text : {std::string("Q: What is the meaning of life?\nA: 42."),
                           std::string("caf\xC3\xA9 \xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E \xF0\x9F\x98\x80 done")}) {
    const auto ids = tok.encode(text);
    text_stream stream(tok);
    std::string joined;
    std::size_t held = 0;  // tokens that gave out nothing (the middle of a character)
    for (auto id : ids) {
      const std::string piece = stream.push(id);
      EXPECT_EQ(piece.find(replacement), std::string::npos) << "half a character given out";
      held += piece.empty() ? 1 : 0;
      joined += piece;
    }
    joined += stream.finish();
    EXPECT_EQ(joined, text);
    if (text.find('\xF0') != std::string::npos) {
      EXPECT_GT(held, 0u) << "the emoji is several byte tokens";
    }
  }
}

TEST(Tokenizer, TrainingIsDeterministic) {
  GLAM_REQUIRE_FORTUNES();
  testing::scratch_dir dir;
  auto docs = documents_of({testing::fortunes_dir + "/fortunes", testing::fortunes_dir + "/magic"});
  tokenizer_training_options opt;
  opt.vocab_size = 600;
  train_tokenizer(docs, opt, dir / "a.model");
  train_tokenizer(docs, opt, dir / "b.model");
  std::string a = testing::read_file(dir / "a.model"), b = testing::read_file(dir / "b.model");
  ASSERT_FALSE(a.empty());
  EXPECT_EQ(a, b);
  // Different data gives a different model (the comparison above can fail).
  docs.pop_back();
  train_tokenizer(docs, opt, dir / "c.model");
  EXPECT_NE(testing::read_file(dir / "c.model"), a);
}

TEST(Tokenizer, BadModelFilesAndVocabSizesGetClearErrors) {
  testing::scratch_dir dir;
  testing::expect_error_mentions([&] { tokenizer::load(dir / "none.model"); },
                                 {dir / "none.model", "cannot load the tokenizer"});
  testing::write_file(dir / "junk.model", "this is not a protobuf");
  testing::expect_error_mentions([&] { tokenizer::load(dir / "junk.model"); },
                                 {dir / "junk.model"});
  tokenizer_training_options opt;
  opt.vocab_size = 100;
  testing::expect_error_mentions([&] { train_tokenizer({"some text"}, opt, dir / "x.model"); },
                                 {"vocab_size 100", "at least 300"});
}

}  // namespace
}  // namespace glam
