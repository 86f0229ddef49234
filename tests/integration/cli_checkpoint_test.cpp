// `glam train --checkpoint-dir/--resume` as a user runs it: a run stopped and resumed from
// its checkpoint prints and records the same losses, bit for bit, as a run that never
// stopped; a corrupt newest checkpoint is passed over for the one before; resuming without
// a checkpoint, or from another model's, is a clear error.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "cli_testing.hpp"

namespace {

namespace fs = std::filesystem;

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) lines.push_back(nlohmann::json::parse(line));
  return lines;
}

// glam-tiny with its [fault] checkpoint_every replaced.
std::string tiny_config(const fs::path& dir, int checkpoint_every, const std::string& d_ff_line = "") {
  std::ifstream in(std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  text = std::regex_replace(text, std::regex("checkpoint_every = 0"),
                            "checkpoint_every = " + std::to_string(checkpoint_every));
  if (!d_ff_line.empty()) text = std::regex_replace(text, std::regex("d_ff = 512"), d_ff_line);
  const fs::path path =
      dir / ("glam-tiny-ckpt" + std::to_string(checkpoint_every) + (d_ff_line.empty() ? "" : "-other") + ".toml");
  std::ofstream(path) << text;
  return path.string();
}

// The "step N  loss X" progress lines, as printed (%.9g).
std::vector<std::string> printed_losses(const std::string& output) {
  std::vector<std::string> out;
  const std::regex line(R"(step +(\d+)  loss (\S+))");
  for (auto it = std::sregex_iterator(output.begin(), output.end(), line); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1].str() + " " + (*it)[2].str());
  return out;
}

class CliCheckpoint : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() / ("glam-ckpt-cli-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    auto r = glam::testing::run_glam("data prepare --quiet --vocab-size 2048 --exclude .dat --input /usr/share/games/fortunes --out '" +
                                     (*dir_ / "data").string() + "'");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
  }
  static glam::testing::run_result train(const std::string& config, const std::string& args) {
    return glam::testing::run_glam("train '" + config + "' --threads 2 --data '" + (*dir_ / "data").string() + "' " +
                                   args);
  }
  static fs::path* dir_;
};
fs::path* CliCheckpoint::dir_ = nullptr;

TEST_F(CliCheckpoint, ResumedRunEqualsTheStraightRunBitwise) {
  const std::string config = tiny_config(*dir_, 2);
  const std::string straight = (*dir_ / "straight.jsonl").string(), split = (*dir_ / "split.jsonl").string();
  const std::string ckpt = (*dir_ / "ckpt").string();

  auto a = train(config, "--steps 7 --metrics '" + straight + "'");
  ASSERT_EQ(a.status, 0) << a.output;

  // Checkpoints at steps 2, 4 and 5 (the end).
  auto b = train(config, "--steps 5 --checkpoint-dir '" + ckpt + "' --metrics '" + split + "'");
  ASSERT_EQ(b.status, 0) << b.output;
  for (const char* step : {"step 2 ", "step 4 ", "step 5 "})
    EXPECT_NE(b.output.find(std::string("checkpoint written: ") + step), std::string::npos) << step << "\n" << b.output;

  // Corrupt the newest: the resume must fall back to step 4 and replay step 4 onwards.
  const fs::path newest = fs::path(ckpt) / "step-00000005" / "dense.e0.bin";
  ASSERT_TRUE(fs::exists(newest));
  {
    std::fstream f(newest, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(-3, std::ios::end);
    f.put('\x7f');
  }
  auto c = train(config, "--steps 7 --checkpoint-dir '" + ckpt + "' --resume --metrics '" + split + "'");
  ASSERT_EQ(c.status, 0) << c.output;
  EXPECT_NE(c.output.find("checkpoint loaded: step 4 "), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("step-00000005 skipped"), std::string::npos) << c.output;
  EXPECT_NE(c.output.find("checkpoint written: step 6 "), std::string::npos) << c.output;

  const auto want = read_metrics(straight), got = read_metrics(split);
  ASSERT_EQ(want.size(), 7u);
  ASSERT_EQ(got.size(), 7u) << "the resumed run continues the metrics file without repeating a step";
  for (std::size_t k = 0; k < want.size(); ++k) {
    EXPECT_EQ(got[k]["step"].get<int>(), int(k));
    EXPECT_EQ(got[k]["loss"].get<double>(), want[k]["loss"].get<double>()) << "step " << k;
    EXPECT_EQ(got[k]["aux_loss"].get<double>(), want[k]["aux_loss"].get<double>()) << "step " << k;
  }
  // The progress lines of the resumed part, as printed, equal the straight run's.
  const auto printed_straight = printed_losses(a.output), printed_resumed = printed_losses(c.output);
  ASSERT_FALSE(printed_resumed.empty()) << c.output;
  for (const auto& l : printed_resumed)
    EXPECT_NE(std::find(printed_straight.begin(), printed_straight.end(), l), printed_straight.end())
        << "resumed printed '" << l << "'\n" << a.output;
  // The corrupt step 5 went with the resume; keep_checkpoints = 3 in glam-tiny keeps 4, 6, 7.
  std::vector<std::string> dirs;
  for (const auto& d : fs::directory_iterator(ckpt)) dirs.push_back(d.path().filename().string());
  std::sort(dirs.begin(), dirs.end());
  EXPECT_EQ(dirs, (std::vector<std::string>{"step-00000004", "step-00000006", "step-00000007"}));
}

TEST_F(CliCheckpoint, ResumeWithoutACheckpointNamesTheDirectory) {
  const std::string empty = (*dir_ / "empty").string();
  auto r = train(std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml",
                 "--steps 2 --checkpoint-dir '" + empty + "' --resume");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("no valid checkpoint in '" + empty + "'"), std::string::npos) << r.output;
}

TEST_F(CliCheckpoint, ResumeFromAnotherModelIsRefused) {
  const std::string ckpt = (*dir_ / "other").string();
  auto w = train(tiny_config(*dir_, 0, "d_ff = 256"), "--steps 0 --checkpoint-dir '" + ckpt + "'");
  ASSERT_EQ(w.status, 0) << w.output;
  auto r = train(tiny_config(*dir_, 0), "--steps 2 --checkpoint-dir '" + ckpt + "' --resume");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("belongs to another model"), std::string::npos) << r.output;
}

}  // namespace
