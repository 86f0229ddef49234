#include "coordinator/rebalance.hpp"

#include <algorithm>
#include <set>

#include "configs/plan.hpp"

namespace glam {

unit_work unit_work_of(const config& c) {
  const plan_figures p = make_plan(c, 1);
  const double experts_per_token = p.experts > 0 ? 2.0 * double(p.params_per_expert) : 0.0;
  unit_work w;
  w.shard_flops = double(p.tokens_per_shard) *
                  (6.0 * (double(p.matrix_params_activated) - experts_per_token) + double(p.attention_flops_per_token_train));
  w.expert_flops = 6.0 * double(p.shards) * double(p.expert_capacity) * double(p.params_per_expert);
  return w;
}

namespace {

double work_of(const worker_assignment& a, const unit_work& w) {
  return double(a.shards.size()) * w.shard_flops + double(a.experts.size()) * w.expert_flops;
}

}  // namespace

std::map<std::string, double> predicted_worker_seconds(const std::vector<worker_assignment>& placement,
                                                       const std::map<std::string, double>& speed,
                                                       const unit_work& w) {
  std::map<std::string, double> out;
  for (const auto& a : placement) {
    const double work = work_of(a, w);
    out[a.worker] = work > 0 ? work / speed.at(a.worker) : 0.0;
  }
  return out;
}

namespace {

// Units of one kind weigh the same in the cost model and in memory, so a packing only fixes
// how many shards and experts each worker hosts. Of those, each worker keeps the units it
// hosts now (lowest index first) and only the rest move, in index order, to the workers
// with room left (in the packing's order): the same predicted step time, the fewest moves.
std::vector<worker_assignment> keep_owners(std::vector<worker_assignment> packed,
                                           const std::vector<worker_assignment>& current) {
  const auto reassign = [&](auto member) {
    std::map<std::string, std::vector<index>> now;
    for (const auto& a : current) {
      auto units = a.*member;
      std::sort(units.begin(), units.end());
      now[a.worker] = units;
    }
    std::vector<std::size_t> want;
    std::vector<index> all;
    for (auto& a : packed) {
      want.push_back((a.*member).size());
      all.insert(all.end(), (a.*member).begin(), (a.*member).end());
      (a.*member).clear();
    }
    std::sort(all.begin(), all.end());
    std::set<index> placed;
    for (std::size_t i = 0; i < packed.size(); ++i)
      for (index u : now[packed[i].worker])
        if ((packed[i].*member).size() < want[i] && std::binary_search(all.begin(), all.end(), u) && placed.insert(u).second)
          (packed[i].*member).push_back(u);
    std::size_t i = 0;
    for (index u : all) {
      if (placed.count(u)) continue;
      while ((packed[i].*member).size() >= want[i]) ++i;
      (packed[i].*member).push_back(u);
    }
    for (auto& a : packed) std::sort((a.*member).begin(), (a.*member).end());
  };
  reassign(&worker_assignment::shards);
  reassign(&worker_assignment::experts);
  return packed;
}

double predicted_seconds(const std::vector<worker_assignment>& placement, const std::map<std::string, double>& speed,
                         const unit_work& w) {
  double most = 0;
  for (const auto& [worker, seconds] : predicted_worker_seconds(placement, speed, w)) most = std::max(most, seconds);
  return most;
}

}  // namespace

rebalance_decision plan_rebalance(const config& c, const std::vector<worker_assignment>& current,
                                  const std::vector<worker_capacity>& workers,
                                  const std::map<std::string, double>& busy, double transfer_rate) {
  rebalance_decision d;
  const unit_work w = unit_work_of(c);
  // Measured speeds (FLOP/s) of the workers hosting units, and their mean per sgemm GFLOP/s.
  std::map<std::string, double> speed;
  std::map<std::string, double> gflops;
  for (const auto& k : workers) gflops[k.name] = k.gflops > 0 ? k.gflops : 1.0;
  double per_gflop = 0;
  int measured = 0;
  for (const auto& a : current) {
    const double work = work_of(a, w);
    auto b = busy.find(a.worker);
    if (work <= 0 || b == busy.end() || b->second <= 0 || !gflops.count(a.worker)) continue;
    speed[a.worker] = work / b->second;
    per_gflop += speed[a.worker] / gflops[a.worker];
    ++measured;
  }
  if (measured == 0) {
    d.why = "no measured load yet";
    return d;
  }
  per_gflop /= measured;
  std::vector<worker_capacity> caps = workers;
  for (auto& k : caps) {
    if (!speed.count(k.name)) speed[k.name] = per_gflop * gflops[k.name];
    k.gflops = speed[k.name];
  }
  // Units hosted on a worker that may not host any more (drained, lost) are not weighed
  // here: a rebalance only runs on a placement every one of whose workers is live.
  for (const auto& a : current)
    if (work_of(a, w) > 0 && !std::any_of(caps.begin(), caps.end(), [&](const auto& k) { return k.name == a.worker; })) {
      d.why = "worker " + a.worker + " hosts units but may not host any now";
      return d;
    }

  unit_costs costs = unit_costs_of(c);
  costs.shard_flops = w.shard_flops;
  costs.expert_flops = w.expert_flops;
  const index experts = c.model.moe_as_dense_relu ? 0 : c.model.experts;
  try {
    d.proposed = keep_owners(place_units(caps, c.cluster.shards, experts, costs), current);
  } catch (const std::exception& e) {
    d.why = e.what();
    return d;
  }
  d.speed = speed;
  d.predicted_now = predicted_seconds(current, speed, w);
  d.predicted_new = predicted_seconds(d.proposed, speed, w);
  d.gain = d.predicted_now > 0 ? 1.0 - d.predicted_new / d.predicted_now : 0.0;

  // What moves: every unit whose owner changes, at its parameters and optimizer state.
  const plan_figures p = make_plan(c, 1);
  const double shard_state = p.shard_unit.params + p.shard_unit.optimizer;
  const double expert_state = p.expert_unit.params + p.expert_unit.optimizer;
  std::map<std::pair<bool, index>, std::string> owner_now;
  for (const auto& a : current) {
    for (index s : a.shards) owner_now[{true, s}] = a.worker;
    for (index e : a.experts) owner_now[{false, e}] = a.worker;
  }
  for (const auto& a : d.proposed) {
    for (index s : a.shards)
      if (owner_now[{true, s}] != a.worker) ++d.units_moved, d.move_bytes += shard_state;
    for (index e : a.experts)
      if (owner_now[{false, e}] != a.worker) ++d.units_moved, d.move_bytes += expert_state;
  }
  d.move_seconds = d.move_bytes / std::max(transfer_rate, 1.0);
  const double saved_per_step = d.predicted_now - d.predicted_new;
  const auto& policy = c.placement;
  if (d.units_moved == 0) {
    d.why = "the placement is already the best the model finds";
  } else if (d.gain < policy.min_gain) {
    d.why = "a predicted gain of " + std::to_string(d.gain) + " is under placement.min_gain";
  } else if (d.move_seconds > double(policy.payback_steps) * saved_per_step) {
    d.why = "moving " + std::to_string(d.units_moved) + " units would take longer than placement.payback_steps repay";
  } else {
    d.adopt = true;
    d.why = "predicted step time " + std::to_string(d.predicted_now) + " s -> " + std::to_string(d.predicted_new) + " s";
  }
  return d;
}

}  // namespace glam
