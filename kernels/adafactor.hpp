#pragma once
// Adafactor (Shazeer & Stern 2018, Algorithm 4 for matrices, Algorithm 5 for the
// unfactored case) with GLaM's settings (docs/model.md, "Adafactor"), and the rsqrt schedule.
//
// Legend: R rows, K columns of one parameter matrix (vectors are [1, n] or [n, 1]).
//
// One update, t = applied updates before this one (state.steps):
//   ρ = 1 − (t + 1)^(−0.8)                        (so the first update has ρ = 0)
//   Factored (R ≥ 128 and K ≥ 128), sums as in the paper:
//     row[i] ← ρ·row[i] + (1 − ρ)·Σ_j (G_ij² + ε1)
//     col[j] ← ρ·col[j] + (1 − ρ)·Σ_i (G_ij² + ε1)
//     V̂_ij = row[i]·col[j] / Σ_i row[i]
//   Otherwise: V̂_ij = full_ij ← ρ·full_ij + (1 − ρ)·(G_ij² + ε1)
//   U = G / sqrt(V̂);  Û = U / max(1, RMS(U) / d)                   (update clipping, d = 1)
//   X ← X − α·Û,  α = lr · max(ε2, RMS(X before the update))      (parameter scale)
//   β1 = 0: no first moment. ε1 = 1e-30, ε2 = 1e-3.
//
// Step count: the state holds t (the number of updates applied). adafactor_update uses it
// and then increments it; a skipped step (non-finite gradients) simply does not call
// adafactor_update, so it does not advance t. The learning rate is the caller's:
// lr = rsqrt_schedule(state.steps, warmup, lr_scale) taken before the call.
//
// Determinism: sums over rows run in fixed chunks of reduction_chunk_rows combined in
// chunk order, sums along a row in an order fixed by the row length; all in double. The bits depend on the
// shape only, never on the thread count. The state is float.
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/tensor.hpp"

namespace glam {

constexpr double adafactor_eps1 = 1e-30;
constexpr double adafactor_eps2 = 1e-3;
constexpr double adafactor_clip_threshold = 1.0;  // d
constexpr double adafactor_decay_exponent = 0.8;
constexpr index adafactor_factored_min_dim = 128;

// true when a [rows, cols] matrix keeps a factored second moment (both dims ≥ 128).
inline bool adafactor_factored(index rows, index cols) {
  return rows >= adafactor_factored_min_dim && cols >= adafactor_factored_min_dim;
}

// One flat float buffer of the state, by name, for checkpoints and migration.
struct adafactor_buffer {
  const char* name;  // "row", "col" (factored) or "full" (unfactored)
  float* data;
  index size;
};

struct adafactor_state {
  index rows = 0, cols = 0;
  std::int64_t steps = 0;  // t: updates applied so far
  std::vector<float> row;  // [R] factored: row sums of the second moment
  std::vector<float> col;  // [K] factored: column sums
  std::vector<float> full; // [R·K] unfactored second moment

  adafactor_state() = default;
  // Zero state for a [rows, cols] parameter, with the buffers its kind needs.
  adafactor_state(index rows, index cols);

  bool factored() const { return adafactor_factored(rows, cols); }
  // The non-empty buffers in a fixed order (row, col) or (full). Together with rows, cols
  // and steps they are the whole state: restore by constructing adafactor_state(rows,
  // cols), setting steps and copying each buffer back by name.
  std::vector<adafactor_buffer> buffers();
  // Total floats in buffers() (memory accounting).
  index elements() const;
};

// One Adafactor update of param [rows, cols] with grad [rows, cols]. A default-constructed
// state is sized on the first call; a state of another shape is an error (std::logic_error
// naming both shapes). Advances state.steps by one.
void adafactor_update(float* param, const float* grad, index rows, index cols, adafactor_state& state,
                      double lr);

// lr(t) = lr_scale · rsqrt(max(t + 1, warmup)), t = applied updates before this one.
// Throws std::invalid_argument for t < 0 or warmup < 1.
double rsqrt_schedule(std::int64_t t, std::int64_t warmup, double lr_scale);

}  // namespace glam
