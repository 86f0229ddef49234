#pragma once
// Causal multi-head attention core with T5 relative position bias (GLaM), forward and
// backward. The caller applies the projections (q = x·Wq, k = x·Wk, v = x·Wv, and Wo on
// the output); this op is everything in between:
//   scores[b,h,i,j] = q_i·k_j + bias[bucket(j − i), h]   for j ≤ i (−∞ for j > i)
//   probs = softmax_j(scores),  out[b,i,h·d_head + c] = Σ_j probs[b,h,i,j] · v[b,j,h·d_head + c]
// No 1/sqrt(d_head) on the scores: GLaM folds it into the query init.
//
// Legend: B batch, T sequence, D = heads·d_head; head h at columns h·d_head… of q, k, v, out.
// q, k, v, out are [B, T, D] row-major; the bias table is [32 buckets, heads].
#include "kernels/tensor.hpp"

namespace glam {

constexpr int relative_bias_buckets = 32;
constexpr int relative_bias_max_distance = 128;

// T5's _relative_position_bucket(relative_position = j − i, bidirectional=False,
// num_buckets=32, max_distance=128): n = max(i − j, 0); buckets 0..15 are n itself;
// from n = 16 on the bucket grows with log(n), reaching 31 at n = 128 and staying there.
int relative_position_bucket(index relative_position);

// Saves probs [B, heads, T, T] (zero above the diagonal) for backward.
template <class T>
void attention_forward(const T* q, const T* k, const T* v, const T* bias_table, T* out, T* probs,
                       index batch, index seq, index heads, index d_head);

// Adds the gradients dq, dk, dv [B, T, D] and dbias_table [32, heads] (each skipped when
// null). The bias-table gradient is summed per (batch, head) over (i, j) in a fixed order,
// then over batches in order: the same bits for any thread count.
template <class T>
void attention_backward(const T* q, const T* k, const T* v, const T* probs, const T* dout, T* dq,
                        T* dk, T* dv, T* dbias_table, index batch, index seq, index heads,
                        index d_head);

}  // namespace glam
