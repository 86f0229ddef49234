#pragma once
// Load-aware placement (docs/placement.md): from each worker's measured busy seconds, a
// new placement of the job's units and whether it is worth moving them. Plain functions:
// the coordinator asks at a step boundary every placement.rebalance_every steps; tests and
// the placement benchmark drive them by hand.
//
// The cost model. A unit's work per step is its FLOPs from the plan: a shard's tokens
// through everything but the experts, an expert's S·C capacity rows through its matrices
// (an expert computes its full capacity whatever the router sends it, so its work does not
// follow the routed tokens; those are shown, not weighed). A worker's measured speed is
// the work it hosts over its busy seconds; a placement's predicted step time is the largest
// of (work placed on a worker / its speed). A worker without units yet is credited with
// the measured workers' mean speed per sgemm GFLOP/s times its own rate.
//
// The proposal is the greedy packing of place_units with measured speeds and per-unit work,
// in which every worker keeps the units it hosts now as far as the packing's counts allow
// (units of one kind weigh the same): only the surplus moves.
#include <map>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "coordinator/placement.hpp"

namespace glam {

struct unit_work {
  double shard_flops = 0;   // per step
  double expert_flops = 0;  // per step, at full capacity
};
unit_work unit_work_of(const config& c);

struct rebalance_decision {
  bool adopt = false;
  std::vector<worker_assignment> proposed;
  double predicted_now = 0;  // seconds per step, the current placement under the model
  double predicted_new = 0;  // the proposed one
  double gain = 0;           // 1 - predicted_new / predicted_now
  int units_moved = 0;
  double move_bytes = 0;     // the moving units' state (parameters and optimizer)
  double move_seconds = 0;   // move_bytes at the measured transfer rate
  std::string why;           // why it is adopted or not, for the log
  // The speed (FLOP/s) the model credits each worker with: measured, or for a worker
  // without units the measured mean per sgemm GFLOP/s times its rate.
  std::map<std::string, double> speed;
};

// Seconds per step of each worker in `placement` under the cost model: the work placed on
// it over its speed (FLOP/s; every worker of the placement must have one). A placement's
// predicted step time is the largest of them. For the placement benchmark's simulation.
std::map<std::string, double> predicted_worker_seconds(const std::vector<worker_assignment>& placement,
                                                       const std::map<std::string, double>& speed,
                                                       const unit_work& w);

// current: the placement now (workers without units may be listed); workers: the live
// workers that may host units, with their measured sgemm rate and memory limit; busy: mean
// busy seconds per step of the workers hosting units; transfer_rate: bytes per second that
// a unit state moved at before (> 0).
rebalance_decision plan_rebalance(const config& c, const std::vector<worker_assignment>& current,
                                  const std::vector<worker_capacity>& workers,
                                  const std::map<std::string, double>& busy, double transfer_rate);

}  // namespace glam
