#pragma once
// The snapshots a worker holds in memory (docs/fault-tolerance.md): its own units' state
// after a step's update, and copies of its buddy's. Bounded: one job, and per unit the
// newest `steps_kept` steps; older ones are dropped as new ones come. Plain class, owned by
// the worker actor.
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "model/checkpoint.hpp"

namespace glam {

class snapshot_store {
 public:
  static constexpr int steps_kept = snapshot_steps_kept;

  // Keeps s for `job` (a store holds one job: another job's snapshots are dropped).
  void put(const std::string& job, unit_snapshot s);
  const unit_snapshot* find(const std::string& job, const std::string& unit, std::int64_t step) const;
  // What it holds of `job`: (unit, step) pairs.
  std::vector<std::pair<std::string, std::int64_t>> inventory(const std::string& job) const;
  void clear() { units_.clear(); }
  std::int64_t bytes() const;

 private:
  std::string job_;
  std::map<std::string, std::map<std::int64_t, unit_snapshot>> units_;  // unit -> step -> state
};

}  // namespace glam
