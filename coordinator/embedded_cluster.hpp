#pragma once
// A coordinator and N workers inside one process (glam train --workers N): the same actors
// and the same step protocol as a cluster of daemons, with local messages instead of
// connections (docs/runtime.md, "Embedded mode").
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/worker_protocol.hpp"
#include "coordinator/job_table.hpp"

namespace glam {

struct embedded_options {
  int workers = 1;
  std::string state_dir;        // the coordinator's state: jobs, metrics
  double sgemm_flops = 0;       // for the MFU of the metrics (0: none)
  std::int64_t inject_nonfinite_step = -1;
  // Checkpoints: written to this directory (every fault.checkpoint_every steps and at the
  // end) when it is given; resume: start from the newest valid one there.
  std::string checkpoint_root;
  bool resume = false;
  std::function<void(const job_record&, const nlohmann::json&)> on_step;
};

// Trains the job (TOML text; source names it in errors) to its end and returns its record:
// state finished, or failed with the reason. Throws std::runtime_error when the cluster
// cannot be set up or the job is refused.
job_record run_embedded_job(const std::string& config_toml, const std::string& source, const embedded_options& o);

// A coordinator and N workers in this process that stay up until destroyed, with no job:
// what `glam generate --workers N` and `glam serve --workers N` serve a session on (the
// actor backend, serve/actor_backend.hpp). The coordinator's state goes to a scratch
// directory removed at the end; the workers read checkpoints anywhere (one process run by
// the user: any path it names is its own). Throws std::runtime_error when a worker cannot
// register.
class embedded_cluster {
 public:
  explicit embedded_cluster(int workers);
  ~embedded_cluster();
  embedded_cluster(const embedded_cluster&) = delete;
  embedded_cluster& operator=(const embedded_cluster&) = delete;

  caf::actor_system& system() { return *sys_; }
  const coordinator_actor& coordinator() const { return coordinator_; }
  int workers() const { return static_cast<int>(workers_.size()); }
  // The worker actors ("worker-<i>" is number i), for tests that end one as a crash would.
  const std::vector<worker_actor>& worker_handles() const { return workers_; }

 private:
  void stop();
  std::string state_dir_;
  std::unique_ptr<caf::actor_system_config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  coordinator_actor coordinator_;
  std::vector<worker_actor> workers_;
};

}  // namespace glam
