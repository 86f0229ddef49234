#include "kernels/gating.hpp"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "kernels/random.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 64;
// Token rows per GEMM in the forward pass and in dx. The gate's GEMMs are narrow (E
// columns): BLIS's own threads cost far more than the arithmetic there (measured: 2.4 ms
// on one thread, 90+ ms on two busy cores for 2048×512×8), so they run as row blocks on
// the compute threads, one BLIS thread each. A row's bits do not depend on its block
// (BLIS with sup off), so the blocking changes nothing.
// At least two blocks whenever N ≥ 2: a single item would run on the calling thread
// outside the pool, where BLIS would start its own threads again.
index gemm_rows_per_item(index n) { return std::max<index>(1, std::min<index>(256, (n + 1) / 2)); }

std::size_t at(index i) { return static_cast<std::size_t>(i); }

}  // namespace

index gating_capacity(index tokens, index experts, double capacity_factor) {
  GLAM_CHECK(tokens >= 0, "gating_capacity: tokens must be ≥ 0, got " + std::to_string(tokens));
  GLAM_CHECK(experts >= 1, "gating_capacity: experts must be ≥ 1, got " + std::to_string(experts));
  GLAM_CHECK(std::isfinite(capacity_factor) && capacity_factor > 0,
             "gating_capacity: capacity_factor must be a positive number, got " +
                 std::to_string(capacity_factor));
  const index raw = static_cast<index>(std::floor(double(tokens) * capacity_factor / double(experts)));
  const index rounded = (raw + 3) / 4 * 4;
  return std::max<index>(4, rounded);
}

template <class T>
void gating_forward(const T* x, const T* wg, index n, index m, index e, const gating_options& options,
                    basic_routing<T>& route, T* probs) {
  GLAM_CHECK(e >= 2, "gating: top-2 gating needs at least 2 experts, got E = " + std::to_string(e));
  GLAM_CHECK(n >= 0, "gating: negative token count " + std::to_string(n));
  GLAM_CHECK(m >= 1, "gating: d_model must be ≥ 1, got " + std::to_string(m));
  GLAM_CHECK(options.capacity >= 1,
             "gating: capacity must be ≥ 1, got " + std::to_string(options.capacity) +
                 " (use gating_capacity)");
  const index cap = options.capacity;

  route.tokens = n;
  route.experts = e;
  route.capacity = cap;
  route.expert1.assign(at(n), 0);
  route.expert2.assign(at(n), 0);
  route.slot1.assign(at(n), -1);
  route.slot2.assign(at(n), -1);
  route.weight1.assign(at(n), T(0));
  route.weight2.assign(at(n), T(0));
  route.counts.assign(at(e), 0);
  route.dropped_tokens = 0;
  route.dropped_choices = 0;
  route.mean_prob.assign(at(e), T(0));
  route.top1_fraction.assign(at(e), T(0));
  route.aux = T(0);
  if (n == 0) return;

  // Renormalised gate values before any drop, per token.
  std::vector<T> g1(at(n)), g2(at(n));

  // logits into probs, then softmax, top-2 and renormalisation row by row (rows are
  // independent: their bits do not depend on the batching or the thread count).
  parallel_rows(n, gemm_rows_per_item(n), [&](index begin, index end) {
    linear_forward(x + begin * m, wg, probs + begin * e, end - begin, m, e);
    const T bias = static_cast<T>(options.router_bias);
    for (index s = begin; s < end; ++s) {
      T* p = probs + s * e;
      if (options.router_bias != 0)
        for (index j = 0; j < std::min(e, router_biased_experts); ++j) p[j] += bias;
      const T mx = max_fixed(p, e);
      T sum = T(0);
      for (index j = 0; j < e; ++j) {
        p[j] = exp_of(p[j] - mx);
        sum += p[j];
      }
      const T inv = T(1) / sum;
      for (index j = 0; j < e; ++j) p[j] *= inv;
      // Strict comparisons in index order: ties go to the lower expert index.
      index e1 = 0;
      for (index j = 1; j < e; ++j)
        if (p[j] > p[e1]) e1 = j;
      index e2 = e1 == 0 ? 1 : 0;
      for (index j = e2 + 1; j < e; ++j)
        if (j != e1 && p[j] > p[e2]) e2 = j;
      const T denom = p[e1] + p[e2];
      route.expert1[at(s)] = static_cast<std::int32_t>(e1);
      route.expert2[at(s)] = static_cast<std::int32_t>(e2);
      g1[at(s)] = p[e1] / denom;
      g2[at(s)] = p[e2] / denom;
    }
  });

  // Pass 1: first choices in token order.
  std::vector<index> top1_count(at(e), 0);
  for (index s = 0; s < n; ++s) {
    const index e1 = route.expert1[at(s)];
    ++top1_count[at(e1)];
    if (route.counts[at(e1)] < cap) {
      route.slot1[at(s)] = static_cast<std::int32_t>(route.counts[at(e1)]++);
      route.weight1[at(s)] = g1[at(s)];
    }
  }
  // Pass 2: second choices in token order, after all kept first choices.
  const random_stream draws(options.random_seed);
  for (index s = 0; s < n; ++s) {
    const index e2 = route.expert2[at(s)];
    bool keep = route.counts[at(e2)] < cap;
    if (keep && options.policy == gate_policy::random) {
      const double u = uniform_from_bits(draws.bits_at(std::uint64_t(s)));
      keep = 2.0 * double(g2[at(s)]) > u;
    }
    if (keep) {
      route.slot2[at(s)] = static_cast<std::int32_t>(route.counts[at(e2)]++);
      route.weight2[at(s)] = g2[at(s)];
    }
  }
  for (index s = 0; s < n; ++s) {
    const bool k1 = route.kept1(s), k2 = route.kept2(s);
    route.dropped_choices += (k1 ? 0 : 1) + (k2 ? 0 : 1);
    route.dropped_tokens += (k1 || k2) ? 0 : 1;
  }

  // m_e: column sums of probs in fixed chunks of rows, combined in chunk order.
  const index chunks = reduction_chunks(n);
  std::vector<T> partial(at(chunks * e), T(0));
  parallel_for(chunks, [&](index c) {
    T* part = partial.data() + c * e;
    const index end = std::min(n, (c + 1) * reduction_chunk_rows);
    for (index s = c * reduction_chunk_rows; s < end; ++s)
      for (index j = 0; j < e; ++j) part[j] += probs[s * e + j];
  });
  T balance = T(0);
  for (index j = 0; j < e; ++j) {
    T total = T(0);
    for (index c = 0; c < chunks; ++c) total += partial[at(c * e + j)];
    route.mean_prob[at(j)] = total / T(n);
    route.top1_fraction[at(j)] = T(top1_count[at(j)]) / T(n);
    balance += route.mean_prob[at(j)] * route.top1_fraction[at(j)];
  }
  route.aux = T(e * e) * (balance / T(e));
}

