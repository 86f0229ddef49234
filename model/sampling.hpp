#pragma once
// Choosing the next token from a position's logits: greedy at temperature 0, else
// softmax(logits / temperature) restricted to the top-p nucleus, drawn from a seeded
// counter-based stream (kernels/random.hpp). The draw for a sequence's n-th generated token
// is a pure function of (seed, n) and the logits, so a request with a seed gives the same
// text every time, in any batch, and a replay after a failure draws the same tokens.
//
// Legend: V vocabulary.
#include <cstdint>

#include "kernels/tensor.hpp"

namespace glam {

struct sampling_options {
  double temperature = 1.0;  // 0: greedy (argmax, ties to the lower token id); else > 0
  double top_p = 1.0;        // in (0, 1]: keep the fewest most likely tokens whose mass ≥ top_p
  std::uint64_t seed = 0;
};

// Throws inference_error (model/inference.hpp) naming the field, the value and what is
// allowed: temperature must be finite and ≥ 0, top_p in (0, 1].
void validate_sampling(const sampling_options& o);

// The token for draw number `draw` (0 for a sequence's first generated token, 1 for the
// next, …) from logits [V]. Probabilities are computed in double, in token order; the
// nucleus is the prefix of the tokens sorted by probability (ties to the lower id) whose
// mass first reaches top_p; u ~ U[0, 1) at counter `draw` of the stream of `seed` picks
// the token where the running mass of the nucleus (in that order) first exceeds u times its
// total. Throws inference_error when a logit is NaN or infinite.
std::int32_t sample_token(const float* logits, index vocab, const sampling_options& o, std::uint64_t draw);

}  // namespace glam
