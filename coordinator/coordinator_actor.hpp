#pragma once
// The coordinator actor (protocol: actors/coordinator_protocol.hpp): membership,
// registration, jobs, placement, and the step protocol of the running job. Its handlers are
// short and call the plain parts (auth_gate, membership, job_table, placement, step_driver);
// it never computes, so it always answers heartbeats, status and stop at once.
//
// Who may send what (everything else is dropped and counted in status):
//   hello, auth                      any node (the handshake)
//   heartbeat, leave                 registered workers
//   step_report, applied, checkpoint_report
//                                    unit actors of the running job, on the node of the
//                                    worker hosting them, of the current epoch
//   submit, status, job status, stop nodes that proved the secret
//   infer start                      nodes that proved the secret
//   infer wait, infer, infer end     the node of the client that started the session
//   shutdown                         this process
//   tick, deadline                   this actor
//   CAF exit                         this process (the daemon stopping it)
//   CAF down                         only from the worker actor it names
//
// The running job's phases (running_job::enter checks every transition against this table):
//
//   ┌─> placing ──every worker hosts its units──> computing <─────────────────────────┐
//                                                │  ^  │                            │
//                        a validation round done │  │  │ a training round reported  │
//                        (the next one begins) ──┘  │  v                            │
//                                                   │  applying ──every unit actor ─┤
//                                                   │              applied, no      │
//                                                   │              checkpoint due   │
//   │                                               └── checkpointing <─────────────┘
//   │                                                   (a checkpoint is due after a
//   │                                                    step and its validation)
//   └── any phase: a worker lost, a round past its deadline (recovering: a global rollback
//       to the newest restore point), or a worker joined or drains (migrating, at a step
//       boundary): a new epoch and placement, the units' state restored, the job goes on.
//   placing -> checkpointing: a job restored at its last step writes its final checkpoint.
//   Any phase ends with the job: finished, failed or stopped.
#include <atomic>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>

#include <caf/stateful_actor.hpp>
#include <caf/typed_response_promise.hpp>
#include <nlohmann/json.hpp>

#include "actors/auth_gate.hpp"
#include "actors/coordinator_protocol.hpp"
#include "actors/relay.hpp"
#include "actors/worker_protocol.hpp"
#include "coordinator/inference_sessions.hpp"
#include "coordinator/job_table.hpp"
#include "coordinator/load_monitor.hpp"
#include "coordinator/membership.hpp"
#include "coordinator/snapshot_ledger.hpp"
#include "coordinator/step_driver.hpp"

namespace glam {

struct coordinator_options {
  std::string state_dir;
  std::string secret;
  std::string listen;  // host, for status
  // The daemon's relay (status shows its counters) and its public port, once published.
  std::shared_ptr<const relay> daemon_relay;
  std::shared_ptr<std::atomic<int>> listen_port;
  // The dashboard's address (glam coordinator --http), for status; port 0 until it serves.
  std::string http_host;
  std::shared_ptr<std::atomic<int>> http_port;
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds tick{200};
  // A pending job starts once the members have been stable this long, so that a job resumed
  // after a restart, or submitted while workers start, is placed on all of them.
  std::chrono::milliseconds settle{1000};
  // A round (step or validation batch) or a checkpoint that takes longer is rolled back and
  // retried (a worker may be cut off); one that does it again and again fails the job.
  std::chrono::milliseconds step_timeout{300000};
  // Paces rounds, so that a tiny job lasts long enough for a person (glam chaos) or a test
  // to act on it while it runs: a round starts at least this long after the previous one
  // began (0: at once). The results do not change.
  std::chrono::milliseconds min_round{0};
  // After a restart, how long a resumed job waits for the workers that ran it to come back
  // (they hold its snapshots) before it is placed on those there are.
  std::chrono::milliseconds rejoin_grace{10000};
  // The sgemm rate the MFU of the metrics is measured against (0: not measured, no MFU).
  double sgemm_flops = 0;
  // Where jobs' checkpoints go: checkpoint_root/<job name> (empty: STATE/checkpoints), or
  // exactly job_checkpoint_dir when it is set (glam train --checkpoint-dir); and whether a
  // job starts from the newest valid checkpoint there (a resubmitted job goes on).
  std::string checkpoint_root;
  std::string job_checkpoint_dir;
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

enum class job_phase { placing, computing, applying, checkpointing };
const char* to_string(job_phase p);

// The job being trained: its plan, its phase, the workers still to confirm their units,
// the step driver once they all have, and the checkpoint being written.
struct running_job {
  std::string id;
  config cfg;
  job_plan plan;
  job_phase phase = job_phase::placing;
  std::string activity;  // why it is placing: "starting", "recovering" or "migrating"
  std::set<std::string> waiting_hosts;
  std::unique_ptr<step_driver> driver;
  double flops_per_token = 0;
  runtime_clock::time_point round_start;
  std::int64_t checkpoint_step = -1;
  std::set<std::string> checkpoint_waiting;  // unit actors still writing
  std::vector<unit_file_info> checkpoint_files;
  std::int64_t checkpointed = -1;    // the newest step this run wrote (or restored) a checkpoint of
  // Fault tolerance and elasticity.
  bool migrate = false;             // re-place at the next step boundary (a worker joined or drains)
  std::int64_t snapshot_step = -1;  // the step whose snapshots the last finish asked for
  nlohmann::json event;             // the recovery or migration under way, for the metrics
  runtime_clock::time_point event_start;
  std::uint64_t bytes_moved = 0;    // snapshot bytes the workers fetched to restore
  int failed_placements = 0;        // in a row; the job fails after too many
  // Load-aware placement (docs/placement.md).
  load_monitor load{1};                    // the measured load of this placement
  std::optional<placement> next_placement;  // adopted by a rebalance, used at the next move
  nlohmann::json rebalance;                 // what the rebalance predicted, for its event
  nlohmann::json measured_event;            // a rebalance's event, written once its gain is measured

