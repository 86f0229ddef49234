#pragma once
// Top-2 gating, GShard Algorithm 1, as GLaM uses it (docs/model.md, "Top-2 gating"), forward and
// backward, for one group of tokens (one attention shard's micro-batch).
//
// Legend: N tokens in the group, M d_model, E experts, C capacity (rows per expert).
//
// Forward:
//   logits = x·Wg (+ router_bias on experts 0 and 1, a testing option, see gating_options);
//   g = softmax(logits); top-1 (e1, g1), top-2 (e2 ≠ e1, g2), ties to the
//   lower expert index; w1, w2 = g1, g2 renormalised by (g1 + g2) before any drop.
//   Pass 1, tokens in order: s keeps e1 while fewer than C earlier tokens kept e1; slot =
//   that count. Pass 2, tokens in order, slots continuing after all kept first choices of
//   the expert: s keeps e2 if e2 has room and (policy all, or policy random and 2·w2 > u_s).
//   Dropped choices get weight 0 (no second renormalisation); a token keeping neither gets
//   zero MoE output.
//   aux = E² · mean_e(m_e · f_e), m_e = mean over tokens of g_e (raw softmax), f_e =
//   fraction of tokens whose top-1 is e (before capacity). 1 at perfect balance.
//
// Slots of expert e are 0 .. counts[e] − 1 with no gaps, so rows counts[e] .. C − 1 of the
// expert's block in the [E, C, M] dispatch layout are padding (zero).
#include <cstdint>
#include <vector>

#include "kernels/tensor.hpp"

namespace glam {

// C = max(4, round_up_to_multiple_of_4(floor(N · capacity_factor / E))). Throws on
// tokens < 0, experts < 1 or capacity_factor ≤ 0 (or not finite).
index gating_capacity(index tokens, index experts, double capacity_factor);

// What happens to second choices (config: moe.policy).
enum class gate_policy { all, random };

struct gating_options {
  index capacity = 4;  // C, usually gating_capacity(N, E, capacity_factor)
  gate_policy policy = gate_policy::all;
  // Seed of the `random` policy's stream, built by the caller as
  // mix_seed(job_seed, {step, layer, shard}) (kernels/random.hpp). Token s uses the draw
  // at counter position s of random_stream(random_seed): one draw per token, in token
  // order, whether or not its test is reached (so u_s never depends on other tokens).
  std::uint64_t random_seed = 0;
  // Testing only (config: testing.router_bias, docs/placement.md): a constant added to the
  // logits of experts 0 and 1 of every token before the softmax, a fixed router skew that
  // sends most tokens to those two. It is a constant of the function, so the backward
  // (through the saved probabilities) needs nothing more. 0: skipped, the bits of no bias.
  double router_bias = 0;
};

// The experts that gating_options::router_bias favours: 0 .. router_biased_experts − 1.
inline constexpr index router_biased_experts = 2;

// The routing of one group. T is the weight type (float; double for gradient checks).
template <class T>
struct basic_routing {
  index tokens = 0;    // N
  index experts = 0;   // E
  index capacity = 0;  // C

  // Per token [N]: the top-1 and top-2 experts (always set) and the slots of the kept
  // choices (−1 when dropped). Row of a kept choice in [E, C, M]: expert · C + slot.
  std::vector<std::int32_t> expert1, expert2, slot1, slot2;
  // Per token [N]: combine weights: the renormalised gate values of kept choices, 0 for
  // dropped ones.
  std::vector<T> weight1, weight2;

  std::vector<index> counts;  // [E] rows kept per expert (≤ C)
  index dropped_tokens = 0;   // tokens that kept neither expert
  index dropped_choices = 0;  // choices (of 2·N) dropped for capacity or by the policy

  // Load balance: mean_prob [E] = m_e, top1_fraction [E] = f_e, aux as above.
  std::vector<T> mean_prob, top1_fraction;
  T aux = T(0);

  bool kept1(index s) const { return slot1[static_cast<std::size_t>(s)] >= 0; }
  bool kept2(index s) const { return slot2[static_cast<std::size_t>(s)] >= 0; }
};
using routing = basic_routing<float>;

// x [N, M], wg [M, E] -> route; probs [N, E] receives the softmax (saved for backward).
// Throws when E < 2, N < 0, M < 1 or C < 1.
template <class T>
void gating_forward(const T* x, const T* wg, index n, index m, index e, const gating_options& options,
                    basic_routing<T>& route, T* probs);

// Backward through the renormalisation, the softmax and x·Wg, with the top-k choices and
// the capacity decisions held constant (f_e has zero gradient; m_e is differentiable).
// dweight1, dweight2 [N]: gradients of the combine weights (combine_backward); a dropped
// choice's weight is the constant 0, so its gradient is ignored. daux: gradient of the aux
// value (e.g. aux_weight / groups). Adds: dx [N, M] += dlogits·Wgᵀ (skipped when null),
// dwg [M, E] += xᵀ·dlogits (skipped when null).
template <class T>
void gating_backward(const T* x, const T* wg, const T* probs, const basic_routing<T>& route,
                     const T* dweight1, const T* dweight2, T daux, T* dx, T* dwg, index n, index m,
                     index e);

}  // namespace glam
