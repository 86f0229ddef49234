#pragma once
// Dense gated-GELU FFN (GLaM's dense layers; also the gated expert variant), forward and
// backward:
//   a = x·Wg,  u = x·W1,  h = gelu_tanh(a) ⊙ u,  y = h·W2
//   gelu_tanh(z) = 0.5·z·(1 + tanh(sqrt(2/π)·(z + 0.044715·z³)))
//
// Legend: N rows, M d_model, H d_ff. x, y [N, M]; Wg, W1 [M, H]; W2 [H, M]; a, u, h [N, H].
// Rows are independent: a row's bits depend on that row and the weights only.
#include "kernels/tensor.hpp"

namespace glam {

// out[i] = gelu_tanh(z[i]) over n values (the float version is vectorised, see
// elementwise.hpp).
template <class T>
void gelu_tanh(const T* z, T* out, index n);

// Writes y and the saved activations a, u, h (each [N, H]).
template <class T>
void gelu_ffn_forward(const T* x, const T* wg, const T* w1, const T* w2, T* a, T* u, T* h, T* y,
                      index n, index m, index hdim);

// Adds the gradients: dx [N, M], dWg, dW1 [M, H], dW2 [H, M] (each skipped when null).
// Allocates 2·N·H scratch values.
template <class T>
void gelu_ffn_backward(const T* x, const T* wg, const T* w1, const T* w2, const T* a, const T* u,
                       const T* h, const T* dy, T* dx, T* dwg, T* dw1, T* dw2, index n, index m,
                       index hdim);

}  // namespace glam
