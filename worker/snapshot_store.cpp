#include "worker/snapshot_store.hpp"

namespace glam {

void snapshot_store::put(const std::string& job, unit_snapshot s) {
  if (job != job_) {
    units_.clear();
    job_ = job;
  }
  auto& steps = units_[s.unit];
  steps[s.step] = std::move(s);
  while (steps.size() > static_cast<std::size_t>(steps_kept)) steps.erase(steps.begin());
}

const unit_snapshot* snapshot_store::find(const std::string& job, const std::string& unit, std::int64_t step) const {
  if (job != job_) return nullptr;
  auto u = units_.find(unit);
  if (u == units_.end()) return nullptr;
  auto s = u->second.find(step);
  return s == u->second.end() ? nullptr : &s->second;
}

std::vector<std::pair<std::string, std::int64_t>> snapshot_store::inventory(const std::string& job) const {
  std::vector<std::pair<std::string, std::int64_t>> out;
  if (job != job_) return out;
  for (const auto& [unit, steps] : units_)
    for (const auto& [step, s] : steps) out.emplace_back(unit, step);
  return out;
}

std::int64_t snapshot_store::bytes() const {
  std::int64_t n = 0;
  for (const auto& [unit, steps] : units_)
    for (const auto& [step, s] : steps) n += static_cast<std::int64_t>(s.bytes.size());
  return n;
}

}  // namespace glam
