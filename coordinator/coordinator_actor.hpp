#pragma once
// The coordinator actor: membership, registration, jobs and placement. Its handlers are
// short and call the plain parts (auth_gate, membership, job_table, placement); it never
// computes, so it always answers heartbeats, status and stop at once.
#include <chrono>
#include <functional>
#include <set>
#include <map>
#include <memory>
#include <string>

#include <caf/response_promise.hpp>
#include <caf/stateful_actor.hpp>
#include <nlohmann/json.hpp>

#include "actors/auth_gate.hpp"
#include "actors/front_door.hpp"
#include "actors/coordinator_protocol.hpp"
#include "coordinator/job_table.hpp"
#include "coordinator/membership.hpp"
#include "coordinator/step_driver.hpp"

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
  // A round (step or validation batch) that takes longer fails the job, naming the
  // workers that did not report.
  std::chrono::milliseconds step_timeout{300000};
  // The sgemm rate the MFU of the metrics is measured against (0: not measured, no MFU).
  double sgemm_flops = 0;
  // Where jobs' checkpoints go (empty: STATE/checkpoints/<job name>), and whether a job
  // starts from the newest valid checkpoint there (a resubmitted job goes on).
  std::string checkpoint_root;
  bool checkpoints = true;
  bool resume = true;
  // Testing: seeded random placements (0: the planner's).
  std::uint64_t random_placement_seed = 0;
  // Fault injection for tests: every job's gradients are poisoned at this step.
  std::int64_t inject_nonfinite_step = -1;
  // Log a summary line per committed step (embedded mode prints its own progress instead).
  bool log_steps = true;
  // Called with every committed step's metrics line (embedded mode prints progress).
  std::function<void(const job_record&, const nlohmann::json&)> on_step;
  // Called when a job ends (finished, failed or stopped).
  std::function<void(const job_record&)> on_job_end;
};

// The job being trained: its plan, the workers still to confirm their units, and the
// step driver once they all have.
struct running_job {
  std::string id;
  config cfg;
  job_plan plan;
  std::set<std::string> waiting_hosts;
  std::unique_ptr<step_driver> driver;
  double flops_per_token = 0;
  runtime_clock::time_point round_start;
  // The checkpoint being written: its step, the workers still writing, their files.
  std::string checkpoint_root;
  std::int64_t checkpoint_step = -1;
  std::set<std::string> checkpoint_waiting;
  std::vector<unit_file_info> checkpoint_files;
  std::int64_t round_serial = 0;  // tells a round's deadline from a later round's
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
  std::int64_t tensor_bytes_received = 0;  // tensor chunks sent to it (dropped): none expected
  std::unique_ptr<running_job> run;
  caf::response_promise shutdown;  // a shutdown waiting for a checkpoint to be written
  coordinator_options opts;
};

caf::behavior coordinator_actor(caf::stateful_actor<coordinator_state>* self, coordinator_options opts);

// The cluster as JSON (what `glam status --json` prints).
std::string status_json(const coordinator_state& st);
// One job as JSON; "{}" when unknown.
std::string job_json(const job_record& j);

}  // namespace glam
