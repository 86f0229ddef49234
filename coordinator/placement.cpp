#include "coordinator/placement.hpp"

#include <algorithm>
#include <random>
#include <stdexcept>

#include "configs/plan.hpp"
#include "model/checkpoint.hpp"

namespace glam {

namespace {

std::vector<worker_assignment> empty_assignments(const std::vector<worker_capacity>& workers) {
  if (workers.empty()) throw std::runtime_error("placement: no live workers to place units on");
  std::vector<worker_assignment> out;
  for (const auto& w : workers) {
    worker_assignment a;
    a.worker = w.name;
    a.host = w.host;
    a.port = w.port;
    out.push_back(a);
  }
  return out;
}

}  // namespace

unit_costs unit_costs_of(const config& c) {
  const plan_figures p = make_plan(c, 1);
  const auto with_snapshots = [](const unit_memory& m) {
    return static_cast<std::int64_t>(m.total() + 2.0 * snapshot_steps_kept * (m.params + m.optimizer));
  };
  unit_costs u;  // every unit weighs 1 in FLOPs: placement by measured load is to come
  u.shard_bytes = with_snapshots(p.shard_unit);
  u.expert_bytes = with_snapshots(p.expert_unit);
  return u;
}

std::vector<worker_assignment> place_units(const std::vector<worker_capacity>& workers, std::int64_t shards,
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
      if (u.shard && static_cast<int>(out[w].shards.size()) >= max_shards_per_worker) continue;
      double finish = (load[w] + u.flops) / std::max(workers[w].gflops, 1e-9);
      if (best == workers.size() || finish < best_finish ||
          (finish == best_finish && workers[w].name < workers[best].name)) {
        best = w;
        best_finish = finish;
      }
    }
    if (best == workers.size())
      throw std::runtime_error(std::string("placement: no worker has room for ") + (u.shard ? "shard " : "expert ") +
                               std::to_string(u.number) + " (" + std::to_string(u.bytes) + " bytes; a worker runs at most " +
                               std::to_string(max_shards_per_worker) + " shards): the job waits for more workers");
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

std::vector<worker_assignment> random_placement(const std::vector<worker_capacity>& workers,
                                              std::int64_t shards, std::int64_t experts,
                                              std::uint64_t seed) {
  auto out = empty_assignments(workers);
  if (shards > max_shards_per_worker * static_cast<std::int64_t>(workers.size()))
    throw std::runtime_error("placement: " + std::to_string(shards) + " shards need more than " +
                             std::to_string(workers.size()) + " workers: the job waits for more workers");
  std::mt19937_64 rng(seed);
  auto pick = [&] { return static_cast<std::size_t>(rng() % workers.size()); };
  for (std::int64_t s = 0; s < shards; ++s) {
    auto w = pick();
    while (static_cast<int>(out[w].shards.size()) >= max_shards_per_worker) w = (w + 1) % workers.size();
    out[w].shards.push_back(s);
  }
  for (std::int64_t e = 0; e < experts; ++e) out[pick()].experts.push_back(e);
  return out;
}

}  // namespace glam
