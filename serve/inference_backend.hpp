#pragma once
// What the serving core (serve/batch_scheduler.hpp) asks of the machinery that runs the
// model: one step of continuous batching at a time. A step frees the caches of the
// sequences that left, opens fresh caches for the ones that join (or must be rebuilt), and
// runs one pass (model/inference.hpp) that appends tokens to any set of open sequences:
// whole prompts (prefill), one token each (decode), or both. The experts must get the rows
// of all the pass's tokens of a layer in one buffer per shard (continuous batching's whole
// point); the reference backend does it through reference_inference::run_pass.
//
// Implementations: serve/reference_backend.hpp (the whole model in this process). A backend
// on the actor runtime (a coordinator's shards and experts on workers) implements the same
// interface; docs/serving.md says what it must guarantee.
//
// Contract (the scheduler relies on every point):
// - run_step is called from one thread at a time, never concurrently; it blocks until the
//   step is done or has failed. A backend may compute on the calling thread or elsewhere.
// - Order inside a step: close, then open, then the pass. Closing an id that is not open is
//   a no-op; opening an id that is open is a logic error (the scheduler never does it).
// - items: at most one per sequence, each with at least one token, every item's sequence
//   open after the step's opens; the tokens go to the end of the sequence's cache.
// - Bits: the logits of an item must not depend on the other items of the pass, nor on the
//   passes the sequence shared before (the inference units give the same bits alone or
//   batched), nor on whether its cache was rebuilt by a replay. This is what makes a seeded
//   completion the same text in any batch and after a failure.
// - A backend that loses sequences' caches (the process holding a shard died) reports them
//   in step_result::lost: the pass did not happen for anyone (no logits); the lost sequences
//   are closed (their ids may be opened again), the others keep the tokens they had before
//   the step. The scheduler then opens the lost ones again and feeds each the tokens it
//   needs to rebuild its cache (generation_state::replay_input) in the next step. A lost
//   expert whose parameters can be loaded again loses no cache: the backend re-runs the
//   pass itself and reports nothing.
// - A backend that cannot run the step at all throws inference_backend_error (the message
//   says why and what to do); the sequences of that step's items are then closed by the
//   scheduler in its next step and their requests fail. The backend must stay usable for
//   other sequences.
//
// Legend: V vocabulary.
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "kernels/tensor.hpp"
#include "model/inference.hpp"

namespace glam {

class inference_backend_error : public std::runtime_error {
 public:
  explicit inference_backend_error(const std::string& message) : std::runtime_error(message) {}
};

// One step of continuous batching.
struct step_request {
  std::vector<sequence_id> close;  // sequences that left: their caches are freed first
  std::vector<sequence_id> open;   // sequences that join (or are rebuilt): fresh, empty caches
  std::vector<pass_item> items;    // the pass; may be empty (a step that only closes)
};

struct step_result {
  // [items, V]: the logits of each item's last token, items in the request's order. Empty
  // when there were no items or when sequences were lost.
  tensor logits;
  // Sequences whose caches the backend lost; non-empty means the pass did not happen.
  std::vector<sequence_id> lost;
};

class inference_backend {
 public:
  virtual ~inference_backend() = default;

  // The served model's config (model shape: seq_len, vocab_size; name).
  virtual const config& cfg() const = 0;
  // Sequences that may be open at once (each holds a KV cache of seq_len positions).
  virtual index max_sequences() const = 0;
  // Where the model runs, for logs and /health ("in-process reference (4 experts)").
  virtual std::string describe() const = 0;

  virtual step_result run_step(const step_request& request) = 0;
};

}  // namespace glam
