#pragma once
// The worker actor: registers with the coordinator (protocol version, build fingerprint,
// the secret by challenge and response), heartbeats with its counters, hosts the units the
// coordinator assigns, and answers only the coordinator and peers that proved the secret.
#include <chrono>
#include <memory>
#include <string>

#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>

#include "actors/auth_gate.hpp"
#include "actors/worker_protocol.hpp"
#include "worker/unit_actor.hpp"

namespace glam {

using register_atom = caf::atom_constant<caf::atom("register")>;
using host_deadline_atom = caf::atom_constant<caf::atom("hostdline")>;

struct worker_options {
  std::string name;
  std::string secret;
  std::string listen_host;
  std::uint16_t listen_port = 0;
  std::chrono::milliseconds heartbeat{500};
  std::chrono::milliseconds request_timeout{10000};
  // This worker's measured sgemm rate (GFLOP/s), reported with every heartbeat: placement
  // weighs workers by it.
  double gflops = 1.0;
  // Embedded mode (glam train --workers N): the other workers of this process by name.
  // They are reached by local messages instead of a connection to their address.
  std::shared_ptr<std::map<std::string, caf::actor>> local_peers;
};

struct worker_state {
  static inline const char* name = "glam.worker";
  worker_options opts;
  std::unique_ptr<auth_gate> gate;
  caf::actor coordinator;
  std::string client_nonce;
  caf::response_promise registered;
  std::map<std::string, hello_msg> pending_hellos;
  worker_stats stats;
  std::int64_t epoch = 0;
  bool hosting = false;
  job_plan plan;
  // Peers by name: connected directly on the address the coordinator handed out (never
  // through the coordinator, never by CAF's automatic connections), and authenticated.
  struct peer {
    std::string address;
    caf::actor handle;
  };
  std::map<std::string, peer> peers;
  // The pending answer to the coordinator's host request, and the peers it waits for.
  caf::response_promise host_promise;
  std::map<std::string, std::string> expected_peers;  // name -> address
  std::string host_failure;
  // The job's unit actors, and those hosted here by number (unit_actor.hpp).
  unit_actors actors;
  std::map<int, caf::actor> units;
  std::shared_ptr<compute_counters> counters = std::make_shared<compute_counters>();
};

// (host_atom, job_plan) answers once every other worker of the plan is connected and
// authenticated in both directions, or with the peer that could not be reached.
// (register_atom, coordinator, published port) -> result_msg: the daemon's one local request; the worker
// runs the handshake itself, so the coordinator monitors and messages this very actor.
caf::behavior worker_actor(caf::stateful_actor<worker_state>* self, worker_options opts);

}  // namespace glam
