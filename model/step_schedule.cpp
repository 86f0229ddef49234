#include "model/step_schedule.hpp"

namespace glam {

bool step_schedule::evaluates_after(std::int64_t step) const {
  return train_.eval_every > 0 && train_.eval_batches > 0 &&
         ((step + 1) % train_.eval_every == 0 || step + 1 == train_.steps);
}

bool step_schedule::checkpoints_at(std::int64_t steps_done) const {
  return (fault_.checkpoint_every > 0 && steps_done % fault_.checkpoint_every == 0) || steps_done == train_.steps;
}

bool step_schedule::snapshots_at(std::int64_t steps_done) const {
  return fault_.snapshot_every > 0 && steps_done % fault_.snapshot_every == 0;
}

}  // namespace glam
