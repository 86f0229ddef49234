#pragma once
// Dense gated-GELU FFN (GLaM's dense layers; also the gated expert variant), forward and
// backward:
//   a = x·Wg,  u = x·W1,  h = gelu_tanh(a) ⊙ u,  y = h·W2
//   gelu_tanh(z) = 0.5·z·(1 + tanh(sqrt(2/π)·(z + 0.044715·z³)))
//
// Legend: N rows, M d_model, H d_ff. x, y [N, M]; Wg, W1 [M, H]; W2 [H, M]; a, u, h [N, H].
// Rows are independent: a row's bits depend on that row and the weights only.
#include "kernels/elementwise.hpp"
#include "kernels/tensor.hpp"

namespace glam {

template <class T>
constexpr T gelu_c = T(0.7978845608028654);  // sqrt(2/π)
template <class T>
constexpr T gelu_k = T(0.044715);

// gelu_tanh through the identity 0.5·(1 + tanh(w)) = 1 / (1 + exp(−2w)), w = c·(z + k·z³):
//   g = z·s,  g' = s + 2·z·s·(1 − s)·c·(1 + 3k·z²),  s = 1 / (1 + e),  1 − s = e·s,  e = exp(−2w).
// The same function as the tanh form, but where tanh(w) nears −1 the tanh form cancels
// (1 + t loses every digit in float for z < −4); this form keeps the relative accuracy of
// exp on both tails, and costs one exp and one division.
template <class T>
inline T gelu_value(T z) {
  const T e = exp_of(T(-2) * gelu_c<T> * (z + gelu_k<T> * z * z * z));
  return z / (T(1) + e);
}

template <class T>
inline void gelu_value_and_slope(T z, T& g, T& slope) {
  const T z2 = z * z;
  const T e = exp_of(T(-2) * gelu_c<T> * (z + gelu_k<T> * z2 * z));
  const T s = T(1) / (T(1) + e);
  g = z * s;
  slope = s + T(2) * z * s * (e * s) * gelu_c<T> * (T(1) + T(3) * gelu_k<T> * z2);
}

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
