// One schedule of evaluation, snapshots and checkpoints for the reference trainer and the
// coordinator.
#include <gtest/gtest.h>

#include "model/step_schedule.hpp"

namespace glam {
namespace {

struct schedule_case {
  const char* name;
  std::int64_t steps, eval_every, eval_batches, snapshot_every, checkpoint_every;
  std::vector<std::int64_t> evaluates_after, snapshots_at, checkpoints_at;  // over steps 0..steps
};

const schedule_case schedule_cases[] = {
    {"defaults_like", 5, 0, 1, 1, 0, {}, {1, 2, 3, 4, 5}, {5}},
    {"every_two", 5, 2, 1, 2, 2, {1, 3, 4}, {2, 4}, {2, 4, 5}},
    {"no_eval_batches_no_eval", 4, 1, 0, 3, 3, {}, {3}, {3, 4}},
    {"every_step", 3, 1, 2, 1, 1, {0, 1, 2}, {1, 2, 3}, {1, 2, 3}},
};

class ModelStepSchedule : public ::testing::TestWithParam<schedule_case> {};

TEST_P(ModelStepSchedule, SaysWhenToEvaluateSnapshotAndCheckpoint) {
  const auto& p = GetParam();
  config c;
  c.train.steps = p.steps;
  c.train.eval_every = p.eval_every;
  c.train.eval_batches = p.eval_batches;
  c.fault.snapshot_every = p.snapshot_every;
  c.fault.checkpoint_every = p.checkpoint_every;
  const step_schedule s(c);
  std::vector<std::int64_t> ev, sn, ck;
  for (std::int64_t k = 0; k < p.steps; ++k)
    if (s.evaluates_after(k)) ev.push_back(k);
  for (std::int64_t done = 1; done <= p.steps; ++done) {
    if (s.snapshots_at(done)) sn.push_back(done);
    if (s.checkpoints_at(done)) ck.push_back(done);
  }
  EXPECT_EQ(ev, p.evaluates_after);
  EXPECT_EQ(sn, p.snapshots_at);
  EXPECT_EQ(ck, p.checkpoints_at);
}

INSTANTIATE_TEST_SUITE_P(Cases, ModelStepSchedule, ::testing::ValuesIn(schedule_cases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam
