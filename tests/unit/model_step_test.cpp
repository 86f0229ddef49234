// The reference step: the same bits with 1 and 2 compute threads, a non-finite gradient
// skips the step everywhere, and the dense replicas stay identical across shards.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/parallel.hpp"
#include "model/train_step.hpp"
#include "model_testing.hpp"

namespace glam {
namespace {

config step_config() {
  config c = testing::tiny_model_config();
  c.model.d_model = 32;
  c.model.d_ff = 64;
  c.model.heads = 4;
  c.model.d_head = 8;
  c.model.seq_len = 40;  // past 16 positions: the log-spaced relative-bias buckets are used
  c.model.layers = 3;
  c.train.batch_per_shard = 3;
  c.moe.policy = second_expert_policy::random;
  return c;
}

struct run_result {
  std::vector<float> losses;
  std::vector<param_set> shard_params, expert_params;
};

run_result run_steps(const config& c, int threads, int steps) {
  const int saved = compute_threads();
  set_compute_threads(threads);
  synthetic_source data(c);
  reference_trainer trainer(c, data);
  run_result r;
  for (int k = 0; k < steps; ++k) r.losses.push_back(trainer.train_step(k).loss.loss);
  for (auto& s : trainer.shards()) r.shard_params.push_back(s.params());
  for (auto& e : trainer.experts()) r.expert_params.push_back(e.params());
  set_compute_threads(saved);
  return r;
}

TEST(ModelStep, SameBitsWithOneAndTwoThreads) {
  const config c = step_config();
  run_result one = run_steps(c, 1, 2), two = run_steps(c, 2, 2);
  ASSERT_EQ(one.losses.size(), two.losses.size());
  for (std::size_t k = 0; k < one.losses.size(); ++k)
    EXPECT_EQ(std::memcmp(&one.losses[k], &two.losses[k], sizeof(float)), 0) << "step " << k;
  for (std::size_t s = 0; s < one.shard_params.size(); ++s)
    EXPECT_TRUE(bitwise_equal(one.shard_params[s], two.shard_params[s])) << "shard " << s;
  for (std::size_t e = 0; e < one.expert_params.size(); ++e)
    EXPECT_TRUE(bitwise_equal(one.expert_params[e], two.expert_params[e])) << "expert " << e;
}

TEST(ModelStep, DenseReplicasStayIdenticalAcrossShards) {
  const config c = step_config();
  run_result r = run_steps(c, 2, 2);
  for (std::size_t s = 1; s < r.shard_params.size(); ++s) EXPECT_TRUE(bitwise_equal(r.shard_params[0], r.shard_params[s]));
}

TEST(ModelStep, NonFiniteGradientSkipsTheStepEverywhere) {
  const config c = step_config();
  synthetic_source data(c);
  reference_trainer trainer(c, data);
  trainer.train_step(0);
  const param_set shard_before = trainer.shards()[1].params();
  const param_set expert_before = trainer.experts()[2].params();
  const auto applied_before = trainer.shards()[0].optimizer().applied_steps;
  trainer.inject_nonfinite_gradient_at(1);
  step_metrics m = trainer.train_step(1);
  EXPECT_TRUE(m.skipped);
  EXPECT_TRUE(bitwise_equal(shard_before, trainer.shards()[1].params()));
  EXPECT_TRUE(bitwise_equal(expert_before, trainer.experts()[2].params()));
  EXPECT_EQ(trainer.shards()[0].optimizer().applied_steps, applied_before);
  EXPECT_EQ(trainer.experts()[0].optimizer().applied_steps, applied_before);
  step_metrics next = trainer.train_step(2);
  EXPECT_FALSE(next.skipped);
  EXPECT_EQ(trainer.shards()[0].optimizer().applied_steps, applied_before + 1);
}

TEST(ModelStep, LossIsFiniteAndAuxNearOneAtInit) {
  const config c = step_config();
  synthetic_source data(c);
  reference_trainer trainer(c, data);
  step_metrics m = trainer.train_step(0);
  EXPECT_TRUE(std::isfinite(m.loss.loss));
  // Near-uniform routing at init: aux ≈ 1 per MoE layer (2 MoE layers of 3 blocks).
  EXPECT_NEAR(m.loss.aux, 2.0, 0.3);
  // Uniform predictions at init: cross-entropy ≈ log V.
  EXPECT_NEAR(m.loss.cross_entropy, std::log(double(c.model.vocab_size)), 1.0);
  index routed = 0;
  for (index t : m.tokens_per_expert) routed += t;
  EXPECT_EQ(routed + m.dropped, 2 * m.tokens * c.model.moe_layers());
}

}  // namespace
}  // namespace glam
