// Placement invariance across real processes: a coordinator and 1, 2 or 3 worker daemons on
// loopback, jobs submitted with `glam submit --wait`, units placed by the planner or by a
// seeded random draw that splits shards and experts across processes. Every step's loss,
// skip decision and validation loss in STATE/jobs/<id>/metrics.jsonl equal the
// single-process reference train_step bit for bit.
#include <gtest/gtest.h>

#include <cstring>

#include "cluster_harness.hpp"
#include "configs/config.hpp"
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
};

const reference_run& reference() {
  static const reference_run r = [] {
    const config c = invariance_config();
    synthetic_source data(c);
    reference_trainer t(c, data);
    reference_run out;
    for (std::int64_t k = 0; k < c.train.steps; ++k) {
      auto m = t.train_step(k);
      out.loss.push_back(m.loss.loss);
      out.skipped.push_back(m.skipped);
      if ((k + 1) % c.train.eval_every == 0) out.val_loss[k] = t.evaluate(c.train.eval_batches);
    }
    return out;
  }();
  return r;
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

  std::ifstream metrics(c.dir + "/state/jobs/" + id + "/metrics.jsonl");
  std::string line;
  std::int64_t k = 0;
  const auto& want = reference();
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    ASSERT_EQ(j["step"].get<std::int64_t>(), k);
    const float loss = static_cast<float>(j["loss"].get<double>());
    EXPECT_EQ(std::memcmp(&loss, &want.loss[std::size_t(k)], sizeof loss), 0)
        << "step " << k << ": " << loss << " vs " << want.loss[std::size_t(k)];
    EXPECT_EQ(j["skipped"].get<bool>(), bool(want.skipped[std::size_t(k)]));
    if (want.val_loss.count(k)) {
      EXPECT_EQ(j["val_loss"].get<double>(), want.val_loss.at(k)) << "step " << k;
    }
    ++k;
  }
  EXPECT_EQ(k, invariance_config().train.steps);

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
  EXPECT_EQ(s["jobs"][0]["state"], "finished");
}

INSTANTIATE_TEST_SUITE_P(Placements, ClusterTraining,
                         ::testing::Values(invariance_case{"one_worker", 1, 0}, invariance_case{"two_workers", 2, 0},
                                           invariance_case{"three_random", 3, 11},
                                           invariance_case{"three_random_other", 3, 29}),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam::test
