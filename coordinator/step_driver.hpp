#pragma once
// The coordinator's side of the step protocol as a plain class: which round runs now (a
// training step, or a validation batch when evaluation is due), which unit actors have
// reported and confirmed, the apply-or-skip decision, and the step's metrics combined in
// shard order. The coordinator actor sends what this class decides; a test drives it by
// hand.
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "configs/config.hpp"
#include "model/step_schedule.hpp"
#include "model/train_step.hpp"

namespace glam {

struct completed_step {
  step_metrics metrics;
  double seconds = 0;              // the training round, validation excluded
  double compute_seconds = 0;      // the busiest worker's time in kernels during the round (its unit actors' sum)
  std::map<std::string, double> worker_seconds;  // each worker's time in kernels during the round
  std::optional<double> val_loss;  // mean token CE over the validation batches, when due
};

class step_driver {
 public:
  // unit_actors: the job's unit actors by name (every one reports every round).
  step_driver(const config& c, std::vector<std::string> unit_actors, std::int64_t first_step);

  bool finished() const { return finished_; }
  const round_id& current() const { return round_; }
  // The last committed training step + 1 (where a resumed job would start).
  std::int64_t steps_done() const { return steps_done_; }

  // Empty when the report is taken; else why it does not belong to this round.
  std::string add_report(const step_report& r);
  bool all_reported() const { return reports_.size() == unit_actors_.size(); }
  // For a training round with every report in: apply when every unit's gradients are finite.
  bool apply() const;
  std::string add_applied(const std::string& unit_actor);
  bool all_applied() const { return applied_.size() == unit_actors_.size(); }

  // Ends the current round (all reported; for training, all applied) and moves on.
  // Returns the training step once it and its validation, when due, are done.
  std::optional<completed_step> next(double round_seconds);

 private:
  config cfg_;
  step_schedule schedule_;
  std::vector<std::string> unit_actors_;
  round_id round_;
  bool finished_ = false;
  std::int64_t steps_done_ = 0;
  std::map<std::string, step_report> reports_;
  std::set<std::string> applied_;
  std::optional<completed_step> pending_;  // a training step waiting for its validation
  double val_ce_ = 0, val_tokens_ = 0;
};

}  // namespace glam
