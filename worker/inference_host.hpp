#pragma once
// The units of one serving session hosted by one worker (docs/serving.md, "The actor
// backend"): the attention shard with its KV caches and the experts the coordinator placed
// here, loaded from the session's checkpoint, and the calls that run passes on them. A plain
// class (no actors): worker/inference_actor.hpp calls it message by message, and the tests
// call it directly. It checks every call against the phase of the shard's pass:
//
//   between passes ──begin──> exchange ──write…, resume──> exchange … ──resume──> logits
//        ^   │ prepare                 │                                           │
//        │   └──────────┘              └─abort─> between passes                    │
//        └─────────────────────────────── (the next begin, prepare or abort) ──────┘
//
// read may come at an exchange or at the logits. An expert's call is stateless.
// A call that does not fit (an unknown unit or sequence, a part outside the tensor, a call
// out of phase, a token outside the vocabulary) throws inference_error naming the problem;
// a pass that fails inside is dropped (the sequences keep the tokens of the passes before).
//
// Legend: R rows of an exchange, M d_model, V vocabulary.
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "actors/inference_messages.hpp"
#include "model/generate.hpp"

namespace glam {

class inference_host {
 public:
  // Loads the assignment's units from its checkpoint (a step directory), after checking
  // that it is the step and the model the session was started with. Units already hosted are
  // kept (a unit placed here again after another worker died is added). Throws
  // inference_error or checkpoint_error.
  void load(const infer_assignment& a);
  bool hosts(const std::string& unit) const;
  std::vector<std::string> units() const;

  infer_reply call(const infer_request& r);

 private:
  struct shard_pass {
    enum class phase { idle, exchange, logits } at = phase::idle;
    std::optional<inference_exchange> exchange;
    tensor outputs;            // [R, M]: the experts' outputs being written
    std::int64_t written = 0;  // floats of outputs written
  };
  infer_reply next_stage(index shard);
  void write_part(shard_pass& p, const float_block& part);

  std::optional<inference_checkpoint> ck_;
  std::string checkpoint_;
  std::shared_ptr<const param_set> dense_;
  index max_sequences_ = 256;
  std::map<index, inference_shard> shards_;
  std::map<index, shard_pass> passes_;
  std::map<index, inference_expert> experts_;
};

}  // namespace glam
