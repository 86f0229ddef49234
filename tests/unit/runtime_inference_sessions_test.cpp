// The coordinator's table of serving sessions (coordinator/inference_sessions.hpp), without
// actors: where a session's units go on 1 to 3 workers, and what moves when a worker is lost
// (the lost units go to the least loaded survivors, one generation up, loading again).
#include <gtest/gtest.h>

#include "coordinator/inference_sessions.hpp"

namespace {

using namespace glam;
using owners = std::map<std::string, std::string>;

struct placement_case {
  const char* name;
  std::vector<std::string> workers;
  std::map<std::string, int> load;
  owners expected;
};

class SessionPlacement : public ::testing::TestWithParam<placement_case> {};

TEST_P(SessionPlacement, PutsTheShardOnTheLeastLoadedWorkerAndSpreadsTheExperts) {
  EXPECT_EQ(place_session_units(GetParam().workers, 4, GetParam().load), GetParam().expected);
}

INSTANTIATE_TEST_SUITE_P(
    Table, SessionPlacement,
    ::testing::Values(
        placement_case{"OneWorker", {"a"}, {}, {{"shard0", "a"}, {"expert0", "a"}, {"expert1", "a"}, {"expert2", "a"}, {"expert3", "a"}}},
        placement_case{"TwoWorkers", {"a", "b"}, {}, {{"shard0", "a"}, {"expert0", "b"}, {"expert1", "a"}, {"expert2", "b"}, {"expert3", "a"}}},
        placement_case{"ThreeWorkers", {"a", "b", "c"}, {}, {{"shard0", "a"}, {"expert0", "b"}, {"expert1", "c"}, {"expert2", "a"}, {"expert3", "b"}}},
        placement_case{"ShardOnTheLeastLoaded", {"a", "b", "c"}, {{"a", 5}, {"b", 1}, {"c", 3}},
                       {{"shard0", "b"}, {"expert0", "c"}, {"expert1", "a"}, {"expert2", "b"}, {"expert3", "c"}}}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(SessionPlacement, NeedsAWorker) { EXPECT_THROW(place_session_units({}, 4), std::runtime_error); }

infer_assignment spec() {
  infer_assignment s;
  s.checkpoint = "/ckpt/step-00000002";
  s.step = 2;
  s.experts = 4;
  return s;
}

TEST(InferenceSessions, ALostWorkersUnitsMoveToTheSurvivorsOneGenerationUp) {
  inference_sessions t;
  auto& s = t.start(spec(), "client", "node", {"a", "b", "c"});
  const std::string id = s.spec.session;
  EXPECT_FALSE(s.ready());
  for (const char* w : {"a", "b", "c"}) t.loaded(id, w, {"shard0", "expert0", "expert1", "expert2", "expert3"});
  ASSERT_TRUE(t.find(id)->ready());

  // b hosts expert0 and expert3: they go to the least loaded survivors (c has one unit,
  // a two), one each.
  EXPECT_EQ(t.lose_worker("b", {"a", "c"}), std::vector<std::string>{id});
  const auto* after = t.find(id);
  EXPECT_EQ(after->owner.at("expert0"), "c");
  EXPECT_EQ(after->owner.at("expert3"), "a");
  EXPECT_EQ(after->generation.at("expert0"), 2);
  EXPECT_EQ(after->generation.at("shard0"), 1);
  EXPECT_EQ(after->loading, (std::set<std::string>{"expert0", "expert3"}));
  EXPECT_EQ(after->assignment_for("c").units, std::vector<std::string>{"expert0"});
  // A worker's answer counts only for the units placed on it.
  t.loaded(id, "a", {"expert0", "expert3"});
  EXPECT_EQ(t.find(id)->loading, std::set<std::string>{"expert0"});
  t.loaded(id, "c", {"expert0", "expert1"});
  EXPECT_TRUE(t.find(id)->ready());
  // The view clients get: every unit in order, its worker and generation.
  const auto v = t.find(id)->view();
  EXPECT_EQ(v.units, (std::vector<std::string>{"shard0", "expert0", "expert1", "expert2", "expert3"}));
  EXPECT_EQ(v.workers, (std::vector<std::string>{"a", "c", "c", "a", "a"}));
  EXPECT_EQ(v.generations, (std::vector<std::int64_t>{1, 2, 1, 1, 2}));

  // A worker without units of the session changes nothing; the last worker's loss leaves
  // units without an owner.
  EXPECT_TRUE(t.lose_worker("b", {"a", "c"}).empty());
  t.lose_worker("c", {"a"});
  EXPECT_EQ(t.find(id)->owner.at("expert1"), "a");
  EXPECT_EQ(t.lose_worker("a", {}), std::vector<std::string>{id});
  EXPECT_TRUE(t.find(id)->owner.empty());
  t.end(id);
  EXPECT_EQ(t.size(), 0u);
}

TEST(InferenceSessions, SessionsHaveTheirOwnIdsAndShareTheLoad) {
  inference_sessions t;
  const auto first = t.start(spec(), "c1", "n1", {"a", "b"}).spec.session;
  const auto second = t.start(spec(), "c2", "n2", {"a", "b"}).spec.session;
  EXPECT_NE(first, second);
  // The second session's shard goes to b, which the first loaded less (a: shard + 2 experts).
  EXPECT_EQ(t.find(second)->owner.at("shard0"), "b");
}

}  // namespace
