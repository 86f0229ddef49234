#pragma once
// A unit actor: one attention shard, or the experts of one worker (unit_actors_of in
// worker/step_engine.hpp), with its step_engine, on a thread of its own (spawned
// detached), so that heavy kernels never keep the worker actor from answering heartbeats,
// status or stop. The worker actor checks every message (secret, epoch, sender) and hands
// it on to the unit actor it is for; a unit actor assembles chunks into tensors, feeds its
// engine, sends the engine's tensors to the worker actors hosting their destinations
// (peers' directly, never through the coordinator), and its reports to the coordinator.
//   (peers_atom, std::vector<caf::actor>)  by unit actor number: its worker's actor
//   (begin_atom, step_tag, bool train)     run a round (worker_protocol.hpp)
//   (tensor_chunk)                         a checked chunk from a peer
//   (finish_atom, step_tag, bool apply)    apply or skip, then confirm to the coordinator
// A failure (bad data, a tensor that does not fit) becomes a step_report with an error:
// errors between actors are values.
#include <atomic>
#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/tensor_chunk.hpp"
#include "actors/worker_protocol.hpp"
#include "worker/step_engine.hpp"

namespace glam {

using peers_atom = caf::atom_constant<caf::atom("peers")>;

// Shared with the worker actor, which reports them with its heartbeats.
struct compute_counters {
  std::atomic<std::int64_t> tokens_computed{0};
  std::atomic<std::int64_t> bytes_sent{0};
};

struct unit_options {
  std::string worker_name;
  int unit = 0;  // this actor's number among the job's unit actors
  job_plan plan;
  caf::actor coordinator;
  std::shared_ptr<compute_counters> counters;
};

struct unit_state {
  static inline const char* name = "glam.unit";
  unit_options opts;
  std::string unit_name;  // "<worker>/shard<s>" or "<worker>/experts"
  std::shared_ptr<const token_source> data;
  std::unique_ptr<step_engine> engine;
  std::string error;  // set when the units could not be built
  std::vector<caf::actor> peers;
  std::vector<bool> remote;  // by unit number: hosted by another worker
  step_tag tag;       // the current round
  double compute_seconds = 0;  // in the engine during the current round
  // Tensors being assembled: (round, sender, tensor id) -> chunks so far.
  std::map<std::tuple<std::int64_t, int, std::int64_t>, tensor_assembler> assembling;
};

// The token source a job's config names: synthetic, or the prepared data in data.dir
// (checked against the model). Throws with the reason.
std::shared_ptr<const token_source> open_token_source(const config& c);

caf::behavior unit_actor(caf::stateful_actor<unit_state>* self, unit_options opts);

}  // namespace glam
