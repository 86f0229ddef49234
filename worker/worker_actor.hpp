#pragma once
// The worker actor (protocol: actors/worker_protocol.hpp): registers with the coordinator
// (protocol version, build fingerprint, the secret by challenge and response), heartbeats
// with its counters, hosts the units the coordinator assigns in unit actors
// (worker/unit_actor.hpp), and relays every message for them after checking it.
//
// Who may send what (everything else is dropped and counted):
//   register, shutdown          this process only
//   tick, host deadline         this actor only
//   hello, auth                 any node (the handshake)
//   ping                        nodes that proved the secret
//   host, release, begin, finish, checkpoint, evict, drained
//                               the coordinator this worker registered with, of its epoch
//   infer host, infer, infer end
//                               the coordinator this worker registered with (sessions)
//   state chunks, fetch         peers of the job (nodes that proved the secret)
//   snapshot                    this worker's unit actors
//   tensor chunks               the peer worker hosting the sending unit actor
//   CAF exit                    this process (the daemon, its unit actors ending)
//   CAF down                    only from the actor it names, which this worker monitors
//
// Phases (a message that does not fit the phase is refused with wrong_phase):
//
//   registering ──registered──> idle ──host(plan)──> connecting ──every peer connected──> hosting
//        ^                       ^ ^                   │  ^                                │
//        │                       │ └─failed, deadline──┘  └──────────host(newer plan)──────┤
//        │                       └────────────────────────release──────────────────────────┤
//        └────────────── evict (declared dead, e.g. after a stop; from any phase) ──────────┘
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <tuple>
#include <string>

#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>

#include "actors/auth_gate.hpp"
#include "actors/relay.hpp"
#include "actors/runtime_config.hpp"
#include "actors/unit_layout.hpp"
#include "actors/worker_protocol.hpp"
#include "worker/fault_injection.hpp"
#include "worker/inference_actor.hpp"
#include "worker/snapshot_store.hpp"
#include "worker/unit_actor.hpp"

namespace glam {

struct worker_options {
  std::string name;
  std::string secret;
  std::string listen_host;
  std::chrono::milliseconds heartbeat{500};
  std::chrono::milliseconds request_timeout{10000};
  // This worker's measured sgemm rate (GFLOP/s), reported with every heartbeat: placement
  // weighs workers by it.
  double gflops = 1.0;
  // The memory it offers for units and their snapshots (bytes; 0: no limit): placement
  // puts no more on it.
  std::int64_t memory_limit = 0;
  // Where a job's data and checkpoints may be (a plan naming a path outside is refused).
  std::string data_root;
  std::string checkpoint_root;  // empty: jobs may not checkpoint on this worker
  // How this process reaches peers (through its relay); daemons only.
  connector_actor connector;
  // The relay's counters, reported with the heartbeat (daemons only).
  const relay_counters* relay = nullptr;
  // Embedded mode (glam train --workers N): the other workers of this process by name.
  // They are reached by local messages instead of a connection to their address.
  std::shared_ptr<std::map<std::string, worker_actor>> local_peers;
  // Daemons: where the coordinator is, to reach it again when it is lost (a restart), with
  // a bounded backoff, for at most coordinator_timeout; then the worker gives up.
  std::string coordinator_host;
  int coordinator_port = 0;
  std::chrono::milliseconds coordinator_timeout{0};  // 0: a lost coordinator ends the worker
  // Testing: a fault at a named point (fault_injection.hpp); none by default.
  std::shared_ptr<fault_injector> faults = std::make_shared<fault_injector>();
};

enum class worker_phase { registering, idle, connecting, hosting };
// (connecting: every peer of the plan connects, and every unit state it restores comes in.)
const char* to_string(worker_phase p);

struct worker_state {
  static inline const char* name = "glam.worker";
  worker_options opts;
  std::unique_ptr<auth_gate> gate;
  worker_phase phase = worker_phase::registering;
  bool ticking = false;  // the heartbeat timer runs (started once)
  std::uint16_t listen_port = 0;
  coordinator_actor coordinator;
  std::string client_nonce;
  caf::typed_response_promise<std::string> registered;
  worker_stats stats;
  refusal_counts refused;
  std::int64_t epoch = 0;
  job_plan plan;
  // Peers by name: connected directly on the address the coordinator handed out (never
  // through the coordinator, never by CAF's automatic connections), and authenticated.
  struct peer {
    std::string address;
    worker_actor handle;
  };
  std::map<std::string, peer> peers;
  // The pending answer to the coordinator's host request, and the peers it waits for.
  caf::typed_response_promise<std::uint64_t> host_promise;
  std::uint64_t fetched_bytes = 0;  // state bytes fetched from peers for the plan
  std::map<std::string, std::string> expected_peers;  // name -> address
  std::string host_failure;
  // The job's unit actors, and those hosted here by number (unit_layout.hpp).
  std::optional<unit_layout> layout;
  std::map<int, unit_actor> units;
  std::shared_ptr<compute_counters> counters = std::make_shared<compute_counters>();
  // Snapshots held (own and buddy copies), states coming in (by sender, unit, step), and the
  // states the plan's units restore from as they are gathered (by unit).
  snapshot_store store;
  std::map<std::tuple<std::string, std::string, std::int64_t>, state_assembler> incoming;
  std::map<std::string, unit_snapshot> gathered;
  std::set<std::string> wanted;  // units whose state is still to come for the plan
  // A lost coordinator: when the worker started to look for it again, and the next wait.
  std::optional<std::chrono::steady_clock::time_point> lost_since;
  std::chrono::milliseconds backoff{200};
  // Registration attempts so far: an eviction and a dropped connection can each start one,
  // and only the newest one's answer counts (an older one's request may time out on the
  // connection that dropped, after the newer one succeeded).
  std::uint64_t registration_attempt = 0;
  // Serving sessions hosted here (docs/serving.md, "The actor backend"): an inference
  // actor per session, at most max_inference_sessions.
  std::map<std::string, inference_unit_actor> sessions;
};

// Why a job plan cannot be hosted by worker `name` with these roots (empty when it can):
// the placement, the config, the number of unit actors on this worker, and the job's data
// and checkpoint paths.
std::string plan_problem(const job_plan& plan, const std::string& name, const std::string& data_root,
                         const std::string& checkpoint_root);

worker_actor::behavior_type worker_behavior(worker_actor::stateful_pointer<worker_state> self, worker_options opts);

}  // namespace glam
