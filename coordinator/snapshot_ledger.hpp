#pragma once
// Which worker holds which in-memory snapshot of which unit (docs/fault-tolerance.md): the
// coordinator's record of the snapshot reports, and the restore point a recovery uses,
// the newest step at which every unit of the job has a copy on a live worker. Plain class:
// the coordinator actor feeds it reports and asks it questions; tests drive it by hand.
//
// Units are the checkpoint units ("dense" and "expert<e>", model/unit_id.hpp): every
// shard-hosting worker keeps the dense state, each expert's owner keeps the expert, and a
// buddy worker keeps a copy of each, so that the loss of any one worker is covered.
#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "model/checkpoint.hpp"

namespace glam {

struct restore_point {
  std::int64_t step = 0;  // steps completed: the next step to run
  // unit -> the live workers holding its snapshot of that step, by name
  std::map<std::string, std::vector<std::string>> holders;
};

class snapshot_ledger {
 public:
  // Each worker keeps this many snapshot steps per unit; the ledger forgets older ones.
  static constexpr int steps_kept = snapshot_steps_kept;

  // `worker` holds unit's snapshot of `step` (its own copy or a buddy's).
  void record(const std::string& worker, const std::string& unit, std::int64_t step);
  // A worker that is gone holds nothing any more.
  void forget_worker(const std::string& worker);
  void clear() { held_.clear(); }

  // The newest step at or below max_step at which every unit in `units` has a copy on a
  // worker in `live`; nullopt when there is none.
  std::optional<restore_point> newest_complete(const std::vector<std::string>& units,
                                               const std::set<std::string>& live, std::int64_t max_step) const;

 private:
  // unit -> step -> holders
  std::map<std::string, std::map<std::int64_t, std::set<std::string>>> held_;
};

}  // namespace glam
