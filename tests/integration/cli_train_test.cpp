// `glam train` as a user runs it on the demo corpus: glam-tiny's validation loss falls well
// below the unigram entropy of the data within the demo's budget (on embedded workers, as
// `make demo` trains), the metrics file has a line per step, the embedded actors give the
// reference step's losses bit for bit, and an injected non-finite gradient is skipped and
// counted on both paths.
#include <gtest/gtest.h>

#include "cli_testing.hpp"
#include <sys/wait.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.hpp"

namespace {

namespace fs = std::filesystem;

int run(const std::string& args, std::string* output) {
  auto r = glam::testing::run_glam(args);
  *output += r.output;
  return r.status;
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

class CliTrain : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("glam-train-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    std::string out;
    ASSERT_EQ(run("data prepare --quiet --vocab-size 2048 --exclude .dat --input /usr/share/games/fortunes --out '" +
                      (*dir_ / "data").string() + "'",
                  &out),
              0)
        << out;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static fs::path* dir_;
};
fs::path* CliTrain::dir_ = nullptr;

TEST_F(CliTrain, TinyModelLearnsWellBelowTheUnigramEntropy) {
  const std::string metrics = (*dir_ / "metrics.jsonl").string();
  std::string out;
  ASSERT_EQ(run("train '" + std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml' --data '" +
                    (*dir_ / "data").string() + "' --workers 2 --metrics '" + metrics + "'",
                &out),
            0)
      << out;
  const double entropy = glam::dataset::open((*dir_ / "data").string()).unigram_entropy();
  auto lines = read_metrics(metrics);
  ASSERT_EQ(lines.size(), 300u);
  double last_val = 1e9;
  for (auto& l : lines) {
    for (const char* key : {"step", "loss", "aux_loss", "tokens", "seconds", "skipped"}) ASSERT_TRUE(l.contains(key)) << key;
    if (l.contains("val_loss")) last_val = l["val_loss"].get<double>();
  }
  EXPECT_TRUE(lines.back().contains("val_loss"));
  EXPECT_LT(last_val, entropy - 1.0) << "validation loss " << last_val << " vs unigram entropy " << entropy;
  EXPECT_LT(lines.back()["loss"].get<double>(), lines.front()["loss"].get<double>() - 2.0);
}

TEST_F(CliTrain, EmbeddedWorkersEqualTheReferenceStepBitwise) {
  const std::string config = std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml";
  const std::string data = (*dir_ / "data").string();
  std::string out;
  ASSERT_EQ(run("train '" + config + "' --steps 8 --data '" + data + "' --metrics '" + (*dir_ / "ref.jsonl").string() + "'",
                &out),
            0)
      << out;
  ASSERT_EQ(run("train '" + config + "' --steps 8 --workers 3 --data '" + data + "' --metrics '" +
                    (*dir_ / "actors.jsonl").string() + "'",
                &out),
            0)
      << out;
  auto want = read_metrics((*dir_ / "ref.jsonl").string());
  auto got = read_metrics((*dir_ / "actors.jsonl").string());
  ASSERT_EQ(want.size(), 8u);
  ASSERT_EQ(got.size(), 8u);
  for (std::size_t k = 0; k < want.size(); ++k)
    for (const char* key : {"step", "loss", "cross_entropy", "aux_loss", "tokens", "skipped", "dropped", "tokens_per_expert"})
      EXPECT_EQ(got[k][key], want[k][key]) << key << " at step " << k;
  ASSERT_TRUE(want.back().contains("val_loss"));
  EXPECT_EQ(got.back()["val_loss"], want.back()["val_loss"]);
}

class CliTrainNonFinite : public CliTrain, public ::testing::WithParamInterface<const char*> {};

TEST_P(CliTrainNonFinite, InjectedNonFiniteGradientIsSkippedAndCounted) {
  const std::string metrics = (*dir_ / "nan.jsonl").string();
  std::string out;
  ASSERT_EQ(run("train '" + std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml' --steps 4 --inject-nonfinite-step 2 --data '" +
                    (*dir_ / "data").string() + "' --metrics '" + metrics + "' " + GetParam(),
                &out),
            0)
      << out;
  auto lines = read_metrics(metrics);
  ASSERT_EQ(lines.size(), 4u);
  for (std::size_t k = 0; k < lines.size(); ++k) EXPECT_EQ(lines[k]["skipped"].get<bool>(), k == 2) << "step " << k;
  EXPECT_NE(out.find("step skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("(1 skipped)"), std::string::npos) << out;
}

INSTANTIATE_TEST_SUITE_P(Paths, CliTrainNonFinite, ::testing::Values("", "--workers 2"),
                         [](const auto& info) { return std::string(info.index == 0 ? "reference" : "embedded"); });

}  // namespace
