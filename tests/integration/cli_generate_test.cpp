// `glam generate` as a user runs it, on a glam-tiny checkpoint trained for a few steps here:
// greedy decoding produces text and is the same every time, and so is seeded sampling; the
// checkpoint is found from its root or one step directory, and the tokenizer from the data
// its job names; a prompt longer than seq_len, an empty prompt, an unknown checkpoint and
// a tokenizer of other data are each a clear error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <regex>
#include <string>

#include "cli_testing.hpp"

namespace {

namespace fs = std::filesystem;

class CliGenerate : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("glam-generate-cli-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    auto d = glam::testing::run_glam("data prepare --quiet --vocab-size 2048 --exclude .dat --input /usr/share/games/fortunes --out '" +
                                     (*dir_ / "data").string() + "'");
    ASSERT_EQ(d.status, 0) << d.output;
    auto t = glam::testing::run_glam("train '" + std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml' --steps 12 --threads 2 --data '" +
                                     (*dir_ / "data").string() + "' --checkpoint-dir '" + (*dir_ / "ckpt").string() + "'");
    ASSERT_EQ(t.status, 0) << t.output;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  // stdout only (the generated text), or stdout and stderr together.
  static glam::testing::run_result generate(const std::string& args, bool with_stderr = true) {
    return glam::testing::run_glam("generate --threads 2 " + args, with_stderr);
  }
  static std::string checkpoint() { return "--checkpoint '" + (*dir_ / "ckpt").string() + "'"; }
  static fs::path* dir_;
};
fs::path* CliGenerate::dir_ = nullptr;

TEST_F(CliGenerate, GreedyDecodingProducesTheSameTextEveryTime) {
  const std::string args = checkpoint() + " --prompt 'The meaning of life is' --temperature 0 --max-tokens 12";
  auto a = generate(args, false);
  ASSERT_EQ(a.status, 0) << generate(args).output;
  EXPECT_NE(a.output.find_first_not_of(" \n"), std::string::npos) << "no text: '" << a.output << "'";
  auto b = generate(args, false);
  EXPECT_EQ(b.output, a.output);
  // The summary on stderr: how many tokens and why it stopped.
  auto c = generate(args);
  EXPECT_TRUE(std::regex_search(c.output, std::regex(R"(glam generate: \d+ tokens \(finish: (stop|length)\))")))
      << c.output;
  // One step directory serves as well as the root.
  auto d = generate("--checkpoint '" + (*dir_ / "ckpt" / "step-00000012").string() +
                        "' --prompt 'The meaning of life is' --temperature 0 --max-tokens 12",
                    false);
  EXPECT_EQ(d.output, a.output);
}

TEST_F(CliGenerate, SeededSamplingIsReproducible) {
  const std::string args = checkpoint() + " --prompt 'Q: Why' --temperature 1 --top-p 0.9 --max-tokens 16 --seed 7";
  auto a = generate(args, false), b = generate(args, false);
  ASSERT_EQ(a.status, 0) << generate(args).output;
  EXPECT_EQ(a.output, b.output);
}

TEST_F(CliGenerate, BadRequestsAreClearErrors) {
  std::string long_prompt;
  for (int i = 0; i < 60; ++i) long_prompt += "many words ";
  auto r = generate(checkpoint() + " --prompt '" + long_prompt + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("longer than the model's seq_len = 64"), std::string::npos) << r.output;

  r = generate(checkpoint() + " --prompt ''");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("--prompt is empty"), std::string::npos) << r.output;

  const std::string nowhere = (*dir_ / "nowhere").string();
  r = generate("--checkpoint '" + nowhere + "' --prompt hello");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("checkpoint directory '" + nowhere + "' does not exist"), std::string::npos) << r.output;

  fs::create_directories(*dir_ / "empty");
  r = generate("--checkpoint '" + (*dir_ / "empty").string() + "' --prompt hello");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("no valid checkpoint"), std::string::npos) << r.output;
}

TEST_F(CliGenerate, ATokenizerOfOtherDataIsRefused) {
  const fs::path other = *dir_ / "other-data";
  auto d = glam::testing::run_glam("data prepare --quiet --vocab-size 400 --input /usr/share/games/fortunes/art --out '" +
                                   other.string() + "'");
  ASSERT_EQ(d.status, 0) << d.output;
  auto r = generate(checkpoint() + " --prompt hello --tokenizer '" + (other / "tokenizer.model").string() + "'");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("do not belong together"), std::string::npos) << r.output;
  // The data's own tokenizer, given explicitly, is accepted.
  r = generate(checkpoint() + " --prompt hello --max-tokens 2 --tokenizer '" + (*dir_ / "data" / "tokenizer.model").string() +
               "'");
  EXPECT_EQ(r.status, 0) << r.output;
}

}  // namespace
