// `glam chaos` and `glam bench recovery` as a user runs them: on a tiny synthetic job with
// three workers and a fixed seed, chaos injects faults, finishes, and reports the final
// parameters bitwise equal to the undisturbed run's and no committed step lost (exit 0);
// bad options get errors naming them; bench recovery runs its quick mode and prints every
// figure's line (a smoke test: no timing is asserted).
#include <gtest/gtest.h>

#include <regex>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "tests/integration/cluster_harness.hpp"
#include "tests/survivor_job.hpp"

namespace glam::test {
namespace {

config chaos_job() { return glam::testing::survivor_job("chaos-tiny"); }

struct CliChaos : ::testing::Test {
  std::string dir = fresh_dir("chaos-cli");
  std::string job = dir + "/chaos-tiny.toml";
  CliChaos() { write_file(job, to_toml(chaos_job()), 0644); }
  ~CliChaos() override { fs::remove_all(dir); }
  std::pair<int, std::string> glam(std::vector<std::string> args, std::chrono::seconds timeout = 30s) {
    args.insert(args.begin(), glam_bin);
    return run(args, dir, timeout, {"HOME=" + dir});
  }
};

TEST_F(CliChaos, ThreeWorkersUnderFaultsEndBitwiseEqualToTheUndisturbedRun) {
  // 27 rounds over 0.25 minutes: some 15 s disturbed, 15 s undisturbed.
  auto [rc, out] = glam({"chaos", job, "--workers", "3", "--minutes", "0.25", "--seed", "7", "--kill-every", "2",
                         "--heartbeat-timeout-ms", "1500"},
                        150s);
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("final parameters bitwise equal: yes"), std::string::npos) << out;
  EXPECT_TRUE(std::regex_search(out, std::regex("committed steps lost: +0\n"))) << out;
  std::smatch total;
  ASSERT_TRUE(std::regex_search(out, total, std::regex("  total +([0-9]+)\n"))) << out;
  EXPECT_GE(std::stoi(total[1]), 1) << "no fault was injected:\n" << out;
  EXPECT_NE(out.find("goodput"), std::string::npos) << out;
}

struct bad_chaos_option {
  const char* name;
  std::vector<std::string> args;  // after "chaos"; JOB stands for the job file
  const char* says;               // the error names this
};

const bad_chaos_option bad_chaos_options[] = {
    {"no_workers", {"JOB", "--workers", "0"}, "--workers 0"},
    {"unknown_config", {"/nonexistent/job.toml"}, "/nonexistent/job.toml"},
    {"negative_minutes", {"JOB", "--minutes=-1"}, "--minutes"},
    {"zero_minutes", {"JOB", "--minutes", "0"}, "--minutes"},
    {"negative_kill_every", {"JOB", "--kill-every=-3"}, "--kill-every"},
    {"missing_data", {"NODATA"}, "data.dir"},
};

TEST_F(CliChaos, BadOptionsGetClearErrors) {
  auto nodata = chaos_job();
  nodata.data.synthetic = false;
  nodata.data.dir = dir + "/no-such-data";
  write_file(dir + "/nodata.toml", to_toml(nodata), 0644);
  for (const auto& bad : bad_chaos_options) {
    std::vector<std::string> args{"chaos"};
    for (const auto& a : bad.args) args.push_back(a == "JOB" ? job : a == "NODATA" ? dir + "/nodata.toml" : a);
    auto [rc, out] = glam(args);
    EXPECT_NE(rc, 0) << bad.name << ": " << out;
    EXPECT_NE(out.find(bad.says), std::string::npos) << bad.name << ": " << out;
    EXPECT_EQ(out.find("glam chaos chaos-tiny"), std::string::npos) << bad.name << ": it started anyway: " << out;
  }
}

TEST_F(CliChaos, BenchRecoveryQuickModePrintsEveryFigure) {
  auto [rc, out] = glam({"bench", "recovery", job, "--quick", "--kills", "2", "--hangs", "1", "--goodput-steps", "40",
                         "--kill-period", "2.5", "--min-round-ms", "100", "--heartbeat-timeout-ms", "1000"},
                        150s);
  ASSERT_EQ(rc, 0) << out;
  for (const char* line : {"snapshot overhead: step time ratio", "snapshot overhead in the workers' CPU time",
                           "kill detection (SIGKILL -> recovery started)",
                           "hang detection (SIGSTOP -> recovery started)", "recovery (detection -> first committed step)",
                           "recovery excluding the compute of the step it commits", "goodput", "recovery by resubmission", "load "})
    EXPECT_NE(out.find(line), std::string::npos) << line << "\n" << out;
}

}  // namespace
}  // namespace glam::test
