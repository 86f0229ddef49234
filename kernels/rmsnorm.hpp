#pragma once
// RMSNorm (GLaM: scale only, no bias, eps 1e-6), forward and backward.
//   y = x · rsqrt(mean(x²) + eps) · scale
//
// Legend: N rows (B·T tokens), M d_model. Row-major.
#include "kernels/tensor.hpp"

namespace glam {

constexpr double rmsnorm_eps = 1e-6;

// x [N, M], scale [M] -> y [N, M]; saves rstd [N] = rsqrt(mean(x²) + eps) for backward.
// Rows are independent: a row's bits do not depend on the other rows or the thread count.
template <class T>
void rmsnorm_forward(const T* x, const T* scale, T* y, T* rstd, index n, index m);

// Adds the gradients: dx [N, M] += ∂L/∂x (skipped when null), dscale [M] += ∂L/∂scale
// (skipped when null; summed over rows in fixed chunks of reduction_chunk_rows, combined in
// chunk order).
template <class T>
void rmsnorm_backward(const T* x, const T* scale, const T* rstd, const T* dy, T* dx, T* dscale,
                      index n, index m);

}  // namespace glam
