#pragma once
// The coordinator actor: membership, registration, jobs and placement. Its handlers are
// short and call the plain parts (auth_gate, membership, job_table, placement); it never
// computes, so it always answers heartbeats, status and stop at once.
#include <chrono>
#include <map>
#include <memory>
#include <string>

#include <caf/stateful_actor.hpp>

#include "actors/auth_gate.hpp"
#include "actors/front_door.hpp"
#include "actors/coordinator_protocol.hpp"
#include "coordinator/job_table.hpp"
#include "coordinator/membership.hpp"

namespace glam {

struct coordinator_options {
  std::string state_dir;
  std::string secret;
  std::string listen;  // host, for status only
  // The daemon's front door (filled once published): its counters are the coordinator's
  // bytes sent and received, every connection being inbound.
  std::shared_ptr<std::unique_ptr<front_door>> door;
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds tick{200};
};

struct coordinator_state {
  static inline const char* name = "glam.coordinator";
  std::unique_ptr<auth_gate> gate;
  std::unique_ptr<job_table> jobs;
  membership members;
  std::map<std::string, hello_msg> pending_hellos;   // node -> its hello, until it proves
  std::map<std::string, caf::actor> handles;         // worker name -> its actor
  std::map<std::string, std::vector<std::string>> hosted;  // worker name -> unit names
  std::int64_t dropped_stale = 0;
  coordinator_options opts;
};

caf::behavior coordinator_actor(caf::stateful_actor<coordinator_state>* self, coordinator_options opts);

// The cluster as JSON (what `glam status --json` prints).
std::string status_json(const coordinator_state& st);
// One job as JSON; "{}" when unknown.
std::string job_json(const job_record& j);

}  // namespace glam
