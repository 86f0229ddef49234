#pragma once
// Inference split into the work of each logical unit (docs/serving.md;
// docs/serving.md), as plain functions the actor runtime calls message by message, the way
// model/units.hpp splits a training step. The single-thread reference (model/generate.hpp)
// calls the same functions in the runtime's order.
//
// A shard-side `inference_shard` holds the dense parameters and one KV cache per sequence
// (one request). It runs *passes*: a pass appends tokens to any set of its open sequences —
// a whole prompt (prefill), one token (a decode step), or a mix of both, so sequences of
// different lengths join and leave a running batch between passes (continuous batching).
// The rows of all the pass's tokens travel to the experts in one buffer per MoE layer.
//
// One pass (MoE layers numbered 0..moe_layers-1, in block order):
//   shard.begin_pass({{id, tokens}, …})
//   while (auto x = shard.forward_next())   // x->rows [R, M]: expert e's rows are
//     { each expert e: out_e = expert.forward(x->moe, rows [offset e, offset e + count e))
//       shard.forward_resume(outputs [R, M], the same row order) }
//   shard.logits()                           // [items, V]: each item's last position
// A pass that cannot finish (an expert's worker died) is dropped with abort_pass(): the
// sequences keep the tokens of the passes before, and the pass can be run again.
//
// Capacity at inference: nothing is dropped. The tokens of a pass form one gating group
// (GShard top-2, gates renormalised over the two choices, policy `all`, no random
// dispatch) with capacity C = the number of tokens in the pass: an expert gets at most one
// row per token, so every token keeps both its choices. A token's result therefore never
// depends on which other tokens share its pass.
//
// Determinism: every row of every kernel here is computed the same way whether it is in a
// prefill or a decode step, alone or in a batch, on any thread count (BLIS rows; the KV-cache
// attention of kernels/cached_attention.hpp computes each query by itself). So the logits of
// a position are bitwise the same whether the sequence was prefilled at once or decoded
// token by token, and whatever the batch it ran in; rebuilding a sequence's cache by
// prefilling its tokens again (a replay after a failure) gives back the same bits.
//
// Legend: R rows (tokens) of a pass, M d_model, H d_ff, D = heads·d_head, V vocabulary,
// E experts, L a sequence's length (tokens in its cache, at most seq_len).
#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <vector>

#include "configs/config.hpp"
#include "model/params.hpp"

namespace glam {

// A request's input is wrong (too long, empty, a token outside the vocabulary, an unknown
// sequence): the message names the field and the fix. Internal invariants throw
// std::logic_error (GLAM_CHECK) instead.
class inference_error : public std::runtime_error {
 public:
  explicit inference_error(const std::string& message) : std::runtime_error(message) {}
};

using sequence_id = std::int64_t;

// What one pass appends to one sequence.
struct pass_item {
  sequence_id sequence = 0;
  std::vector<std::int32_t> tokens;  // at least one
};

// One MoE layer's exchange of a pass: the packed rows of all its tokens
// (kernels/packed_dispatch_combine.hpp), expert-major.
struct inference_exchange {
  index moe = 0;              // MoE layer number (0-based, in block order)
  std::vector<index> counts;  // [E] rows for each expert
  std::vector<index> offset;  // [E + 1] first row of each expert; offset[E] = R
  tensor rows;                // [R, M]
};

class inference_shard {
 public:
  // dense_params: the layout of dense_param_layout(c.model) (shared, read-only: several
  // shards in one process may hold one copy). max_sequences bounds the open sequences.
  inference_shard(const config& c, std::shared_ptr<const param_set> dense_params, index max_sequences = 256);
  inference_shard(const config& c, param_set dense_params, index max_sequences = 256);
  ~inference_shard();
  inference_shard(inference_shard&&) noexcept;
  inference_shard& operator=(inference_shard&&) noexcept;

  const config& cfg() const;
  const param_set& params() const;

  // Sequences. A sequence holds at most seq_len tokens (its KV cache is allocated at open).
  // open throws inference_error for an id already open or when max_sequences are open;
  // close of an unknown id is a no-op. Neither may be called while a pass is in flight.
  void open_sequence(sequence_id id);
  void close_sequence(sequence_id id);
  bool is_open(sequence_id id) const;
  index length(sequence_id id) const;  // tokens in the cache
  index open_sequences() const;
  index max_sequences() const;

  // Starts a pass. Throws inference_error (naming the sequence and the fix) for an unknown
  // or repeated sequence, an empty token list, a token outside [0, V), or tokens that
  // would take a sequence past seq_len. all_positions = true asks logits() for every
  // token of the pass (items in order, tokens in order) instead of each item's last.
  void begin_pass(std::vector<pass_item> items, bool all_positions = false);
  // Runs to the next MoE layer and returns its exchange, or nullopt when the pass is done
  // (the logits are ready and the sequences hold the new tokens).
  std::optional<inference_exchange> forward_next();
  // outputs [R, M]: the experts' outputs for the exchange's rows, in its order.
  void forward_resume(const tensor& expert_outputs);
  // Drops the pass in flight; the sequences stay as they were before it.
  void abort_pass();
  bool pass_in_flight() const;
  // [items, V] (or [Σ tokens, V] with all_positions): valid once forward_next() returned
  // nullopt, until the next begin_pass.
  const tensor& logits() const;

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// The forward of expert `expert` of MoE layer `moe` on `count` rows [count, M] into out
// [count, M]. Rows are independent: rows of many shards, sequences and requests may come in
// one call, in any order. params: the layout of expert_param_layout(c.model) (a training
// expert_unit's params() serve as they are).
void expert_forward_rows(const config& c, const param_set& params, index moe, const float* rows, index count,
                         float* out);

// The expert side of inference: expert e of every MoE layer, forward only, stateless
// (const, safe to call from several threads at once).
class inference_expert {
 public:
  inference_expert(const config& c, index expert, std::shared_ptr<const param_set> params);
  inference_expert(const config& c, index expert, param_set params);

  index expert() const { return expert_; }
  const param_set& params() const { return *params_; }
  // rows [count, M] -> [count, M] (count may be 0).
  tensor forward(index moe, const float* rows, index count) const;
  void forward(index moe, const float* rows, index count, float* out) const;

 private:
  config cfg_;
  index expert_;
  std::shared_ptr<const param_set> params_;
};

}  // namespace glam