  // Moves to phase `to`; a transition outside the table is a bug (always-on check).
  void enter(job_phase to);
};

struct coordinator_state {
  static inline const char* name = "glam.coordinator";
  std::unique_ptr<auth_gate> gate;
  std::unique_ptr<job_table> jobs;
  membership members;
  // Tell a deadline or a paced round's start from a later one's: counted across runs, so
  // that a timer of a run before a recovery never matches the new run's.
  std::int64_t deadline_serial = 0;
  std::int64_t pace_serial = 0;
  runtime_clock::time_point started = runtime_clock::now();
  // Which worker holds which snapshot, by job (kept across epochs and coordinator-side
  // placements; after a restart, rebuilt from what the workers report).
  std::map<std::string, snapshot_ledger> ledgers;
  // A recovery, join or drain that found no room and left its job pending: it goes on, and
  // is timed, from where it was when the job is placed again.
  struct parked_event {
    std::string job;
    nlohmann::json event;
    runtime_clock::time_point start;
  };
  std::optional<parked_event> parked;
  // Bytes per second that unit states moved at in the newest join, drain, rebalance or
  // recovery that moved any (0: none yet); a rebalance weighs its transfer by it.
  double transfer_rate = 0;
  // Workers being drained, and the clients waiting for it.
  std::map<std::string, std::vector<caf::typed_response_promise<std::string>>> draining;
  std::map<std::string, worker_actor> handles;  // worker name -> its actor
  std::map<std::string, std::vector<std::string>> hosted;  // worker name -> unit names
  refusal_counts refused;
  std::unique_ptr<running_job> run;
  caf::typed_response_promise<std::string> shutdown;  // waits for a checkpoint being written
  // Serving sessions (docs/serving.md, "The actor backend"): the table, the clients waiting
  // for a session's units to be loaded, and the calls in flight by serial (failed at once
  // when their worker is lost: a request to a dead actor never fails by itself).
  inference_sessions sessions;
  std::map<std::string, std::vector<caf::typed_response_promise<infer_assignment>>> session_waiters;
  struct infer_call {
    std::string worker;
    caf::typed_response_promise<infer_reply> promise;
  };
  std::map<std::int64_t, infer_call> infer_calls;
  std::int64_t infer_serial = 0;
  coordinator_options opts;
};

coordinator_actor::behavior_type coordinator_behavior(coordinator_actor::stateful_pointer<coordinator_state> self,
                                                      coordinator_options opts);

// The cluster as JSON (what `glam status --json` prints).
std::string status_json(const coordinator_state& st);
// One job as JSON; "{}" when unknown.
std::string job_json(const job_record& j);

}  // namespace glam
