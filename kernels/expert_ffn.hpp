#pragma once
// Expert FFN of an MoE layer, forward and backward. GLaM's experts are not gated:
//   h = relu(x·W1),  y = h·W2
// and `expert_activation = gated_gelu` (the config key) selects the dense layer's gated GELU instead
// (gelu_ffn.hpp; the same kernels, with a gate matrix Wg).
//
// Legend: R rows given to the expert (its dispatch buffer: shards × capacity, padding rows
// zero), M d_model, H d_ff. x, y [R, M]; Wg, W1 [M, H]; W2 [H, M]. Rows are independent.
#include "kernels/tensor.hpp"

namespace glam {

// Saves h [R, H] (relu(p) > 0 exactly where p > 0, so h is also the backward's mask).
template <class T>
void relu_ffn_forward(const T* x, const T* w1, const T* w2, T* h, T* y, index rows, index m,
                      index hdim);

// Adds dx [R, M], dW1 [M, H], dW2 [H, M] (each skipped when null). Allocates R·H scratch.
template <class T>
void relu_ffn_backward(const T* x, const T* w1, const T* w2, const T* h, const T* dy, T* dx, T* dw1,
                       T* dw2, index rows, index m, index hdim);

enum class ffn_activation { relu, gated_gelu };

// One expert's weights and weight gradients; wg / dwg are used by gated_gelu only.
template <class T>
struct expert_weights {
  const T* wg = nullptr;
  const T* w1 = nullptr;
  const T* w2 = nullptr;
};
template <class T>
struct expert_gradients {
  T* dwg = nullptr;
  T* dw1 = nullptr;
  T* dw2 = nullptr;
};

// Saved activations per row: H for relu (h), 3·H for gated_gelu (a, u, h).
index expert_saved_per_row(ffn_activation act, index hdim);

// Dispatches to relu_ffn_* or gelu_ffn_*; `saved` holds rows · expert_saved_per_row values.
template <class T>
void expert_ffn_forward(ffn_activation act, const T* x, const expert_weights<T>& w, T* saved, T* y,
                        index rows, index m, index hdim);
template <class T>
void expert_ffn_backward(ffn_activation act, const T* x, const expert_weights<T>& w, const T* saved,
                         const T* dy, T* dx, const expert_gradients<T>& g, index rows, index m,
                         index hdim);

}  // namespace glam
