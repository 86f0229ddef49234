#pragma once
// Causal multi-head attention over a KV cache, for inference (prefill and decode): the
// queries of the newest Q positions of one sequence attend to every cached position up to
// their own. The same function as attention.hpp (T5 relative bias, no 1/sqrt(d_head)):
//   scores[h,r,j] = q_r·k_j + bias[bucket(j − p_r), h]   for j ≤ p_r = L − Q + r
//   probs = softmax_j(scores),  out[r, h·d_head + c] = Σ_j probs[h,r,j] · v[j, h·d_head + c]
//
// Each (query, head) is computed on its own, by fixed-order loops (dot_fixed, max_fixed,
// sum_fixed, then Σ_j in key order) that depend on its position only: a query's output
// has the same bits whether it is computed in a prefill of the whole prompt, alone in a
// decode step, or with any thread count. That is what makes decoding with the cache give
// bitwise the logits of recomputing the whole sequence (docs/serving.md). The training op
// (attention.hpp) computes the same function with GEMMs, so the two agree to rounding only.
//
// Inference only: a KV cache has no backward (training runs attention.hpp, both passes).
//
// Legend: Q new query rows, L cache length including them (keys at positions 0 … L − 1),
// D = heads·d_head; head h at columns h·d_head … of q, the cache and out.
// q, out [Q, D]; k_cache, v_cache [L, D] (row-major); the bias table is [32 buckets, heads].
#include "kernels/tensor.hpp"

namespace glam {

// Writes out [Q, D]. Throws when Q < 0, Q > L, heads < 1 or d_head < 1.
template <class T>
void cached_attention_forward(const T* q, const T* k_cache, const T* v_cache, const T* bias_table, T* out,
                              index queries, index length, index heads, index d_head);

}  // namespace glam
