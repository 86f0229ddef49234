// The coordinator's step driver without actors: which round runs, which reports it takes,
// the apply/skip decision, validation rounds when due, and the metrics combined in shard
// order whichever unit actor reported first.
#include <gtest/gtest.h>

#include "coordinator/step_driver.hpp"
#include "tests/unit/model_testing.hpp"

namespace glam {
namespace {

config driver_config() {
  config c = testing::tiny_model_config();
  c.cluster.shards = 3;
  c.train.steps = 3;
  c.train.eval_every = 2;
  c.train.eval_batches = 2;
  return c;
}

step_report report(const std::string& unit_actor, std::int64_t step, bool train, std::vector<std::int64_t> shards,
                   bool finite = true) {
  step_report r;
  r.unit_actor = unit_actor;
  r.round = {step, train};
  r.finite = finite;
  for (auto s : shards) {
    loss_parts p;
    p.cross_entropy_sum = 10.0 * double(s + 1);
    p.tokens = 12;
    p.tokens_per_expert = {1, 2, 3, 4};
    r.shards.push_back({s, p});
  }
  return r;
}

TEST(StepDriver, RunsTrainingStepsAndValidationWhenDue) {
  step_driver d(driver_config(), {"a", "b"}, 0);
  ASSERT_FALSE(d.finished());
  EXPECT_EQ(d.current(), round_id::training(0));
  // Reports that do not belong are refused with the reason.
  EXPECT_NE(d.add_report(report("a", 1, true, {0})), "");
  EXPECT_NE(d.add_report(report("z", 0, true, {0})), "");
  EXPECT_NE(d.add_report(report("a", 0, false, {0})), "");
  // Shards arrive out of order across unit actors: the combined loss is in shard order.
  EXPECT_EQ(d.add_report(report("b", 0, true, {2, 0})), "");
  EXPECT_NE(d.add_report(report("b", 0, true, {2, 0})), "") << "a second report";
  EXPECT_FALSE(d.all_reported());
  EXPECT_NE(d.add_applied("a"), "") << "a confirmation before the decision";
  EXPECT_EQ(d.add_report(report("a", 0, true, {1}, false)), "");
  ASSERT_TRUE(d.all_reported());
  EXPECT_FALSE(d.apply()) << "one unit actor's gradients are not finite: skip";
  EXPECT_EQ(d.add_applied("a"), "");
  EXPECT_EQ(d.add_applied("b"), "");
  ASSERT_TRUE(d.all_applied());
  auto step0 = d.next(0.5);
  ASSERT_TRUE(step0.has_value());
  EXPECT_TRUE(step0->metrics.skipped);
  EXPECT_EQ(step0->metrics.tokens, 36);
  EXPECT_EQ(step0->metrics.tokens_per_expert, (std::vector<index>{3, 6, 9, 12}));
  EXPECT_FLOAT_EQ(step0->metrics.loss.cross_entropy, float(60.0 / 36.0));
  EXPECT_FALSE(step0->val_loss.has_value());

  // Step 1 is followed by two validation batches (eval_every = 2): its metrics wait for them.
  EXPECT_EQ(d.current(), round_id::training(1));
  d.add_report(report("a", 1, true, {0, 1}));
  d.add_report(report("b", 1, true, {2}));
  EXPECT_TRUE(d.apply());
  d.add_applied("a");
  d.add_applied("b");
  EXPECT_FALSE(d.next(0.5).has_value());
  EXPECT_EQ(d.steps_done(), 2);
  for (std::int64_t i = 0; i < 2; ++i) {
    ASSERT_FALSE(d.current().train);
    EXPECT_EQ(d.current(), round_id::validation(i));
    d.add_report(report("a", i, false, {0, 1}));
    d.add_report(report("b", i, false, {2}));
    ASSERT_TRUE(d.all_reported());
    auto done = d.next(0.1);
    EXPECT_EQ(done.has_value(), i == 1);
    if (done) {
      EXPECT_EQ(done->metrics.step, 1);
      EXPECT_DOUBLE_EQ(*done->val_loss, 120.0 / 72.0);
      EXPECT_DOUBLE_EQ(done->seconds, 0.5) << "the training round's time, validation excluded";
    }
  }
  // The last step is validated too (step + 1 == steps), then the job is finished.
  EXPECT_EQ(d.current(), round_id::training(2));
  d.add_report(report("a", 2, true, {0, 1}));
  d.add_report(report("b", 2, true, {2}));
  d.add_applied("a");
  d.add_applied("b");
  EXPECT_FALSE(d.next(0.5).has_value());
  for (std::int64_t i = 0; i < 2; ++i) {
    d.add_report(report("a", i, false, {0, 1}));
    d.add_report(report("b", i, false, {2}));
    auto done = d.next(0.1);
    EXPECT_EQ(done.has_value(), i == 1);
  }
  EXPECT_TRUE(d.finished());
  EXPECT_EQ(d.steps_done(), 3);
}

TEST(StepDriver, AResumedJobStartsAtItsCheckpointAndAFinishedOneRunsNothing) {
  step_driver resumed(driver_config(), {"a"}, 2);
  EXPECT_EQ(resumed.current(), round_id::training(2));
  step_driver done(driver_config(), {"a"}, 3);
  EXPECT_TRUE(done.finished());
  EXPECT_NE(done.add_report(report("a", 3, true, {0})), "");
}

}  // namespace
}  // namespace glam
