// Finite differences of the whole model's loss against its backward, for every parameter
// group of the dense replica and of the experts, MoE layers included.
//
// The units run in float, so the check is a directional derivative per parameter group:
// (L(θ + h·d) − L(θ − h·d)) / 2h against ⟨∇L, d⟩ for a random direction d over the whole
// group. Summing over the group keeps the float rounding of L (~1e-7 relative) small
// against the signal. Capacity is large enough that no choice is dropped, and the aux and
// z-loss weights are raised so that their gradients are visible.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "model/train_step.hpp"
#include "model_testing.hpp"

namespace glam {
namespace {

struct gradient_case {
  const char* name;
  second_expert_policy policy;
  expert_activation activation;
  double z_loss;
  // Perturbation, relative to the group's RMS. ReLU experts are piecewise linear: a step
  // that crosses many kinks biases the difference, so they take a smaller one (and a
  // larger absolute tolerance for the float rounding of the loss).
  double relative_step;
  double atol;
};

class ModelGradientTest : public ::testing::TestWithParam<gradient_case> {};

// The global loss of one step (forward only) for the units' current parameters, and
// optionally the gradients (forward + backward, no apply).
double step_loss_value(const config& c, std::vector<shard_unit>& shards, std::vector<expert_unit>& experts,
                       const token_source& data, bool backward) {
  const index C = expert_capacity(c), M = c.model.d_model;
  const index B = c.train.batch_per_shard, T = c.model.seq_len;
  for (auto& e : experts) e.begin_step(0);
  std::vector<loss_parts> parts;
  for (auto& sh : shards) {
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * (T + 1)));
    data.train_batch(0, sh.shard(), tokens.data());
    sh.begin_step(0, tokens, true);
    while (auto ex = sh.forward_next()) {
      tensor out(ex->rows.shape);
      for (auto& e : experts) {
        tensor y = e.forward(ex->moe, sh.shard(), ex->rows.ptr() + e.expert() * C * M);
        std::copy(y.data.begin(), y.data.end(), out.data.begin() + e.expert() * C * M);
      }
      sh.forward_resume(out);
    }
    parts.push_back(sh.loss());
  }
  if (backward) {
    for (auto& sh : shards) {
      sh.start_backward();
      while (auto g = sh.backward_next()) {
        tensor din(g->rows.shape);
        for (auto& e : experts) {
          tensor dx = e.backward(g->moe, sh.shard(), g->rows.ptr() + e.expert() * C * M);
          std::copy(dx.data.begin(), dx.data.end(), din.data.begin() + e.expert() * C * M);
        }
        sh.backward_resume(din);
      }
    }
    for (auto& e : experts)
      for (index m = 0; m < c.model.moe_layers(); ++m) e.finish_layer_backward(m);
  }
  double ce = 0, aux = 0, z = 0, tokens = 0;
  for (auto& p : parts) {
    ce += p.cross_entropy_sum;
    aux += p.aux_sum;
    z += p.z_sum;
    tokens += double(p.tokens);
  }
  return ce / tokens + c.moe.aux_weight * aux / double(parts.size()) + z / tokens;
}

TEST_P(ModelGradientTest, DirectionalDerivativesMatchBackward) {
  const gradient_case& tc = GetParam();
  config c = testing::tiny_model_config();
  c.moe.policy = tc.policy;
  c.model.activation = tc.activation;
  c.moe.capacity_factor = double(c.model.experts);  // C ≥ N: nothing dropped for capacity
  c.moe.aux_weight = 0.5;
  c.train.z_loss = tc.z_loss;
  synthetic_source data(c);
  auto shards = make_shards(c);
  auto experts = make_experts(c);
  step_loss_value(c, shards, experts, data, true);

  // Dense gradient = Σ over shards; a perturbation of the dense parameters moves every replica.
  std::vector<const param_set*> per_shard;
  for (auto& sh : shards) per_shard.push_back(&sh.grads());
  const param_set dense_grad = sum_dense_gradients(per_shard);
  std::vector<param_set> expert_grads;
  for (auto& e : experts) expert_grads.push_back(e.grads());

  std::mt19937 rng(11);
  std::normal_distribution<float> normal(0.f, 1.f);
  auto check_group = [&](const std::string& what, std::vector<tensor*> targets, const tensor& grad) {
    tensor dir(grad.shape);
    for (auto& v : dir.data) v = normal(rng);
    double analytic = 0, norm = 0;
    for (index i = 0; i < dir.size(); ++i) {
      analytic += double(grad[i]) * dir[i];
      norm += double(dir[i]) * dir[i];
    }
    // Step: a relative change of ~3e-3 in the parameters' scale.
    double scale = 0;
    for (float v : targets[0]->data) scale += double(v) * v;
    scale = std::sqrt(scale / double(targets[0]->size()));
    const double h = tc.relative_step * std::max(scale, 1e-2) / std::sqrt(norm / double(dir.size()));
    const tensor saved = *targets[0];
    auto set = [&](double sign) {
      for (tensor* t : targets)
        for (index i = 0; i < t->size(); ++i) (*t)[i] = float(double(saved[i]) + sign * h * dir[i]);
    };
    set(+1);
    const double up = step_loss_value(c, shards, experts, data, false);
    set(-1);
    const double down = step_loss_value(c, shards, experts, data, false);
    for (tensor* t : targets) *t = saved;
    const double numeric = (up - down) / (2 * h);
    EXPECT_NEAR(analytic, numeric, 2e-2 * std::abs(numeric) + tc.atol)
        << tc.name << ": " << what << " (analytic " << analytic << ", numeric " << numeric << ")";
  };

  for (std::size_t i = 0; i < dense_grad.items.size(); ++i) {
    const std::string& name = dense_grad.items[i].name;
    std::vector<tensor*> replicas;
    for (auto& sh : shards) replicas.push_back(&sh.params().items[i].value);
    check_group("dense " + name, replicas, dense_grad.items[i].value);
  }
  for (std::size_t e = 0; e < experts.size(); ++e)
    for (std::size_t i = 0; i < expert_grads[e].items.size(); ++i)
      check_group("expert " + std::to_string(e) + " " + expert_grads[e].items[i].name,
                  {&experts[e].params().items[i].value}, expert_grads[e].items[i].value);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, ModelGradientTest,
    ::testing::Values(
        gradient_case{"gelu_all", second_expert_policy::all, expert_activation::gated_gelu, 0.0, 3e-3, 2e-4},
        gradient_case{"gelu_all_zloss", second_expert_policy::all, expert_activation::gated_gelu, 0.1, 3e-3, 2e-4},
        gradient_case{"gelu_random", second_expert_policy::random, expert_activation::gated_gelu, 0.0, 3e-3, 2e-4},
        gradient_case{"relu_all", second_expert_policy::all, expert_activation::relu, 0.0, 3e-4, 4e-3},
        gradient_case{"relu_random_zloss", second_expert_policy::random, expert_activation::relu, 0.1, 3e-4, 4e-3}),
    [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam
