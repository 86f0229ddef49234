#pragma once
// A coordinator and N workers inside one process (glam train --workers N): the same actors
// and the same step protocol as a cluster of daemons, with local messages instead of
// connections (docs/runtime.md, "Embedded mode").
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

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

}  // namespace glam
