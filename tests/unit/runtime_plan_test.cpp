// A worker checks every job plan before it builds anything (plan_problem): the placement
// hosts every unit once, the config validates, the worker runs a bounded number of unit
// actors, and the job's data and checkpoints lie under the directories the worker was
// started with.
#include <filesystem>

#include <gtest/gtest.h>

#include "tests/tiny_job.hpp"
#include "worker/worker_actor.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;

job_plan good_plan() {
  job_plan p;
  p.tag = {"tiny-1", 0};
  p.config_toml = glam::testing::tiny_job_toml(2);
  p.units = {{"w0", "127.0.0.1", 1, {0}, {0, 1}}, {"w1", "127.0.0.1", 2, {1}, {2, 3}}};
  p.checkpoint_dir = "/srv/glam/checkpoints/tiny";
  return p;
}

struct plan_case {
  const char* name;
  void (*mutate)(job_plan&);
  const char* says;  // "" when the plan is fine
};

const plan_case plan_cases[] = {
    {"good", [](job_plan&) {}, ""},
    {"shard_twice", [](job_plan& p) { p.units[1].shards = {0}; }, "hosts shard 0 twice"},
    {"shard_missing", [](job_plan& p) { p.units[1].shards.clear(); }, "leaves shard 1 unhosted"},
    {"expert_out_of_range", [](job_plan& p) { p.units[1].experts.push_back(99); }, "expert 99"},
    {"not_in_plan", [](job_plan& p) { p.units[0].worker = "w9"; }, "is not in the plan"},
    {"no_units_is_fine", [](job_plan& p) { p.units.push_back({"w0b", "127.0.0.1", 3, {}, {}}); }, ""},
    {"bad_config", [](job_plan& p) { p.config_toml = "[model]\nlayers = \"x\"\n"; }, "missing key model.vocab_size"},
    {"too_many_shards",
     [](job_plan& p) {
       p.config_toml = glam::testing::tiny_job_toml(40);
       p.units = {{"w0", "127.0.0.1", 1, {}, {0, 1, 2, 3}}};
       for (std::int64_t s = 0; s < 40; ++s) p.units[0].shards.push_back(s);
     },
     "a worker runs at most 32"},
    {"checkpoints_outside", [](job_plan& p) { p.checkpoint_dir = "/etc/glam"; }, "outside this worker's --checkpoint-root"},
    {"restores_from_a_checkpoint", [](job_plan& p) { p.from = restore_kind::checkpoint; p.start_step = 40; }, ""},
    {"checkpoints_escape_by_dots", [](job_plan& p) { p.checkpoint_dir = "/srv/glam/checkpoints/../../../etc"; },
     "outside this worker's --checkpoint-root"},
    {"data_outside",
     [](job_plan& p) {
       auto& t = p.config_toml;
       t.replace(t.find("synthetic = true"), 16, "dir = \"/etc\"");
     },
     "outside this worker's --data-root"},
};

class RuntimePlan : public ::testing::TestWithParam<plan_case> {};

TEST_P(RuntimePlan, AWorkerRefusesAPlanItCannotHostWithTheReason) {
  auto plan = good_plan();
  GetParam().mutate(plan);
  const auto why = plan_problem(plan, "w0", "/srv/glam/data", "/srv/glam/checkpoints");
  if (std::string(GetParam().says).empty())
    EXPECT_EQ(why, "");
  else
    EXPECT_NE(why.find(GetParam().says), std::string::npos) << why;
}

INSTANTIATE_TEST_SUITE_P(Plans, RuntimePlan, ::testing::ValuesIn(plan_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(RuntimePlan, AWorkerWithoutACheckpointRootRefusesJobsThatCheckpoint) {
  const auto why = plan_problem(good_plan(), "w0", "/srv/glam/data", "");
  EXPECT_NE(why.find("start it with --checkpoint-root"), std::string::npos) << why;
  auto plan = good_plan();
  plan.checkpoint_dir.clear();  // a job that writes no checkpoints
  EXPECT_EQ(plan_problem(plan, "w0", "/srv/glam/data", ""), "");
}

}  // namespace
}  // namespace glam
