// Placement invariance across real processes: a coordinator and 1, 2 or 3 worker daemons on
// loopback, jobs submitted with `glam submit --wait`, units placed by the planner or by a
// seeded random draw that splits shards and experts across processes. Every step's loss,
// skip decision and validation loss in STATE/jobs/<id>/metrics.jsonl equal the
// single-process reference train_step bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "cluster_harness.hpp"
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

struct reference_run {
  std::vector<float> loss;
  std::vector<bool> skipped;
  std::map<std::int64_t, double> val_loss;
  param_set dense;                 // final parameters
  std::vector<param_set> experts;
};

reference_run run_reference(const config& c) {
  synthetic_source data(c);
  reference_trainer t(c, data);
  reference_run out;
  for (std::int64_t k = 0; k < c.train.steps; ++k) {
    auto m = t.train_step(k);
    out.loss.push_back(m.loss.loss);
    out.skipped.push_back(m.skipped);
    if (c.train.eval_every > 0 && (k + 1) % c.train.eval_every == 0)
      out.val_loss[k] = t.evaluate(c.train.eval_batches);
  }
  out.dense = t.shards().front().params();
  for (const auto& e : t.experts()) out.experts.push_back(e.params());
  return out;
}

const reference_run& reference() {
  static const reference_run r = run_reference(invariance_config());
  return r;
}

// Every metrics line of a job against the reference, from its first line's step on;
// returns the number of lines.
std::int64_t expect_metrics_equal(const std::string& path, const reference_run& want) {
  std::ifstream metrics(path);
  std::string line;
  std::int64_t n = 0, k = -1;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    if (k < 0) k = j["step"].get<std::int64_t>();
    EXPECT_EQ(j["step"].get<std::int64_t>(), k);
    const float loss = static_cast<float>(j["loss"].get<double>());
    EXPECT_EQ(std::memcmp(&loss, &want.loss.at(std::size_t(k)), sizeof loss), 0)
        << "step " << k << ": " << loss << " vs " << want.loss.at(std::size_t(k));
    EXPECT_EQ(j["skipped"].get<bool>(), bool(want.skipped.at(std::size_t(k))));
    if (want.val_loss.count(k)) {
      EXPECT_EQ(j["val_loss"].get<double>(), want.val_loss.at(k)) << "step " << k;
    }
    ++k;
    ++n;
  }
  return n;
}

// The final checkpoint's unit files hold the reference's final parameters, bit for bit.
void expect_final_parameters_equal(const std::string& root, const config& c, const reference_run& want) {
  auto m = latest_valid_checkpoint(root, model_config_hash(c));
  ASSERT_TRUE(m.has_value()) << "no checkpoint in " << root;
  EXPECT_EQ(m->step, c.train.steps);
  param_set dense = init_dense_params(c.model, c.train.seed);
  optimizer_state opt;
  opt.init(dense);
  read_unit_file(root, m->step, *m->find(dense_unit_name()), dense, opt);
  EXPECT_TRUE(bitwise_equal(dense, want.dense)) << "dense parameters";
  for (index e = 0; e < c.model.experts; ++e) {
    param_set p = init_expert_params(c.model, e, c.train.seed);
    optimizer_state o;
    o.init(p);
    read_unit_file(root, m->step, *m->find(expert_unit_name(e)), p, o);
    EXPECT_TRUE(bitwise_equal(p, want.experts[std::size_t(e)])) << "expert " << e;
  }
}

struct invariance_case {
  const char* name;
  int workers;
  std::uint64_t placement_seed;  // 0: the planner
};

class ClusterTraining : public ::testing::TestWithParam<invariance_case> {};

TEST_P(ClusterTraining, EveryStepEqualsTheReferenceBitwise) {
  const auto& ic = GetParam();
  cluster c(std::string("train-") + ic.name, 3000, ic.placement_seed);
  ASSERT_GT(c.port, 0) << c.coordinator->err();
  for (int i = 0; i < ic.workers; ++i) ASSERT_GT(c.add_worker("w" + std::to_string(i)).wait_port(), 0);
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
  EXPECT_EQ(s["coordinator"]["tensor_bytes_received"], 0) << "the coordinator relays no token batch";
  EXPECT_EQ(s["jobs"][0]["state"], "finished");
}

INSTANTIATE_TEST_SUITE_P(Placements, ClusterTraining,
                         ::testing::Values(invariance_case{"one_worker", 1, 0}, invariance_case{"two_workers", 2, 0},
                                           invariance_case{"three_random", 3, 11},
                                           invariance_case{"three_random_other", 3, 29}),
                         [](const auto& info) { return std::string(info.param.name); });

// A worker killed mid-run fails the job with its name; the job keeps its checkpoints, and
// submitted again on fewer workers it resumes from the newest valid one (a torn newest
// checkpoint is skipped) and ends exactly where an uninterrupted run ends.
TEST(ClusterTraining, KilledWorkerThenResubmittedJobResumesBitwise) {
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
  // Kill a worker once two checkpoints exist, while the job runs.
  auto deadline = std::chrono::steady_clock::now() + 120s;
  while (!fs::exists(root + "/step-00000020/manifest.capnp") && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(5ms);
  ASSERT_TRUE(fs::exists(root + "/step-00000020/manifest.capnp")) << c.coordinator->err();
  w2.kill(SIGKILL);
  EXPECT_EQ(waiter.wait_exit(30s), 1) << waiter.err();
  EXPECT_NE(waiter.err().find("worker w2"), std::string::npos) << waiter.err();
  auto s = c.wait_status(
      [](const nlohmann::json& s) { return s["jobs"].size() == 1 && s["jobs"][0]["state"] == "failed"; }, 20s);
  ASSERT_EQ(s["jobs"][0]["state"], "failed") << s.dump() << "\n" << waiter.err();
  const auto failed_at = s["jobs"][0]["step"].get<std::int64_t>();
  ASSERT_LT(failed_at, cfg.train.steps) << "the job ended before the kill";

  // Tear the newest checkpoint: a unit file loses its tail.
  auto newest = latest_valid_checkpoint(root, model_config_hash(cfg));
  ASSERT_TRUE(newest.has_value());
  const auto torn = checkpoint_dir_for(root, newest->step) + "/" + newest->units.back().file;
  fs::resize_file(torn, fs::file_size(torn) / 2);

  auto [rc, out] = run({glam_bin, "submit", "--coordinator", c.endpoint(), c.dir + "/job.toml", "--wait"}, c.dir, 300s,
                       c.env);
  ASSERT_EQ(rc, 0) << out << c.coordinator->err();
  const auto id = out.substr(0, out.find('\n'));
  EXPECT_NE(c.coordinator->err().find("resuming from the checkpoint of step " + std::to_string(newest->step - 10)),
            std::string::npos)
      << c.coordinator->err();
  const auto lines = expect_metrics_equal(c.dir + "/state/jobs/" + id + "/metrics.jsonl", want);
  EXPECT_EQ(lines, cfg.train.steps - (newest->step - 10));
  expect_final_parameters_equal(root, cfg, want);
}

}  // namespace
}  // namespace glam::test
