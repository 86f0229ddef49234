// `glam plan` as a user runs it: the real binary, its output and its exit status.
#include <gtest/gtest.h>

#include "cli_testing.hpp"
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "configs/config.hpp"
#include "configs/plan.hpp"

namespace {

const std::string k_source = GLAM_SOURCE_DIR;

using glam::testing::run_result;
run_result run(const std::string& args, bool with_stderr = false) { return glam::testing::run_glam(args, with_stderr); }

std::string config_path(const std::string& stem) {
  return "'" + k_source + "/configs/" + stem + ".toml'";
}

TEST(CliPlan, JsonMatchesTheLibraryForEveryPaperConfig) {
  for (const char* stem : {"glam-0.1b-dense", "glam-0.1b-64e", "glam-1.7b-dense", "glam-1.7b-64e",
                           "glam-8b-dense", "glam-8b-64e", "glam-137b-dense", "glam-64b-64e"}) {
    SCOPED_TRACE(stem);
    const run_result r = run("plan " + config_path(stem) + " --json --workers 4");
    ASSERT_EQ(r.status, 0) << r.output;
    const nlohmann::json j = nlohmann::json::parse(r.output);
    const glam::plan_figures p =
        glam::make_plan(glam::load_config(k_source + "/configs/" + stem + ".toml"), 4);
    EXPECT_EQ(j.at("params_total").get<std::int64_t>(), p.params_total);
    EXPECT_EQ(j.at("params_activated").get<std::int64_t>(), p.params_activated);
    EXPECT_EQ(j.at("params_embedding").get<std::int64_t>(), p.params_embedding);
    EXPECT_EQ(j.at("flops_per_token_train").get<std::int64_t>(), p.flops_per_token_train);
    EXPECT_EQ(j.at("flops_per_token_infer").get<std::int64_t>(), p.flops_per_token_infer);
    EXPECT_EQ(j.at("memory").at("per_worker").size(), 4u);
  }
}

TEST(CliPlan, TextReportForTheTinyConfig) {
  const run_result r = run("plan " + config_path("glam-tiny") + " --workers 2");
  ASSERT_EQ(r.status, 0) << r.output;
  for (const char* part : {"glam-tiny", "activated per token", "training", "inference",
                           "attention shard", "expert", "worker 0", "worker 1"})
    EXPECT_NE(r.output.find(part), std::string::npos) << part << "\n" << r.output;
}

TEST(CliPlan, BadConfigFailsWithTheKeyAndValue) {
  const auto dir = std::filesystem::temp_directory_path() /
                   ("glam-cli-plan-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto bad = dir / "bad.toml";
  {
    std::ifstream in(k_source + "/configs/glam-tiny.toml");
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = text.find("warmup = 50");
    ASSERT_NE(at, std::string::npos);
    text.replace(at, 11, "warmup = 0");
    std::ofstream(bad) << text;
  }
  const run_result r = run("plan '" + bad.string() + "'", true);
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.output.find("train.warmup = 0"), std::string::npos) << r.output;
  std::filesystem::remove_all(dir);
}

TEST(CliPlan, RefusesMissingFilesAndZeroWorkers) {
  const run_result missing = run("plan /no/such/job.toml", true);
  EXPECT_NE(missing.status, 0);
  EXPECT_NE(missing.output.find("/no/such/job.toml"), std::string::npos) << missing.output;
  const run_result zero = run("plan " + config_path("glam-tiny") + " --workers 0", true);
  EXPECT_NE(zero.status, 0);
  EXPECT_NE(zero.output.find("--workers"), std::string::npos) << zero.output;
}

}  // namespace
