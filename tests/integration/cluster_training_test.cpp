// Placement invariance across real processes: a coordinator and 1, 2 or 3 worker daemons on
// loopback, jobs submitted with `glam submit --wait`, units placed by the planner or by a
// seeded random draw that splits shards and experts across processes. Every step's loss,
// skip decision and validation loss in STATE/jobs/<id>/metrics.jsonl equal the
// single-process reference train_step bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "cluster_harness.hpp"
#include "reference_run.hpp"
#include "configs/config.hpp"
#include "model/checkpoint.hpp"
#include "model/train_step.hpp"

namespace glam::test {
namespace {

config invariance_config() {
  config c;
  c.name = "invariance";
  c.model.vocab_size = 61;
  c.model.layers = 4;  // two MoE layers
  c.model.d_model = 16;
  c.model.d_ff = 24;
  c.model.heads = 2;
  c.model.d_head = 8;
  c.model.experts = 4;
  c.model.seq_len = 12;
  c.moe.capacity_factor = 1.0;  // drops happen
  c.moe.policy = second_expert_policy::random;
  c.train.batch_per_shard = 2;
  c.train.steps = 6;
  c.train.warmup = 10;
  c.train.seed = 3;
  c.train.eval_every = 3;
  c.train.eval_batches = 2;
  c.data.synthetic = true;
  c.cluster.shards = 3;
  return c;
}

const reference_run& reference() {
  static const reference_run r = run_reference(invariance_config());
  return r;
}

struct invariance_case {
  const char* name;
  int workers;
  std::uint64_t placement_seed;  // 0: the planner
  bool encrypted = false;        // TLS on every connection, as between machines
};

class ClusterTraining : public ::testing::TestWithParam<invariance_case> {};

TEST_P(ClusterTraining, EveryStepEqualsTheReferenceBitwise) {
  const auto& ic = GetParam();
  const std::vector<std::string> tls = ic.encrypted ? std::vector<std::string>{"--encryption", "always"}
                                                     : std::vector<std::string>{};
  cluster c(std::string("train-") + ic.name, 3000, ic.placement_seed, tls);
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  for (int i = 0; i < ic.workers; ++i) ASSERT_GT(c.add_worker("w" + std::to_string(i), {}, tls).wait_port(), 0);
  c.wait_status([&](const nlohmann::json& s) { return s["workers"].size() == std::size_t(ic.workers); });
  write_file(c.dir + "/job.toml", to_toml(invariance_config()), 0644);
  auto [rc, out] = run({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait", "--timeout",
                        "240"},
                       c.dir, 300s, c.env);
  ASSERT_EQ(rc, 0) << out << c.coordinator->err();
  const auto id = out.substr(0, out.find('\n'));

  EXPECT_EQ(expect_metrics_equal(c.dir + "/state/jobs/" + id + "/metrics.jsonl", reference()),
            invariance_config().train.steps);
  expect_final_parameters_equal(c.dir + "/state/checkpoints/invariance", invariance_config(), reference());

  // The units were split across processes as placed (the coordinator logs each worker's).
  const auto log = c.coordinator->err();
  int hosting = 0, hosting_shards = 0;
  for (std::size_t at = log.find("placement: "); at != std::string::npos; at = log.find("placement: ", at + 1)) {
    const auto units = log.substr(at, log.find('\n', at) - at);
    hosting += units.find("[]") == std::string::npos;
    hosting_shards += units.find("shard") != std::string::npos;
  }
  EXPECT_EQ(hosting, ic.workers) << log;
  if (ic.placement_seed != 0) {
    EXPECT_GE(hosting_shards, 2) << "the draw should split the shards: " << log;
  }
  // With several workers, tensors went worker to worker.
  auto s = c.status();
  std::int64_t worker_bytes = 0;
  for (const auto& w : s["workers"]) worker_bytes += w["bytes_sent"].get<std::int64_t>();
  if (ic.workers > 1) {
    EXPECT_GT(worker_bytes, 0) << s.dump();
  }
  // The coordinator relays no token batch: its protocol takes no tensor (one sent to it
  // would be counted as unexpected), and it received less than the workers exchanged.
  EXPECT_EQ(s["coordinator"]["refused"]["unexpected"], 0) << s.dump();
  if (ic.workers > 1) {
    EXPECT_LT(s["coordinator"]["bytes_received"].get<std::int64_t>(), worker_bytes) << s.dump();
  }
  EXPECT_EQ(s["jobs"][0]["state"], "finished");
  // Every connection to the coordinator was authenticated, and encrypted when asked.
  const auto& conns = s["coordinator"]["connections"];
  EXPECT_EQ(conns["authenticated"], conns["accepted"]) << s.dump();
  EXPECT_EQ(conns["encrypted"].get<int>() > 0, ic.encrypted) << s.dump();
}

INSTANTIATE_TEST_SUITE_P(Placements, ClusterTraining,
                         ::testing::Values(invariance_case{"one_worker", 1, 0}, invariance_case{"two_workers", 2, 0},
                                           invariance_case{"three_random", 3, 11},
                                           invariance_case{"three_random_other", 3, 29},
                                           invariance_case{"three_random_encrypted", 3, 11, true}),
                         [](const auto& info) { return std::string(info.param.name); });

// A job stopped mid-run keeps its checkpoints; submitted again on fewer workers it resumes
// from the newest valid one (a torn newest checkpoint is skipped) and ends exactly where an
// uninterrupted run ends. (A lost worker no longer ends a job: tests/fault/.)
TEST(ClusterTraining, StoppedThenResubmittedJobResumesBitwise) {
  config cfg = invariance_config();
  cfg.name = "resume";
  cfg.train.steps = 300;
  cfg.train.eval_every = 0;
  cfg.fault.checkpoint_every = 10;
  cfg.fault.keep_checkpoints = 4;
  const auto want = run_reference(cfg);
  cluster c("resume", 3000, 7);
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  auto& w0 = c.add_worker("w0");
  auto& w1 = c.add_worker("w1");
  auto& w2 = c.add_worker("w2");
  ASSERT_GT(w0.wait_port(), 0);
  ASSERT_GT(w1.wait_port(), 0);
  ASSERT_GT(w2.wait_port(), 0);
  write_file(c.dir + "/job.toml", to_toml(cfg), 0644);
  process waiter({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait"}, c.dir, "waiter",
                 c.env);
  const std::string root = c.dir + "/state/checkpoints/resume";
  // Stop the job once two checkpoints exist, and take a worker away.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!fs::exists(root + "/step-00000020/manifest.capnp") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(fs::exists(root + "/step-00000020/manifest.capnp")) << c.coordinator->err();
  auto [stop_rc, stop_out] = c.client({"stop", "--coordinator", c.endpoint(), "resume-1"});
  ASSERT_EQ(stop_rc, 0) << stop_out;
  EXPECT_EQ(waiter.wait_exit(30s), 1) << waiter.err();
  w2.kill(SIGKILL);
  auto s = c.wait_status(
      [](const nlohmann::json& s) { return s["jobs"].size() == 1 && s["jobs"][0]["state"] == "stopped"; }, 20s);
  ASSERT_EQ(s["jobs"][0]["state"], "stopped") << s.dump() << "\n" << waiter.err();
  ASSERT_LT(s["jobs"][0]["step"].get<std::int64_t>(), cfg.train.steps) << "the job ended before it was stopped";
  s = c.wait_status([](const nlohmann::json& s) { return s["workers"].size() == 2; }, 20s);
  ASSERT_EQ(s["workers"].size(), 2u) << s.dump();

  // Tear the newest checkpoint: a unit file loses its tail.
  auto newest = latest_valid_checkpoint(root, cfg);
  ASSERT_TRUE(newest.has_value());
  const auto torn = checkpoint_dir_for(root, newest->step) + "/" + newest->units.back().file;
  fs::resize_file(torn, fs::file_size(torn) / 2);

  auto [rc, out] = run({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait"}, c.dir, 300s,
                       c.env);
  ASSERT_EQ(rc, 0) << out << c.coordinator->err();
  const auto id = out.substr(0, out.find('\n'));
  EXPECT_NE(c.coordinator->err().find("from the checkpoint of step " + std::to_string(newest->step - 10)),
            std::string::npos)
      << c.coordinator->err();
  const auto lines = expect_metrics_equal(c.dir + "/state/jobs/" + id + "/metrics.jsonl", want);
  EXPECT_EQ(lines, cfg.train.steps - (newest->step - 10));
  expect_final_parameters_equal(root, cfg, want);
}

}  // namespace
}  // namespace glam::test
