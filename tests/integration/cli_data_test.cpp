// `glam data prepare` and `glam data info` as a user runs them: the real binary, its output
// and its exit status, on the fortunes text.
#include <gtest/gtest.h>

#include "cli_testing.hpp"
#include <stdlib.h>
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "data/dataset.hpp"

namespace {

namespace fs = std::filesystem;
const std::string k_fortunes = "/usr/share/games/fortunes";

using glam::testing::run_result;
run_result run(const std::string& args) { return glam::testing::run_glam(args); }

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class CliData : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(k_fortunes + "/fortunes"))
      GTEST_FAIL() << "the fortunes package is not installed (apt-get install fortunes)";
    std::string pattern = (fs::temp_directory_path() / "glam-cli-data-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) fs::remove_all(dir_, ec);
  }
  std::string inputs() const {
    return "--input '" + k_fortunes + "/fortunes' '" + k_fortunes + "/goedel' '" + k_fortunes +
           "/magic' '" + k_fortunes + "/paradoxum'";
  }
  std::string dir_;
};

TEST_F(CliData, PrepareThenInfoThenTheSameBytesAgain) {
  const std::string out = dir_ + "/data";
  run_result r = run("data prepare " + inputs() + " --out '" + out + "' --vocab-size 600");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("prepared " + out), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("training a unigram tokenizer"), std::string::npos) << r.output;
  glam::dataset d = glam::dataset::open(out);
  EXPECT_LE(d.vocab_size(), 600);
  EXPECT_GT(d.train_tokens(), 1000);

  run_result info = run("data info '" + out + "'");
  ASSERT_EQ(info.status, 0) << info.output;
  EXPECT_NE(info.output.find("verified"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find(std::to_string(d.train_tokens()) + " tokens"), std::string::npos)
      << info.output;

  const std::string manifest = slurp(out + "/manifest.json"),
                    train = slurp(out + "/train-00000.bin");
  r = run("data prepare " + inputs() + " --out '" + out + "' --vocab-size 600 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(r.output.find("training a unigram"), std::string::npos) << "--quiet prints progress";
  EXPECT_EQ(slurp(out + "/manifest.json"), manifest);
  EXPECT_EQ(slurp(out + "/train-00000.bin"), train);
}

TEST_F(CliData, DamageAndBadInputFailWithAMessage) {
  const std::string out = dir_ + "/data";
  ASSERT_EQ(
      run("data prepare " + inputs() + " --out '" + out + "' --vocab-size 600 --quiet").status, 0);
  std::string bytes = slurp(out + "/validation-00000.bin");
  bytes[10] ^= 0x55;
  std::ofstream(out + "/validation-00000.bin", std::ios::binary) << bytes;
  run_result info = run("data info '" + out + "'");
  EXPECT_EQ(info.status, 1);
  EXPECT_NE(info.output.find("validation-00000.bin"), std::string::npos) << info.output;
  EXPECT_NE(info.output.find("checksum"), std::string::npos) << info.output;

  run_result binary =
      run("data prepare --input '" + k_fortunes + "/fortunes.dat' --out '" + dir_ + "/x'");
  EXPECT_EQ(binary.status, 1);
  EXPECT_NE(binary.output.find("fortunes.dat looks binary"), std::string::npos) << binary.output;
  EXPECT_FALSE(fs::exists(dir_ + "/x"));

  std::ofstream(dir_ + "/keep.txt") << "unrelated";
  run_result refused = run("data prepare " + inputs() + " --out '" + dir_ + "'");
  EXPECT_EQ(refused.status, 1);
  EXPECT_NE(refused.output.find("refusing to overwrite"), std::string::npos) << refused.output;

  run_result missing = run("data prepare --out '" + dir_ + "/y'");
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("--input"), std::string::npos) << missing.output;
}

TEST_F(CliData, DirectoryInputWithExclude) {
  const std::string out = dir_ + "/all";
  run_result r = run("data prepare --input '" + k_fortunes + "' --exclude .dat --out '" + out +
                     "' --vocab-size 2048 --quiet");
  ASSERT_EQ(r.status, 0) << r.output;
  glam::dataset d = glam::dataset::open(out);
  EXPECT_EQ(d.vocab_size(), 2048);
  EXPECT_GT(d.longest_trainable_sequence(), 1024);
}

}  // namespace
