#pragma once
// When a job evaluates, snapshots and writes checkpoints. One policy, read by the reference
// trainer (glam train) and by the coordinator, so that both record the same metrics lines
// and leave the same restore points.
#include <cstdint>

#include "configs/config.hpp"

namespace glam {

class step_schedule {
 public:
  explicit step_schedule(const config& c) : train_(c.train), fault_(c.fault) {}

  // Validation after training step `step` (0-based): every train.eval_every steps and after
  // the last one.
  bool evaluates_after(std::int64_t step) const;
  // With `steps_done` steps committed: a checkpoint every fault.checkpoint_every steps
  // (0: none on the way) and one at the end of the job.
  bool checkpoints_at(std::int64_t steps_done) const;
  // With `steps_done` steps committed: an in-memory snapshot every fault.snapshot_every steps.
  bool snapshots_at(std::int64_t steps_done) const;

 private:
  train_config train_;
  fault_config fault_;
};

}  // namespace glam
