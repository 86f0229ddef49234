// moe.gate_lr_scale: the router's (gate matrices') Adafactor step is lr times the scale and
// every other parameter's step is untouched. Checked on adafactor_apply against one
// adafactor_update per matrix (the default must be exactly the step as it was before the
// knob), and through a whole reference training step (the units' apply, which the runtime's
// workers call too).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>

#include "kernels/adafactor.hpp"
#include "kernels/random.hpp"
#include "model/optimizer.hpp"
#include "model/train_step.hpp"
#include "model_testing.hpp"

namespace glam {
namespace {

bool is_gate(const std::string& name) { return name.size() > 5 && name.substr(name.size() - 5) == ".gate"; }

// Gradients of the layout of `params`, normal with a per-tensor seed.
param_set random_grads(const param_set& params, std::uint64_t seed) {
  param_set g = params.zeros_like();
  std::uint64_t k = 0;
  for (auto& it : g.items) {
    random_stream rng(mix_seed(seed, {k++}));
    fill_normal(it.value.ptr(), it.value.size(), 0.3, rng);
  }
  return g;
}

bool same_bits(const tensor& a, const tensor& b) {
  return a.same_shape(b) && std::memcmp(a.ptr(), b.ptr(), sizeof(float) * std::size_t(a.size())) == 0;
}

// Σ|(after − before) − factor·(reference_after − before)| over Σ|factor·(reference_after − before)|.
double relative_delta_error(const tensor& before, const tensor& after, const tensor& reference_after, double factor) {
  double err = 0, norm = 0;
  for (index i = 0; i < before.size(); ++i) {
    const double d = double(after[i]) - double(before[i]);
    const double want = factor * (double(reference_after[i]) - double(before[i]));
    err += std::abs(d - want);
    norm += std::abs(want);
  }
  return norm > 0 ? err / norm : err;
}

TEST(GateLrScale, MultiplierIsTheScaleForGatesOnly) {
  config c = testing::tiny_model_config();
  c.moe.gate_lr_scale = 0.1;
  EXPECT_EQ(lr_multiplier("l0.gate", c), 0.1);
  EXPECT_EQ(lr_multiplier("l12.gate", c), 0.1);
  for (const char* other : {"l0.wg", "l0.w1", "l0.w2", "l1.wq", "embedding", "final_norm", "l0.ffn_norm", "gate"})
    EXPECT_EQ(lr_multiplier(other, c), 1.0) << other;
}

class GateLrScaleApply : public ::testing::TestWithParam<double> {};

// Two applied steps (the second with a non-zero second moment) on a dense replica.
TEST_P(GateLrScaleApply, ScalesTheGateStepAndLeavesEveryOtherBitAlone) {
  const double scale = GetParam();
  config c = testing::tiny_model_config();
  c.model.layers = 3;  // two MoE blocks: two gates
  c.train.warmup = 4;
  config scaled = c;
  scaled.moe.gate_lr_scale = scale;

  const param_set init = init_dense_params(c.model, c.train.seed);
  param_set with_default = init, with_scale = init, by_hand = init;
  optimizer_state opt_default, opt_scale;
  opt_default.init(init);
  opt_scale.init(init);
  std::vector<adafactor_state> hand_states;
  for (const auto& it : init.items) hand_states.emplace_back(it.value.dim(0), it.value.dim(1));

  int gates = 0;
  for (std::int64_t t = 0; t < 2; ++t) {
    const param_set before = with_scale;
    const param_set grads = random_grads(init, 100 + std::uint64_t(t));
    adafactor_apply(with_default, grads, opt_default, c);
    adafactor_apply(with_scale, grads, opt_scale, scaled);
    const double lr = rsqrt_schedule(t, c.train.warmup, c.train.lr_scale);
    for (std::size_t i = 0; i < by_hand.items.size(); ++i) {
      tensor& p = by_hand.items[i].value;
      hand_states[i].steps = t;
      adafactor_update(p.ptr(), grads.items[i].value.ptr(), p.dim(0), p.dim(1), hand_states[i], lr);
    }
    // The default is the step as it was: one adafactor_update per matrix at the schedule's lr.
    for (std::size_t i = 0; i < init.items.size(); ++i)
      EXPECT_TRUE(same_bits(with_default.items[i].value, by_hand.items[i].value)) << init.items[i].name << " step " << t;
    if (t > 0) continue;  // after one step the gates differ, so the inputs of the next do too
    for (std::size_t i = 0; i < init.items.size(); ++i) {
      const std::string& name = init.items[i].name;
      if (!is_gate(name)) {
        EXPECT_TRUE(same_bits(with_scale.items[i].value, with_default.items[i].value)) << name;
        continue;
      }
      ++gates;
      EXPECT_LT(relative_delta_error(before.items[i].value, with_scale.items[i].value, with_default.items[i].value, scale),
                1e-5)
          << name;
      if (scale != 1.0) {
        EXPECT_FALSE(same_bits(with_scale.items[i].value, with_default.items[i].value)) << name;
      }
    }
  }
  EXPECT_EQ(gates, 2);
  // The second moments do not depend on the step size.
  for (std::size_t i = 0; i < opt_default.slots.size(); ++i) {
    EXPECT_EQ(opt_default.slots[i].full, opt_scale.slots[i].full) << init.items[i].name;
    EXPECT_EQ(opt_default.slots[i].row, opt_scale.slots[i].row) << init.items[i].name;
    EXPECT_EQ(opt_default.slots[i].col, opt_scale.slots[i].col) << init.items[i].name;
  }
  EXPECT_EQ(opt_scale.applied_steps, 2);
}

INSTANTIATE_TEST_SUITE_P(Scales, GateLrScaleApply, ::testing::Values(1.0, 0.1, 0.5, 4.0));

// One whole reference step: the experts and every dense parameter but the gates come out
// bitwise as with the default; the gates moved by scale times the default's step.
TEST(GateLrScale, OneTrainingStepMovesOnlyTheGatesDifferently) {
  config c = testing::tiny_model_config();
  c.model.layers = 3;
  config scaled = c;
  scaled.moe.gate_lr_scale = 0.1;
  synthetic_source data(c);
  reference_trainer a(c, data), b(scaled, data);
  const param_set before = a.shards()[0].params();
  a.train_step(0);
  b.train_step(0);
  for (std::size_t e = 0; e < a.experts().size(); ++e)
    EXPECT_TRUE(bitwise_equal(a.experts()[e].params(), b.experts()[e].params())) << "expert " << e;
  for (std::size_t s = 0; s < a.shards().size(); ++s) {
    const param_set& pa = a.shards()[s].params();
    const param_set& pb = b.shards()[s].params();
    int gates = 0;
    for (std::size_t i = 0; i < pa.items.size(); ++i) {
      const std::string& name = pa.items[i].name;
      if (!is_gate(name)) {
        EXPECT_TRUE(same_bits(pa.items[i].value, pb.items[i].value)) << "shard " << s << " " << name;
        continue;
      }
      ++gates;
      EXPECT_FALSE(same_bits(pa.items[i].value, pb.items[i].value)) << name;
      EXPECT_LT(relative_delta_error(before.items[i].value, pb.items[i].value, pa.items[i].value, 0.1), 1e-5) << name;
    }
    EXPECT_EQ(gates, 2);
  }
}

}  // namespace
}  // namespace glam
