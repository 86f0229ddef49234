#pragma once
// The inference backend on the actor runtime (docs/serving.md, "The actor backend"): a
// serving session on a cluster — the attention shard (dense parameters, the KV caches) and
// every expert on workers, each unit loaded by its worker from the checkpoint — driven one
// step at a time through the coordinator, which places the units, routes each call to the
// worker hosting its unit, and places a lost worker's units again on a survivor.
//
// A pass runs in the order of reference_inference::run_pass: the shard runs to each MoE
// layer and hands out the rows of all the pass's tokens in one buffer; the rows of each
// expert go to that expert (all experts at once; rows are independent, so a large buffer
// travels in parts without changing a bit); the outputs go back to the shard in the
// buffer's order. The units are the same code as the in-process reference, so the logits
// are bitwise the reference's.
//
// Faults (the contract of inference_backend.hpp): when a call fails, the backend waits for
// the session to have every unit loaded again. A shard of a new generation holds no
// sequence: the step reports every open sequence lost, and the scheduler replays them. An
// expert placed again costs no cache: the shard drops the pass and the backend runs it
// again. A session that cannot go on (no worker left, a unit that cannot be loaded) throws
// inference_backend_error.
#include <memory>
#include <set>
#include <string>

#include <caf/scoped_actor.hpp>

#include "actors/coordinator_protocol.hpp"
#include "model/generate.hpp"
#include "serve/inference_backend.hpp"

namespace glam {

class actor_backend : public inference_backend {
 public:
  // Starts a session of the checkpoint on the cluster of `coordinator` (reached through
  // sys, which must outlive the backend; a client connection's, or an embedded cluster's)
  // and waits until every unit is loaded. where: the cluster, for describe(). Throws
  // inference_backend_error with the coordinator's reason when it cannot start.
  actor_backend(caf::actor_system& sys, coordinator_actor coordinator, const inference_checkpoint& ck,
                std::string where, index max_sequences = 256);
  ~actor_backend() override;  // ends the session

  const config& cfg() const override { return cfg_; }
  index max_sequences() const override { return max_sequences_; }
  std::string describe() const override;
  step_result run_step(const step_request& request) override;

  // The session: every unit, its worker and its generation (as of the last step that
  // needed to ask).
  const infer_assignment& session() const { return view_; }
  // Asks the coordinator where the units are now (waits while some are being loaded).
  // Not during a step.
  const infer_assignment& refresh_session() {
    wait_for_session();
    return view_;
  }
  // Passes run again after an expert was lost, and steps whose sequences were lost.
  std::int64_t passes_repeated() const { return passes_repeated_; }
  std::int64_t shards_lost() const { return shards_lost_; }

 private:
  infer_reply call(infer_request r);
  infer_request request(const std::string& unit, infer_op op) const;
  tensor whole_tensor(const infer_reply& first, const std::string& unit);
  tensor run_pass(const std::vector<pass_item>& items);
  void wait_for_session();

  caf::actor_system& sys_;
  coordinator_actor coordinator_;
  std::unique_ptr<caf::scoped_actor> self_;
  config cfg_;
  std::string where_;
  index max_sequences_;
  infer_assignment view_;
  std::set<sequence_id> open_;  // the sequences the shard holds
  std::int64_t passes_repeated_ = 0, shards_lost_ = 0;
};

}  // namespace glam
