#include "coordinator/load_monitor.hpp"

#include <algorithm>

namespace glam {

void load_monitor::add(step_load s) {
  steps_.push_back(std::move(s));
  while (steps() > window_) steps_.pop_front();
}

std::map<std::string, double> load_monitor::worker_seconds() const {
  std::map<std::string, double> sum;
  for (const auto& s : steps_)
    for (const auto& [w, t] : s.worker_seconds) sum[w] += t;
  for (auto& [w, t] : sum) t /= double(steps_.size());
  return sum;
}

double load_monitor::busiest_seconds() const {
  double most = 0;
  for (const auto& [w, t] : worker_seconds()) most = std::max(most, t);
  return most;
}

double load_monitor::balancedness() const {
  const auto seconds = worker_seconds();
  if (seconds.empty()) return 0;
  double sum = 0, most = 0;
  for (const auto& [w, t] : seconds) {
    sum += t;
    most = std::max(most, t);
  }
  return most > 0 ? sum / double(seconds.size()) / most : 0;
}

std::vector<double> load_monitor::routed_share() const {
  std::vector<double> share;
  double total = 0;
  for (const auto& s : steps_) {
    if (share.size() < s.routed.size()) share.resize(s.routed.size(), 0);
    for (std::size_t e = 0; e < s.routed.size(); ++e) {
      share[e] += double(s.routed[e]);
      total += double(s.routed[e]);
    }
  }
  if (total > 0)
    for (auto& x : share) x /= total;
  return share;
}

}  // namespace glam
