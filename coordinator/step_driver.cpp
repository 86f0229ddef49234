#include "coordinator/step_driver.hpp"

#include <algorithm>

namespace glam {

step_driver::step_driver(const config& c, std::vector<std::string> unit_actors, std::int64_t first_step)
    : cfg_(c), schedule_(c), unit_actors_(std::move(unit_actors)), steps_done_(first_step) {
  round_ = round_id::training(first_step);
  finished_ = first_step >= c.train.steps;
}

std::string step_driver::add_report(const step_report& r) {
  if (finished_) return "the job has no round running";
  if (r.round != round_) return "a report of " + r.round.describe() + " during " + round_.describe();
  if (std::find(unit_actors_.begin(), unit_actors_.end(), r.unit_actor) == unit_actors_.end())
    return "a report from " + r.unit_actor + ", which is not one of the job's unit actors";
  if (reports_.count(r.unit_actor)) return "a second report from " + r.unit_actor;
  reports_[r.unit_actor] = r;
  return {};
}

bool step_driver::apply() const {
  return std::all_of(reports_.begin(), reports_.end(), [](const auto& r) { return r.second.finite; });
}

std::string step_driver::add_applied(const std::string& unit_actor) {
  if (!round_.train || !all_reported()) return "a confirmation before the decision";
  if (std::find(unit_actors_.begin(), unit_actors_.end(), unit_actor) == unit_actors_.end())
    return "a confirmation from " + unit_actor + ", which is not one of the job's unit actors";
  applied_.insert(unit_actor);
  return {};
}

std::optional<completed_step> step_driver::next(double round_seconds) {
  const bool applied = apply();
  // The busiest worker's kernel time (its unit actors take turns on its cores).
  std::map<std::string, double> per_worker;
  for (const auto& [a, r] : reports_) per_worker[r.worker] += r.compute_seconds;
  double compute = 0;
  for (const auto& [w, t] : per_worker) compute = std::max(compute, t);
  // The shards' parts in shard order, whichever worker hosts them.
  std::map<std::int64_t, loss_parts> by_shard;
  for (const auto& [a, r] : reports_)
    for (const auto& s : r.shards) by_shard[s.shard] = s.parts;
  reports_.clear();
  applied_.clear();

  if (!round_.train) {
    for (const auto& [s, p] : by_shard) {
      val_ce_ += p.cross_entropy_sum;
      val_tokens_ += double(p.tokens);
    }
    if (round_.step + 1 < cfg_.train.eval_batches) {
      round_ = round_id::validation(round_.step + 1);
      return std::nullopt;
    }
    pending_->val_loss = val_ce_ / val_tokens_;
  } else {
    completed_step done;
    std::vector<loss_parts> parts;
    for (const auto& [s, p] : by_shard) parts.push_back(p);
    done.metrics = combine_step(cfg_, round_.step, parts, applied);
    done.seconds = round_seconds;
    done.compute_seconds = compute;
    done.worker_seconds = per_worker;
    pending_ = done;
    steps_done_ = round_.step + 1;
    if (schedule_.evaluates_after(round_.step)) {
      val_ce_ = val_tokens_ = 0;
      round_ = round_id::validation(0);
      return std::nullopt;
    }
  }
  auto out = std::move(pending_);
  pending_.reset();
  round_ = round_id::training(steps_done_);
  finished_ = steps_done_ >= cfg_.train.steps;
  return out;
}

}  // namespace glam