template <class T>
void gating_backward(const T* x, const T* wg, const T* probs, const basic_routing<T>& route,
                     const T* dweight1, const T* dweight2, T daux, T* dx, T* dwg, index n, index m,
                     index e) {
  GLAM_CHECK(route.tokens == n && route.experts == e,
             "gating_backward: routing is for N = " + std::to_string(route.tokens) + ", E = " +
                 std::to_string(route.experts) + " but called with N = " + std::to_string(n) +
                 ", E = " + std::to_string(e));
  if (n == 0 || (!dx && !dwg)) return;
  // d aux / d g[s, e] = E² / E · f_e / N = E · f_e / N (aux = E² · mean_e(m_e f_e)).
  std::vector<T> aux_grad(at(e));
  for (index j = 0; j < e; ++j) aux_grad[at(j)] = daux * T(e) * route.top1_fraction[at(j)] / T(n);

  std::vector<T> dlogits(at(n * e));
  parallel_rows(n, rows_per_item, [&](index begin, index end) {
    std::vector<T> dp(at(e));
    for (index s = begin; s < end; ++s) {
      const T* p = probs + s * e;
      for (index j = 0; j < e; ++j) dp[at(j)] = aux_grad[at(j)];
      // w1 = p1 / (p1 + p2), w2 = p2 / (p1 + p2) where kept; a dropped weight is 0.
      const index e1 = route.expert1[at(s)], e2 = route.expert2[at(s)];
      const T r1 = route.kept1(s) ? dweight1[s] : T(0);
      const T r2 = route.kept2(s) ? dweight2[s] : T(0);
      const T p1 = p[e1], p2 = p[e2];
      const T sum = p1 + p2;
      const T inv2 = T(1) / (sum * sum);
      dp[at(e1)] += p2 * (r1 - r2) * inv2;
      dp[at(e2)] += p1 * (r2 - r1) * inv2;
      // Softmax backward: dl = p ⊙ (dp − Σ p·dp).
      T dot = T(0);
      for (index j = 0; j < e; ++j) dot += p[j] * dp[at(j)];
      T* dl = dlogits.data() + s * e;
      for (index j = 0; j < e; ++j) dl[j] = p[j] * (dp[at(j)] - dot);
    }
  });
  if (dx) {
    parallel_rows(n, gemm_rows_per_item(n), [&](index begin, index end) {
      linear_backward(x + begin * m, wg, dlogits.data() + begin * e, dx + begin * m, static_cast<T*>(nullptr),
                      end - begin, m, e);
    });
  }
  if (dwg) {
    // dWg = xᵀ·dlogits sums over tokens: one partial per fixed chunk of token rows,
    // added in chunk order.
    const index chunks = reduction_chunks(n);
    std::vector<T> partial(at(chunks * m * e), T(0));
    parallel_for(chunks, [&](index c) {
      const index begin = c * reduction_chunk_rows, end = std::min(n, begin + reduction_chunk_rows);
      linear_backward(x + begin * m, wg, dlogits.data() + begin * e, static_cast<T*>(nullptr),
                      partial.data() + c * m * e, end - begin, m, e);
    });
    for (index c = 0; c < chunks; ++c) {
      const T* part = partial.data() + c * m * e;
      for (index i = 0; i < m * e; ++i) dwg[i] += part[i];
    }
  }
}

template void gating_forward<float>(const float*, const float*, index, index, index, const gating_options&,
                                    basic_routing<float>&, float*);
template void gating_forward<double>(const double*, const double*, index, index, index,
                                     const gating_options&, basic_routing<double>&, double*);
template void gating_backward<float>(const float*, const float*, const float*, const basic_routing<float>&,
                                     const float*, const float*, float, float*, float*, index, index, index);
template void gating_backward<double>(const double*, const double*, const double*,
                                      const basic_routing<double>&, const double*, const double*, double,
                                      double*, double*, index, index, index);

}  // namespace glam
