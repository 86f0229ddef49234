#pragma once
// Matrix multiply on BLIS, deterministic: the small-matrix `sup` path is disabled, so an
// output row has the same bits whether it is computed alone or in any batch of rows, and
// with any thread count (docs/architecture.md, "Determinism").
//
// Legend: N rows (tokens), K inner dimension, O output columns. Row-major everywhere.
#include "kernels/tensor.hpp"

namespace glam {

// C[m,n] = alpha * op(A)[m,k] * op(B)[k,n] + beta * C, row-major with leading dimensions
// (row strides) lda, ldb, ldc. op(X) = Xᵀ when trans_x. Uses all compute threads unless
// called from inside a parallel_for item.
template <class T>
void gemm(bool trans_a, bool trans_b, index m, index n, index k, T alpha, const T* a, index lda,
          const T* b, index ldb, T beta, T* c, index ldc);

// Linear layer y[N,O] = x[N,K] · w[K,O] (no bias anywhere in GLaM).
template <class T>
void linear_forward(const T* x, const T* w, T* y, index n, index k, index o);

// Backward of linear_forward, adding into the gradients:
// dx[N,K] += dy · wᵀ (skipped when dx is null), dw[K,O] += xᵀ · dy (skipped when dw is null).
template <class T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, index n, index k, index o);

// The machine's sgemm rate on an n×n×n product with all compute threads, in FLOP/s: the
// baseline that MFU figures divide by (docs/performance.md). The best of at least 5 timed
// products spanning min_seconds, after one untimed product: on a shared machine the best
// repetition is the least disturbed one. n = 2048 and a second or more give a stable
// figure on 2 cores; smaller n runs below the cores' rate and inflates MFU.
double measure_sgemm_flops(index n = 2048, double min_seconds = 1.0);

// The BLIS configuration this process runs (architecture, kernel set), for fingerprints.
std::string blis_configuration();

}  // namespace glam
