#include "coordinator/snapshot_ledger.hpp"

namespace glam {

void snapshot_ledger::record(const std::string& worker, const std::string& unit, std::int64_t step) {
  auto& steps = held_[unit];
  steps[step].insert(worker);
  // A worker keeps its newest steps_kept steps of a unit: older copies of it are gone.
  int seen = 0;
  for (auto i = steps.rbegin(); i != steps.rend(); ++i)
    if (i->second.count(worker) && ++seen > steps_kept) i->second.erase(worker);
  for (auto i = steps.begin(); i != steps.end();) i = i->second.empty() ? steps.erase(i) : std::next(i);
}

void snapshot_ledger::forget_worker(const std::string& worker) {
  for (auto& [unit, steps] : held_) {
    for (auto i = steps.begin(); i != steps.end();) {
      i->second.erase(worker);
      i = i->second.empty() ? steps.erase(i) : std::next(i);
    }
  }
}

std::optional<restore_point> snapshot_ledger::newest_complete(const std::vector<std::string>& units,
                                                              const std::set<std::string>& live,
                                                              std::int64_t max_step) const {
  if (units.empty()) return std::nullopt;
  // Candidate steps: those of the first unit; each must hold for every unit.
  auto first = held_.find(units.front());
  if (first == held_.end()) return std::nullopt;
  for (auto s = first->second.rbegin(); s != first->second.rend(); ++s) {
    const std::int64_t step = s->first;
    if (step > max_step) continue;
    restore_point p;
    p.step = step;
    bool complete = true;
    for (const auto& unit : units) {
      auto u = held_.find(unit);
      if (u == held_.end() || !u->second.count(step)) {
        complete = false;
        break;
      }
      const auto at = u->second.find(step);
      auto& holders = p.holders[unit];
      for (const auto& w : at->second)
        if (live.count(w)) holders.push_back(w);
      if (holders.empty()) {
        complete = false;
        break;
      }
    }
    if (complete) return p;
  }
  return std::nullopt;
}

}  // namespace glam
