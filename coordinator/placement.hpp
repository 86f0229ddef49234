#pragma once
// Placement: which worker hosts which logical unit (S attention shards, E experts). Plain
// functions of their inputs; the math never depends on the result (placement invariance),
// only speed and memory do.
#include <cstdint>
#include <string>
#include <vector>

#include "actors/unit_layout.hpp"
#include "configs/config.hpp"

namespace glam {

struct worker_capacity {
  std::string name;
  std::string host;
  std::uint16_t port = 0;
  double gflops = 1;                  // measured speed (> 0)
  std::int64_t memory_limit = 0;      // bytes; 0 = no limit
};

struct unit_costs {
  double shard_flops = 1;             // per step
  double expert_flops = 1;            // per step (tokens routed × FLOPs per token)
  std::int64_t shard_bytes = 0;       // parameters + optimizer state + activations
  std::int64_t expert_bytes = 0;
};

// A job's units as placement weighs them. Memory: the unit's parameters, gradients,
// optimizer state and activations, plus the in-memory snapshots a worker keeps of it
// (snapshot_steps_kept of its own and as many buddy copies of another worker's unit of the
// same kind): a worker that can hold its units can hold the snapshots that make its loss
// survivable.
unit_costs unit_costs_of(const config& c);

// Greedy longest-processing-time packing: units in decreasing cost (shards before experts
// on ties, then by index), each onto the worker that would finish it earliest (load/speed),
// among workers with memory left and fewer than max_shards_per_worker shards (each shard is
// a unit actor, a thread); ties go to the lower name. Throws std::runtime_error
// naming the unit when no worker has room for it. Workers without units are kept (empty).
std::vector<worker_assignment> place_units(const std::vector<worker_capacity>& workers, std::int64_t shards,
                                         std::int64_t experts, const unit_costs& costs);

// A seeded random placement (every unit on a uniformly drawn worker): for invariance tests.
std::vector<worker_assignment> random_placement(const std::vector<worker_capacity>& workers,
                                              std::int64_t shards, std::int64_t experts,
                                              std::uint64_t seed);

}  // namespace glam
