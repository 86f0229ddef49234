#include "kernels/attention.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"

namespace glam {

int relative_position_bucket(index relative_position) {
  const index n = std::max<index>(-relative_position, 0);
  const int max_exact = relative_bias_buckets / 2;
  if (n < max_exact) return static_cast<int>(n);
  // T5 truncates toward zero after scaling the log into the remaining 16 buckets.
  const double scaled = std::log(double(n) / max_exact) /
                        std::log(double(relative_bias_max_distance) / max_exact) *
                        (relative_bias_buckets - max_exact);
  const int bucket = max_exact + static_cast<int>(scaled);
  return std::min(bucket, relative_bias_buckets - 1);
}

namespace {

void check_shapes(index batch, index seq, index heads, index d_head) {
  GLAM_CHECK(batch >= 0 && seq >= 0, "attention: batch and sequence must be non-negative, got B=" +
                                         std::to_string(batch) + " T=" + std::to_string(seq));
  GLAM_CHECK(heads > 0 && d_head > 0, "attention: heads and d_head must be positive, got " +
                                          std::to_string(heads) + " x " + std::to_string(d_head));
}

// Bucket of every offset n = i − j in [0, T): the table lookup the kernels index by i − j.
std::vector<int> offset_buckets(index seq) {
  std::vector<int> b(static_cast<std::size_t>(std::max<index>(seq, 1)));
  for (index n = 0; n < seq; ++n) b[n] = relative_position_bucket(-n);
  return b;
}

}  // namespace

template <class T>
void attention_forward(const T* q, const T* k, const T* v, const T* bias_table, T* out, T* probs,
                       index batch, index seq, index heads, index d_head) {
  check_shapes(batch, seq, heads, d_head);
  const index D = heads * d_head;
  const std::vector<int> bucket = offset_buckets(seq);
  parallel_for(batch * heads, [&](index item) {
    const index b = item / heads, h = item % heads;
    const T* qb = q + b * seq * D + h * d_head;
    const T* kb = k + b * seq * D + h * d_head;
    const T* vb = v + b * seq * D + h * d_head;
    T* p = probs + item * seq * seq;
    // Full T×T scores (the masked half is overwritten): one GEMM beats a triangle of dots.
    gemm<T>(false, true, seq, seq, d_head, T(1), qb, D, kb, D, T(0), p, seq);
    for (index i = 0; i < seq; ++i) {
      T* row = p + i * seq;
      const index len = i + 1;
      for (index j = 0; j < len; ++j) row[j] += bias_table[bucket[i - j] * heads + h];
      const T mx = max_fixed(row, len);
      for (index j = 0; j < len; ++j) row[j] = exp_of(row[j] - mx);
      const T inv = T(1) / sum_fixed(row, len);
      for (index j = 0; j < len; ++j) row[j] *= inv;
      for (index j = len; j < seq; ++j) row[j] = T(0);
    }
    gemm<T>(false, false, seq, d_head, seq, T(1), p, seq, vb, D, T(0),
            out + b * seq * D + h * d_head, D);
  });
}

template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* probs, const T* dout, T* dq,
                        T* dk, T* dv, T* dbias_table, index batch, index seq, index heads,
                        index d_head) {
  check_shapes(batch, seq, heads, d_head);
  const index D = heads * d_head;
  const std::vector<int> bucket = offset_buckets(seq);
  // Bias-table partials per (batch, head): [B·heads, 32].
  std::vector<T> bias_partial(static_cast<std::size_t>(batch * heads * relative_bias_buckets), T(0));
  parallel_for(batch * heads, [&](index item) {
    const index b = item / heads, h = item % heads;
    const index off = b * seq * D + h * d_head;
    const T* p = probs + item * seq * seq;
    std::vector<T> ds(static_cast<std::size_t>(seq * seq));
    // dP = dO · Vᵀ, dV += Pᵀ · dO.
    gemm<T>(false, true, seq, seq, d_head, T(1), dout + off, D, v + off, D, T(0), ds.data(), seq);
    if (dv) gemm<T>(true, false, seq, d_head, seq, T(1), p, seq, dout + off, D, T(1), dv + off, D);
    // dS = P ⊙ (dP − Σ_j dP·P) on the causal triangle, zero above it.
    T* bp = bias_partial.data() + item * relative_bias_buckets;
    for (index i = 0; i < seq; ++i) {
      T* row = ds.data() + i * seq;
      const T* prow = p + i * seq;
      const index len = i + 1;
      const T c = dot_fixed(row, prow, len);
      for (index j = 0; j < len; ++j) row[j] = prow[j] * (row[j] - c);
      for (index j = len; j < seq; ++j) row[j] = T(0);
      if (dbias_table)
        for (index j = 0; j < len; ++j) bp[bucket[i - j]] += row[j];
    }
    // dQ += dS · K, dK += dSᵀ · Q.
    if (dq) gemm<T>(false, false, seq, d_head, seq, T(1), ds.data(), seq, k + off, D, T(1), dq + off, D);
    if (dk) gemm<T>(true, false, seq, d_head, seq, T(1), ds.data(), seq, q + off, D, T(1), dk + off, D);
  });
  if (dbias_table) {
    for (index h = 0; h < heads; ++h)
      for (int u = 0; u < relative_bias_buckets; ++u) {
        T total = T(0);
        for (index b = 0; b < batch; ++b) total += bias_partial[(b * heads + h) * relative_bias_buckets + u];
        dbias_table[u * heads + h] += total;
      }
  }
}

template void attention_forward<float>(const float*, const float*, const float*, const float*, float*,
                                       float*, index, index, index, index);
template void attention_forward<double>(const double*, const double*, const double*, const double*,
                                        double*, double*, index, index, index, index);
template void attention_backward<float>(const float*, const float*, const float*, const float*,
                                        const float*, float*, float*, float*, float*, index, index,
                                        index, index);
template void attention_backward<double>(const double*, const double*, const double*, const double*,
                                         const double*, double*, double*, double*, double*, index,
                                         index, index, index);

}  // namespace glam
