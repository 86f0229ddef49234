#pragma once
// Dispatch and combine, the dual pair that moves token rows into the per-expert layout and
// back (GShard's einsums "GSEC,GSM->EGCM" and "GSEC,EGCM->GSM" for one group), forward and
// backward, driven by the routing of kernels/gating.hpp.
//
// Legend: N tokens in the group, M d_model, E experts, C capacity.
//
// Layout [E, C, M]: row e·C + slot. The rows of expert e are the contiguous block
// [e·C, (e+1)·C), so a caller can slice any subset of experts (experts may live in other
// processes); within a block, rows counts[e] .. C − 1 are padding and are always zero.
#include "kernels/gating.hpp"
#include "kernels/tensor.hpp"

namespace glam {

// buffer [E, C, M] (written): row (e, slot) = x[s] for every kept choice, zero elsewhere.
template <class T>
void dispatch_forward(const T* x, const basic_routing<T>& route, T* buffer, index m);

// dx [N, M] += d_buffer[e1, slot1] + d_buffer[e2, slot2] for the kept choices (first
// choice added first). Padding rows of d_buffer are ignored.
template <class T>
void dispatch_backward(const T* d_buffer, const basic_routing<T>& route, T* dx, index m);

// y [N, M] (written): y[s] = w1·out[e1, slot1] + w2·out[e2, slot2] over the kept choices,
// first choice then second; zero for a token that kept neither.
template <class T>
void combine_forward(const T* expert_out, const basic_routing<T>& route, T* y, index m);

// From dy [N, M]: d_out [E, C, M] (written; padding rows zero): row (e_k, slot_k) = w_k·dy[s];
// dweight1, dweight2 [N] += dy[s]·out[e_k, slot_k] for kept choices (nothing for dropped
// ones), the gradients gating_backward takes. Either dweight pointer may be null.
template <class T>
void combine_backward(const T* expert_out, const T* dy, const basic_routing<T>& route, T* d_out,
                      T* dweight1, T* dweight2, index m);

}  // namespace glam
