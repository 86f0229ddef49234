#pragma once
// Dispatch and combine in the packed layout, for inference: the dual pair of
// dispatch_combine.hpp without padding rows, so that an expert computes exactly the rows
// routed to it (an expert no token chose computes nothing; at batch 1 only the two chosen
// experts read their weights).
//
// Legend: N tokens in the group, M d_model, E experts, R = Σ_e counts[e] packed rows.
//
// Layout [R, M], expert-major: expert e's rows are [offset[e], offset[e] + counts[e]),
// offset[e] = counts[0] + … + counts[e − 1], in slot order. It holds the same rows, in the
// same order, as the non-padding rows of the [E, C, M] layout for the same routing.
//
// Inference only (no backward): training keeps the fixed [E, C, M] layout, whose weight
// gradients must reduce over a placement-free shape (docs/architecture.md, "Determinism").
#include <vector>

#include "kernels/gating.hpp"
#include "kernels/tensor.hpp"

namespace glam {

// offset[e] of every expert, and R as offset[E] (E + 1 values).
std::vector<index> packed_offsets(const std::vector<index>& counts);

// rows [R, M] (written): row offset[e] + slot = x[s] for every kept choice (e, slot) of s.
template <class T>
void dispatch_packed_forward(const T* x, const basic_routing<T>& route, T* rows, index m);

// y [N, M] (written): y[s] = w1·out[e1, slot1] + w2·out[e2, slot2] over the kept choices,
// first choice then second, zero for a token that kept neither: the same arithmetic as
// combine_forward, so the bits equal it for the same expert outputs.
template <class T>
void combine_packed_forward(const T* expert_out, const basic_routing<T>& route, T* y, index m);

}  // namespace glam
