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
// The same bits as relu_ffn_backward_rows followed by relu_ffn_backward_weights.
template <class T>
void relu_ffn_backward(const T* x, const T* w1, const T* w2, const T* h, const T* dy, T* dx, T* dw1,
                       T* dw2, index rows, index m, index hdim);

// The backward in two parts, for an expert whose rows arrive shard by shard while its weight
// gradients must reduce over the fixed [S·C, M] layout (docs/architecture.md, "Determinism"):
// - rows now: for the rows at hand, the input gradient and the gradient at the
//   pre-activations (dpre, kept by the caller until every row is in);
// - weights later: dW1 = xᵀ·dpre, dW2 = hᵀ·dy over all rows at once.
// Rows are independent (BLIS sup is off), so dpre and dx of a row have the same bits however
// the rows are split into calls, and the pair costs no more GEMMs than one backward.

// Writes dpre [R, H] = (dy·W2ᵀ) ⊙ relu'(h) and adds dx [R, M] += dpre·W1ᵀ (dx may be null).
template <class T>
void relu_ffn_backward_rows(const T* w1, const T* w2, const T* h, const T* dy, T* dx, T* dpre,
                            index rows, index m, index hdim);
// Adds dW1 [M, H] += xᵀ·dpre and dW2 [H, M] += hᵀ·dy (each skipped when null).
template <class T>
void relu_ffn_backward_weights(const T* x, const T* h, const T* dy, const T* dpre, T* dw1, T* dw2,
                               index rows, index m, index hdim);

// The gated-GELU expert (a = x·Wg, u = x·W1, h = gelu(a) ⊙ u) split the same way: rows now
// writes da = dh ⊙ u ⊙ gelu'(a) and du = dh ⊙ gelu(a) (dh = dy·W2ᵀ) and adds
// dx += da·Wgᵀ + du·W1ᵀ; da and du may be a and u themselves (overwritten in place, since
// the weights part needs neither). Allocates R·H scratch. The same bits as
// gelu_ffn_backward, which it splits.
template <class T>
void gated_ffn_backward_rows(const T* wg, const T* w1, const T* w2, const T* a, const T* u,
                             const T* dy, T* dx, T* da, T* du, index rows, index m, index hdim);
// Adds dWg += xᵀ·da, dW1 += xᵀ·du, dW2 += hᵀ·dy (each skipped when null).
template <class T>
void gated_ffn_backward_weights(const T* x, const T* h, const T* dy, const T* da, const T* du,
                                T* dwg, T* dw1, T* dw2, index rows, index m, index hdim);

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

// The split backward through the same dispatch: `pre_grads` holds rows ·
// expert_pre_grads_per_row values (dpre for relu; da then du, each [R, H], for gated_gelu).
index expert_pre_grads_per_row(ffn_activation act, index hdim);
template <class T>
void expert_ffn_backward_rows(ffn_activation act, const expert_weights<T>& w, const T* saved,
                              const T* dy, T* dx, T* pre_grads, index rows, index m, index hdim);
template <class T>
void expert_ffn_backward_weights(ffn_activation act, const T* x, const T* saved, const T* dy,
                                 const T* pre_grads, const expert_gradients<T>& g, index rows,
                                 index m, index hdim);

}  // namespace glam
