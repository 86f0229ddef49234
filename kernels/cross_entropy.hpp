#pragma once
// Output layer and loss of GLaM, forward and backward fused: logits through the tied
// embedding, softmax cross-entropy, optional z-loss.
//   logits = (h · M^-1/2) · Eᵀ                     [N, V]
//   lse    = logsumexp(logits_row),  ce_row = lse − logits[row, target]
//   loss   = Σ_rows (ce_row + z_weight · lse²) · loss_scale
// The caller passes loss_scale = 1 / (tokens in the global batch), so the gradients it
// gets are those of its share of the one global loss (docs/model.md, "The loss").
//
// Legend: N rows (B·T tokens), M d_model, V vocabulary. h [N, M]; E [V, M]; targets [N] int32.
// Runs in blocks of cross_entropy_block_rows rows, so that [N, V] logits never exist at once.
#include <cstdint>

#include "kernels/tensor.hpp"

namespace glam {

// Rows per block: fixed, because dE sums over the rows block by block (the GEMM's k
// dimension), and its bits must depend on the shape only.
constexpr index cross_entropy_block_rows = 512;

struct cross_entropy_sums {
  double ce = 0;  // Σ_rows ce_row (not scaled by loss_scale)
  double z = 0;   // Σ_rows z_weight · lse_row² (not scaled by loss_scale)
};

// Returns the sums (accumulated in double in row order). When dh / dE are not null, adds the
// gradients of loss into dh [N, M] and dE [V, M]. When row_ce is not null, writes ce_row [N]
// (a row's value does not depend on the other rows: usable for per-token evaluation).
// Throws (naming the row and target) on a target outside [0, V).
template <class T>
cross_entropy_sums cross_entropy(const T* h, const T* embedding, const std::int32_t* targets, T* dh,
                                 T* dembedding, T* row_ce, index n, index m, index vocab,
                                 double z_weight, double loss_scale);

// logits [N, V] = (h · M^-1/2) · Eᵀ, for generation and evaluation.
template <class T>
void output_logits(const T* h, const T* embedding, T* logits, index n, index m, index vocab);

}  // namespace glam
