// An MoE layer of two identical gated-GELU experts (policy `all`, capacity ≥ tokens) is the
// dense FFN with the same weights: the renormalised gates sum to one, so the combine gives
// back the expert's output, in the forward and in the input and weight gradients.
#include <gtest/gtest.h>

#include <random>

#include "kernels/dispatch_combine.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gating.hpp"
#include "kernels/gelu_ffn.hpp"

namespace glam {
namespace {

std::vector<float> random_values(index n, std::uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

void expect_close(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size());
  double worst = 0, scale = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    worst = std::max(worst, double(std::abs(a[i] - b[i])));
    scale = std::max(scale, double(std::abs(b[i])));
  }
  EXPECT_LE(worst, 2e-6 * scale + 1e-7) << what << ": max difference " << worst << " at scale " << scale;
}

struct equivalence_case {
  index tokens, m, h;
};

class MoeDenseEquivalence : public ::testing::TestWithParam<equivalence_case> {};

TEST_P(MoeDenseEquivalence, TwoIdenticalExpertsEqualTheDenseFfn) {
  const auto [N, M, H] = GetParam();
  const index E = 2;
  const index C = gating_capacity(N, E, 2.0);
  ASSERT_GE(C, N);
  auto x = random_values(N * M, 1, 1.f), gate = random_values(M * E, 2, 0.5f);
  auto wg = random_values(M * H, 3, 0.3f), w1 = random_values(M * H, 4, 0.3f), w2 = random_values(H * M, 5, 0.3f);
  auto dy = random_values(N * M, 6, 1.f);

  // Dense.
  std::vector<float> a(N * H), u(N * H), hh(N * H), y_dense(N * M), dx_dense(N * M, 0.f);
  std::vector<float> dwg_dense(M * H, 0.f), dw1_dense(M * H, 0.f), dw2_dense(H * M, 0.f);
  gelu_ffn_forward(x.data(), wg.data(), w1.data(), w2.data(), a.data(), u.data(), hh.data(), y_dense.data(), N, M, H);
  gelu_ffn_backward(x.data(), wg.data(), w1.data(), w2.data(), a.data(), u.data(), hh.data(), dy.data(),
                    dx_dense.data(), dwg_dense.data(), dw1_dense.data(), dw2_dense.data(), N, M, H);

  // MoE with both experts holding the dense weights.
  gating_options opt;
  opt.capacity = C;
  opt.policy = gate_policy::all;
  routing route;
  std::vector<float> probs(N * E);
  gating_forward(x.data(), gate.data(), N, M, E, opt, route, probs.data());
  ASSERT_EQ(route.dropped_choices, 0);
  std::vector<float> buffer(E * C * M), out(E * C * M), y_moe(N * M);
  const index saved_per_row = expert_saved_per_row(ffn_activation::gated_gelu, H);
  std::vector<float> saved(E * C * saved_per_row);
  expert_weights<float> w{wg.data(), w1.data(), w2.data()};
  dispatch_forward(x.data(), route, buffer.data(), M);
  for (index e = 0; e < E; ++e)
    expert_ffn_forward(ffn_activation::gated_gelu, buffer.data() + e * C * M, w, saved.data() + e * C * saved_per_row,
                       out.data() + e * C * M, C, M, H);
  combine_forward(out.data(), route, y_moe.data(), M);
  expect_close(y_moe, y_dense, "output");

  std::vector<float> d_out(E * C * M), d_buffer(E * C * M, 0.f), dx_moe(N * M, 0.f), dw_1(N, 0.f), dw_2(N, 0.f);
  std::vector<float> dwg(M * H, 0.f), dw1(M * H, 0.f), dw2(H * M, 0.f), dgate(M * E, 0.f);
  combine_backward(out.data(), dy.data(), route, d_out.data(), dw_1.data(), dw_2.data(), M);
  for (index e = 0; e < E; ++e)
    expert_ffn_backward(ffn_activation::gated_gelu, buffer.data() + e * C * M, w,
                        saved.data() + e * C * saved_per_row, d_out.data() + e * C * M,
                        d_buffer.data() + e * C * M, expert_gradients<float>{dwg.data(), dw1.data(), dw2.data()}, C,
                        M, H);
  dispatch_backward(d_buffer.data(), route, dx_moe.data(), M);
  gating_backward(x.data(), gate.data(), probs.data(), route, dw_1.data(), dw_2.data(), 0.f, dx_moe.data(),
                  dgate.data(), N, M, E);
  expect_close(dx_moe, dx_dense, "input gradient");
  expect_close(dwg, dwg_dense, "dWg (both experts summed)");
  expect_close(dw1, dw1_dense, "dW1 (both experts summed)");
  expect_close(dw2, dw2_dense, "dW2 (both experts summed)");
}

INSTANTIATE_TEST_SUITE_P(Shapes, MoeDenseEquivalence,
                         ::testing::Values(equivalence_case{24, 8, 16}, equivalence_case{64, 32, 48},
                                           equivalence_case{37, 16, 24}));

}  // namespace
}  // namespace glam
