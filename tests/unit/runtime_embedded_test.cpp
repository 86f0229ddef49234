// A coordinator and N workers in one process (the embedded default) train a job through
// the real actors and step protocol, and every step's loss, the validation loss and the
// skip decisions equal the single-process reference bit for bit.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>

#include "coordinator/embedded_cluster.hpp"
#include "model/train_step.hpp"
#include "tests/unit/model_testing.hpp"

namespace glam {
namespace {

config embedded_config() {
  config c = testing::tiny_model_config();
  c.name = "embedded";
  c.model.layers = 4;
  c.cluster.shards = 3;
  c.model.experts = 4;
  c.moe.capacity_factor = 1.0;
  c.moe.policy = second_expert_policy::random;
  c.train.steps = 5;
  c.train.eval_every = 2;
  c.train.eval_batches = 2;
  c.data.synthetic = true;
  return c;
}

struct embedded_case {
  const char* name;
  int workers;
  std::int64_t poison_step;
};

class EmbeddedCluster : public ::testing::TestWithParam<embedded_case> {};

TEST_P(EmbeddedCluster, TrainsLikeTheReference) {
  const auto& ec = GetParam();
  const config c = embedded_config();
  const auto state = std::filesystem::temp_directory_path() /
                     ("glam-embedded-" + std::string(ec.name) + "-" + std::to_string(::getpid()));
  std::filesystem::remove_all(state);

  std::mutex m;
  std::vector<nlohmann::json> lines;
  embedded_options o;
  o.workers = ec.workers;
  o.state_dir = state.string();
  o.inject_nonfinite_step = ec.poison_step;
  o.on_step = [&](const job_record&, const nlohmann::json& line) {
    std::lock_guard<std::mutex> lock(m);
    lines.push_back(line);
  };
  auto job = run_embedded_job(to_toml(c), "embedded-test", o);
  EXPECT_EQ(job.state, job_state::finished) << job.error;
  EXPECT_EQ(job.step, c.train.steps);

  synthetic_source data(c);
  reference_trainer reference(c, data);
  if (ec.poison_step >= 0) reference.inject_nonfinite_gradient_at(ec.poison_step);
  ASSERT_EQ(lines.size(), static_cast<std::size_t>(c.train.steps));
  for (std::int64_t k = 0; k < c.train.steps; ++k) {
    auto want = reference.train_step(k);
    const auto& got = lines[static_cast<std::size_t>(k)];
    EXPECT_EQ(got["step"].get<std::int64_t>(), k);
    const float loss = static_cast<float>(got["loss"].get<double>());
    EXPECT_EQ(std::memcmp(&loss, &want.loss.loss, sizeof loss), 0) << "step " << k << ": " << loss << " vs "
                                                                   << want.loss.loss;
    EXPECT_EQ(got["skipped"].get<bool>(), want.skipped) << "step " << k;
    EXPECT_EQ(got["tokens_per_expert"].get<std::vector<index>>(), want.tokens_per_expert);
    if ((k + 1) % c.train.eval_every == 0 || k + 1 == c.train.steps) {
      ASSERT_TRUE(got.contains("val_loss")) << "step " << k;
      EXPECT_EQ(got["val_loss"].get<double>(), reference.evaluate(c.train.eval_batches)) << "step " << k;
    } else {
      EXPECT_FALSE(got.contains("val_loss"));
    }
  }
  // The coordinator wrote the same lines to the job's metrics file.
  std::ifstream metrics(state / "jobs" / job.id / "metrics.jsonl");
  std::string line;
  std::size_t n = 0;
  while (std::getline(metrics, line)) EXPECT_EQ(nlohmann::json::parse(line), lines.at(n++));
  EXPECT_EQ(n, lines.size());
  std::filesystem::remove_all(state);
}

INSTANTIATE_TEST_SUITE_P(Workers, EmbeddedCluster,
                         ::testing::Values(embedded_case{"one", 1, -1}, embedded_case{"two", 2, -1},
                                           embedded_case{"three_nan_at_1", 3, 1}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(EmbeddedCluster, AJobThatCannotRunIsRefusedAtSubmitWithTheReason) {
  // What can be known at submit is checked then: an accepted job never fails for it later.
  config c = embedded_config();
  c.data.synthetic = false;
  c.data.dir = "/nonexistent/glam-data";
  const auto state = std::filesystem::temp_directory_path() / ("glam-embedded-bad-" + std::to_string(::getpid()));
  embedded_options o;
  o.workers = 2;
  o.state_dir = state.string();
  try {
    run_embedded_job(to_toml(c), "embedded-test", o);
    ADD_FAILURE() << "a job on missing data was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("/nonexistent/glam-data"), std::string::npos) << e.what();
  }
  std::filesystem::remove_all(state);
}

}  // namespace
}  // namespace glam
