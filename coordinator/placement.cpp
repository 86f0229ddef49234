#include "coordinator/placement.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

namespace glam {

namespace {

std::vector<unit_assignment> empty_assignments(const std::vector<worker_capacity>& workers) {
  if (workers.empty()) throw std::runtime_error("placement: no live workers to place units on");
  std::vector<unit_assignment> out;
  for (const auto& w : workers) {
    unit_assignment a;
    a.worker = w.name;
    a.host = w.host;
    a.port = w.port;
    out.push_back(a);
  }
  return out;
}

}  // namespace

std::vector<unit_assignment> place_units(const std::vector<worker_capacity>& workers, std::int64_t shards,
                                         std::int64_t experts, const unit_costs& costs) {
  auto out = empty_assignments(workers);
  struct unit {
    bool shard;
    std::int64_t number;
    double flops;
    std::int64_t bytes;
  };
  std::vector<unit> units;
  for (std::int64_t s = 0; s < shards; ++s) units.push_back({true, s, costs.shard_flops, costs.shard_bytes});
  for (std::int64_t e = 0; e < experts; ++e) units.push_back({false, e, costs.expert_flops, costs.expert_bytes});
  std::stable_sort(units.begin(), units.end(), [](const unit& a, const unit& b) { return a.flops > b.flops; });
  std::vector<double> load(workers.size(), 0);
  std::vector<std::int64_t> used(workers.size(), 0);
  for (const auto& u : units) {
    std::size_t best = workers.size();
    double best_finish = 0;
    for (std::size_t w = 0; w < workers.size(); ++w) {
      if (workers[w].memory_limit > 0 && used[w] + u.bytes > workers[w].memory_limit) continue;
      double finish = (load[w] + u.flops) / std::max(workers[w].gflops, 1e-9);
      if (best == workers.size() || finish < best_finish ||
          (finish == best_finish && workers[w].name < workers[best].name)) {
        best = w;
        best_finish = finish;
      }
    }
    if (best == workers.size())
      throw std::runtime_error(std::string("placement: no worker has memory left for ") +
                               (u.shard ? "shard " : "expert ") + std::to_string(u.number) + " (" +
                               std::to_string(u.bytes) + " bytes): add workers or raise their memory");
    load[best] += u.flops;
    used[best] += u.bytes;
    (u.shard ? out[best].shards : out[best].experts).push_back(u.number);
  }
  for (auto& a : out) {
    std::sort(a.shards.begin(), a.shards.end());
    std::sort(a.experts.begin(), a.experts.end());
  }
  return out;
}

std::vector<unit_assignment> random_placement(const std::vector<worker_capacity>& workers,
                                              std::int64_t shards, std::int64_t experts,
                                              std::uint64_t seed) {
  auto out = empty_assignments(workers);
  std::mt19937_64 rng(seed);
  auto pick = [&] { return static_cast<std::size_t>(rng() % workers.size()); };
  for (std::int64_t s = 0; s < shards; ++s) out[pick()].shards.push_back(s);
  for (std::int64_t e = 0; e < experts; ++e) out[pick()].experts.push_back(e);
  return out;
}

std::string check_placement(const std::vector<unit_assignment>& p, std::int64_t shards,
                            std::int64_t experts) {
  std::vector<int> s_count(static_cast<std::size_t>(shards), 0), e_count(static_cast<std::size_t>(experts), 0);
  for (const auto& a : p) {
    for (auto s : a.shards) {
      if (s < 0 || s >= shards) return "shard " + std::to_string(s) + " on " + a.worker + " is out of range";
      ++s_count[static_cast<std::size_t>(s)];
    }
    for (auto e : a.experts) {
      if (e < 0 || e >= experts) return "expert " + std::to_string(e) + " on " + a.worker + " is out of range";
      ++e_count[static_cast<std::size_t>(e)];
    }
  }
  for (std::int64_t s = 0; s < shards; ++s)
    if (s_count[static_cast<std::size_t>(s)] != 1)
      return "shard " + std::to_string(s) + " is hosted " + std::to_string(s_count[static_cast<std::size_t>(s)]) + " times";
  for (std::int64_t e = 0; e < experts; ++e)
    if (e_count[static_cast<std::size_t>(e)] != 1)
      return "expert " + std::to_string(e) + " is hosted " + std::to_string(e_count[static_cast<std::size_t>(e)]) + " times";
  return {};
}

}  // namespace glam
