// `glam generate` as a user runs it, on a glam-tiny checkpoint trained for a few steps here:
// greedy decoding produces text and is the same every time, and so is seeded sampling; the
// checkpoint is found from its root or one step directory, and the tokenizer from the data
// its job names; a prompt longer than seq_len, an empty prompt, a missing or empty
// checkpoint directory and a tokenizer of other data are each a clear error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "cli_testing.hpp"

namespace {

namespace fs = std::filesystem;

// A scratch directory per test, removed after it.
class CliGenerate : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("glam-generate-cli-test-" + std::to_string(::getpid()) + "-" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  // stdout only (the generated text), or stdout and stderr together.
  static glam::testing::run_result generate(const std::string& args, bool with_stderr = true) {
    return glam::testing::run_glam("generate --threads 2 " + args, with_stderr);
  }
  fs::path dir_;
};

// One test for everything that needs a trained checkpoint: ctest runs each test in a process
// of its own, and preparing data and training is most of the time.
TEST_F(CliGenerate, ATrainedGlamTinyGeneratesText) {
  ASSERT_EQ(glam::testing::train_tiny_checkpoint(dir_.string()), "");
  const std::string checkpoint = "--checkpoint '" + (dir_ / "ckpt").string() + "'";

  // Greedy decoding gives text, the same every time.
  const std::string greedy = " --prompt 'The meaning of life is' --temperature 0 --max-tokens 12";
  auto a = generate(checkpoint + greedy, false);
  ASSERT_EQ(a.status, 0) << generate(checkpoint + greedy).output;
  // The text and the newline after it (a model this young likes spaces and punctuation).
  EXPECT_GT(a.output.size(), 1u) << "no text: '" << a.output << "'";
  EXPECT_EQ(generate(checkpoint + greedy, false).output, a.output);
  // The summary on stderr: how many tokens and why generation stopped.
  auto summary = generate(checkpoint + greedy);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(summary.output, m, std::regex(R"(glam generate: (\d+) tokens \(finish: (stop|length)\))")))
      << summary.output;
  EXPECT_GE(std::stoi(m[1].str()), 1) << summary.output;
  // One step directory serves as well as the root.
  EXPECT_EQ(generate("--checkpoint '" + (dir_ / "ckpt" / "step-00000002").string() + "'" + greedy, false).output, a.output);

  // Seeded sampling gives the same text every time.
  const std::string sampled = checkpoint + " --prompt 'Q: Why' --temperature 1 --top-p 0.9 --max-tokens 16 --seed 7";
  auto s1 = generate(sampled, false), s2 = generate(sampled, false);
  ASSERT_EQ(s1.status, 0) << generate(sampled).output;
  EXPECT_EQ(s1.output, s2.output);

  // A prompt longer than seq_len.
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "many words ";
  auto r = generate(checkpoint + " --prompt '" + long_prompt + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("longer than the model's seq_len = 64"), std::string::npos) << r.output;

  // A tokenizer of other data (another vocabulary) is refused; the data's own, given
  // explicitly, is accepted.
  const fs::path other = dir_ / "other-data";
  auto d = glam::testing::run_glam("data prepare --quiet --vocab-size 400 --input /usr/share/games/fortunes/art --out '" +
                                   other.string() + "'");
  ASSERT_EQ(d.status, 0) << d.output;
  r = generate(checkpoint + " --prompt hello --tokenizer '" + (other / "tokenizer.model").string() + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("do not belong together"), std::string::npos) << r.output;
  r = generate(checkpoint + " --prompt hello --max-tokens 2 --tokenizer '" + (dir_ / "data" / "tokenizer.model").string() +
               "'");
  EXPECT_EQ(r.status, 0) << r.output;
}

TEST_F(CliGenerate, AnEmptyPromptAndAMissingCheckpointAreClearErrors) {
  auto r = generate("--checkpoint '" + dir_.string() + "' --prompt ''");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--prompt is empty"), std::string::npos) << r.output;

  const std::string nowhere = (dir_ / "nowhere").string();
  r = generate("--checkpoint '" + nowhere + "' --prompt hello");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("checkpoint directory '" + nowhere + "' does not exist"), std::string::npos) << r.output;

  fs::create_directories(dir_ / "empty");
  r = generate("--checkpoint '" + (dir_ / "empty").string() + "' --prompt hello");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no valid checkpoint"), std::string::npos) << r.output;
}

}  // namespace
