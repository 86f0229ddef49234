#pragma once
// A unit actor: one attention shard, or the experts of one worker (actors/unit_layout.hpp),
// with its step engine, on a thread of its own (spawned detached), so that heavy kernels
// never keep the worker actor from answering heartbeats, status or stop. Its protocol is
// actors/unit_protocol.hpp. It takes messages from its own worker actor only (which checks
// every message from the network: secret, epoch, sender) and drops and counts anything
// else, CAF exit messages included. It assembles chunks into tensors (checked against the
// shape the job implies before anything is allocated), feeds its engine, sends the
// engine's tensors to the worker actors hosting their destinations (peers' directly, never
// through the coordinator), and its reports to the coordinator.
//
// Phases, one-shot per round (a message that does not fit the phase is dropped and counted):
//
//            begin(r)                 engine done          finish(r, apply, snapshot)
//   idle ─────────────> computing ─────────────> reported ──────────────────────> idle
//    │ ^                                          │   (validation rounds have no finish:
//    │ └──── checkpoint(k), once per k ───────────┘    begin or checkpoint follows)
//    └── checkpoint(k), once per k
//
// After a finish that asks for it, the unit actor snapshots its units (the dense state by
// one shard actor per worker, and every expert) and hands them to its worker, before it
// confirms: the worker holds them, and sends a copy to its buddy.
//
// A failure (bad data, a tensor that does not fit) becomes a step_report with an error:
// errors between actors are values.
#include <atomic>
#include <map>
#include <memory>
#include <string>
#include <tuple>

#include <caf/stateful_actor.hpp>

#include "actors/unit_protocol.hpp"
#include "worker/fault_injection.hpp"
#include "worker/step_engine.hpp"

namespace glam {

// Shared with the worker actor, which reports them with its heartbeats.
struct compute_counters {
  std::atomic<std::int64_t> tokens_computed{0};
  std::atomic<std::int64_t> bytes_sent{0};
  std::atomic<std::int64_t> not_allowed{0};  // messages to a unit actor not from its worker
  std::atomic<std::int64_t> wrong_phase{0};  // phase transitions refused
};

struct unit_options {
  std::string worker_name;
  int unit = 0;  // this actor's number in the job's unit layout
  job_plan plan;
  worker_actor worker;  // its own worker actor: the one sender it takes messages from
  coordinator_actor coordinator;
  std::shared_ptr<compute_counters> counters;
  // plan.from == restore_kind::snapshot: the snapshots its units restore from, by unit.
  std::map<std::string, unit_snapshot> states;
  std::shared_ptr<fault_injector> faults = std::make_shared<fault_injector>();  // testing: none by default
};

enum class unit_phase { idle, computing, reported };

struct unit_state {
  static inline const char* name = "glam.unit";
  unit_options opts;
  std::string unit_name;  // "<worker>/shard<s>" or "<worker>/experts"
  std::shared_ptr<const token_source> data;
  std::unique_ptr<step_engine> engine;
  caf::error error;  // set when the units could not be built
  std::vector<worker_actor> peers;
  std::vector<bool> remote;  // by unit actor number: hosted by another worker
  unit_phase phase = unit_phase::idle;
  bool begun = false;            // a round has begun since the units were built
  round_id round;                // the current (or last) round
  std::int64_t checkpointed = -1;  // the last checkpoint step written
  double compute_seconds = 0;    // in the engine during the current round
  // Tensors being assembled: (round, sender, tensor id) -> chunks so far.
  std::map<std::tuple<std::int64_t, bool, int, std::int64_t>, tensor_assembler> assembling;
};

// The token source a job's config names: synthetic, or the prepared data in data.dir
// (checked against the model). Throws with the reason.
std::shared_ptr<const token_source> open_token_source(const config& c);

unit_actor::behavior_type unit_behavior(unit_actor::stateful_pointer<unit_state> self, unit_options opts);

}  // namespace glam
