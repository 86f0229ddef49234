#pragma once
// Tied token embedding: lookup forward, scatter-add backward (GLaM ties the input
// embedding to the output logits, cross_entropy.hpp; both add into the same dE).
//
// Legend: N rows (B·T tokens), V vocabulary, M d_model. table E [V, M]; out [N, M];
// tokens [N] int32 in [0, V).
#include <cstdint>

#include "kernels/tensor.hpp"

namespace glam {

// out[n] = E[tokens[n]]. Throws (naming the row and token) on a token outside [0, V).
template <class T>
void embedding_forward(const std::int32_t* tokens, const T* table, T* out, index n, index vocab,
                       index m);

// dE[tokens[n]] += dout[n] for every n. Each vocabulary row receives its rows in token
// order (n ascending), whatever the thread count: the vocabulary is split among threads,
// never the tokens.
template <class T>
void embedding_backward(const std::int32_t* tokens, const T* dout, T* dtable, index n, index vocab,
                        index m);

}  // namespace glam
