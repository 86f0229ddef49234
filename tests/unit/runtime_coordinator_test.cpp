// The coordinator's plain parts: membership and failure detection with an injected clock,
// placement, and the persisted job table.
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <gtest/gtest.h>

#include "actors/security.hpp"
#include "coordinator/job_table.hpp"
#include "coordinator/membership.hpp"
#include "coordinator/placement.hpp"
#include "actors/unit_layout.hpp"

namespace glam {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string fresh_dir(const std::string& tag) {
  auto d = fs::temp_directory_path() / ("glam-rt-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

TEST(RuntimeMembership, HeartbeatTimeoutExpiresOnlySilentWorkers) {
  membership m;
  auto t0 = runtime_clock::now();
  ASSERT_EQ(m.add("a", "node-a", "127.0.0.1", 7001, t0), "");
  ASSERT_EQ(m.add("b", "node-b", "127.0.0.1", 7002, t0), "");
  EXPECT_NE(m.add("a", "node-x", "127.0.0.1", 7003, t0).find("taken"), std::string::npos);
  worker_stats st;
  st.name = "forged-name";
  st.tokens_computed = 42;
  EXPECT_TRUE(m.heartbeat("node-a", st, t0 + 2s));
  EXPECT_FALSE(m.heartbeat("node-unknown", st, t0 + 2s));
  EXPECT_EQ(m.by_name("a")->stats.name, "a");  // the registered name wins
  EXPECT_EQ(m.by_name("a")->stats.tokens_computed, 42);
  EXPECT_TRUE(m.expire(t0 + 2500ms, 3000ms, 1000ms).empty());
  auto dead = m.expire(t0 + 3500ms, 3000ms, 1000ms);
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].name, "b");
  EXPECT_EQ(m.size(), 1u);
  // A name is free again once its worker is gone.
  EXPECT_EQ(m.add("b", "node-b2", "127.0.0.1", 7002, t0 + 4s), "");
  EXPECT_EQ(m.remove_node("node-a").name, "a");
  EXPECT_EQ(m.remove_node("node-a").name, "");
}

TEST(RuntimeMembership, SilenceTheCoordinatorDidNotWatchDoesNotCount) {
  membership m;
  auto t0 = runtime_clock::now();
  ASSERT_EQ(m.add("a", "node-a", "127.0.0.1", 7001, t0), "");
  ASSERT_EQ(m.add("b", "node-b", "127.0.0.1", 7002, t0), "");
  worker_stats st;
  EXPECT_TRUE(m.expire(t0 + 200ms, 1000ms, 200ms).empty());
  EXPECT_TRUE(m.heartbeat("node-a", st, t0 + 300ms));
  // The coordinator falls 2.5 s behind (its next check was due at 400 ms): both workers'
  // heartbeats may be waiting in its mailbox, so nobody is declared dead.
  EXPECT_TRUE(m.expire(t0 + 2900ms, 1000ms, 200ms).empty());
  EXPECT_TRUE(m.heartbeat("node-a", st, t0 + 2950ms));
  // Checks on time again: b stays silent and is declared dead once it was silent for the
  // timeout while the coordinator watched; a, which answers, is not.
  EXPECT_TRUE(m.expire(t0 + 3100ms, 1000ms, 200ms).empty());
  std::vector<member> dead;
  for (auto t = 3300ms; t <= 4500ms && dead.empty(); t += 200ms) {
    EXPECT_TRUE(m.heartbeat("node-a", st, t0 + t - 100ms));
    dead = m.expire(t0 + t, 1000ms, 200ms);
  }
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].name, "b");
}

// Empty when every shard and expert is hosted exactly once, else what is wrong.
std::string placement_problem(const placement& p, std::int64_t shards, std::int64_t experts) {
  try {
    unit_layout::of(p, shards, experts);
    return {};
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
}

std::vector<worker_capacity> three_workers() {
  return {{"w0", "127.0.0.1", 1, 1.0, 0}, {"w1", "127.0.0.1", 2, 1.0, 0}, {"w2", "127.0.0.1", 3, 2.0, 0}};
}

TEST(RuntimePlacement, GreedyPacksByFinishTimeAndHostsEveryUnitOnce) {
  unit_costs costs{4.0, 1.0, 0, 0};
  auto p = place_units(three_workers(), 2, 8, costs);
  EXPECT_EQ(placement_problem(p, 2, 8), "");
  // The fast worker gets the most work; the result is a pure function of the inputs.
  double load[3] = {0, 0, 0};
  for (int w = 0; w < 3; ++w) load[w] = 4.0 * p[w].shards.size() + 1.0 * p[w].experts.size();
  EXPECT_GT(load[2], load[0]);
  EXPECT_EQ(placement_problem(place_units(three_workers(), 2, 8, costs), 2, 8), "");
  auto again = place_units(three_workers(), 2, 8, costs);
  for (int w = 0; w < 3; ++w) {
    EXPECT_EQ(again[w].shards, p[w].shards);
    EXPECT_EQ(again[w].experts, p[w].experts);
  }
}

TEST(RuntimePlacement, MemoryLimitsAreRespectedAndNamed) {
  auto ws = three_workers();
  for (auto& w : ws) w.memory_limit = 100;
  unit_costs costs{1.0, 1.0, 60, 30};
  auto p = place_units(ws, 3, 3, costs);
  EXPECT_EQ(placement_problem(p, 3, 3), "");
  for (const auto& a : p) EXPECT_LE(60 * a.shards.size() + 30 * a.experts.size(), 100u);
  try {
    place_units(ws, 4, 0, costs);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("shard"), std::string::npos);
  }
  EXPECT_THROW(place_units({}, 1, 1, costs), std::runtime_error);
}

TEST(RuntimePlacement, AWorkerRunsABoundedNumberOfShards) {
  // Each shard is a unit actor, a thread: 2000 shards on 2 workers would be 1000 threads each.
  std::vector<worker_capacity> two{{"w0", "127.0.0.1", 1, 1.0, 0}, {"w1", "127.0.0.1", 2, 1.0, 0}};
  auto p = place_units(two, 2 * max_shards_per_worker, 4, unit_costs{});
  for (const auto& a : p) EXPECT_LE(static_cast<int>(a.shards.size()), max_shards_per_worker);
  for (auto place : {+[](const std::vector<worker_capacity>& w) { return place_units(w, 2000, 4, unit_costs{}); },
                     +[](const std::vector<worker_capacity>& w) { return random_placement(w, 2000, 4, 3); }}) {
    try {
      place(two);
      ADD_FAILURE() << "2000 shards were placed on 2 workers";
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string(e.what()).find("waits for more workers"), std::string::npos) << e.what();
    }
  }
}

TEST(RuntimePlacement, SeededRandomPlacementIsValidAndReproducible) {
  for (std::uint64_t seed = 1; seed < 20; ++seed) {
    auto p = random_placement(three_workers(), 3, 5, seed);
    EXPECT_EQ(placement_problem(p, 3, 5), "");
    auto q = random_placement(three_workers(), 3, 5, seed);
    for (int w = 0; w < 3; ++w) EXPECT_EQ(p[w].experts, q[w].experts);
  }
  auto p = random_placement(three_workers(), 3, 5, 7);
  p[0].experts.push_back(99);
  EXPECT_NE(placement_problem(p, 3, 5), "");
}

TEST(RuntimeJobTable, PersistsJobsAndEpochAcrossRestarts) {
  auto dir = fresh_dir("jobs");
  std::string id;
  {
    job_table t(dir);
    EXPECT_EQ(t.epoch(), 0);
    auto& j = t.add("tiny", "[model]\n", 10);
    id = j.id;
    j.state = job_state::running;
    j.step = 4;
    t.bump_epoch();
    t.append_metrics(id, "{\"step\":4}");
    EXPECT_EQ(t.active()->id, id);
  }
  job_table t(dir);
  EXPECT_EQ(t.epoch(), 1);
  ASSERT_NE(t.find(id), nullptr);
  EXPECT_EQ(t.find(id)->state, job_state::running);
  EXPECT_EQ(t.find(id)->step, 4);
  EXPECT_TRUE(fs::exists(t.job_dir(id) + "/job.toml"));
  EXPECT_TRUE(fs::exists(t.job_dir(id) + "/metrics.jsonl"));
  auto& j2 = t.add("tiny", "[model]\n", 10);
  EXPECT_NE(j2.id, id);  // ids are never reused
  // A name cannot escape the state directory: names that are not plain are refused.
  for (const char* bad : {"../../etc/x", "..", ".", "a/b", ""}) EXPECT_THROW(t.add(bad, "[model]\n", 10), std::invalid_argument) << bad;
  EXPECT_THROW(t.add(std::string(300, 'n'), "[model]\n", 10), std::invalid_argument);
  fs::remove_all(dir);
}

TEST(RuntimeJobTable, CorruptStateFileIsAClearError) {
  auto dir = fresh_dir("corrupt");
  std::ofstream(dir + "/jobs.json") << "{not json";
  try {
    job_table t(dir);
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("jobs.json"), std::string::npos);
  }
  fs::remove_all(dir);
}

TEST(RuntimeSecret, CreatedWithMode0600AndRefusedWhenOpen) {
  auto dir = fresh_dir("secret");
  auto path = dir + "/secret";
  auto s = create_or_read_secret(path);
  EXPECT_EQ(s.size(), 64u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(create_or_read_secret(path), s);  // existing secret kept
  ::chmod(path.c_str(), 0644);
  EXPECT_THROW(read_secret_file(path), std::runtime_error);
  std::ofstream(dir + "/short") << "abc";
  ::chmod((dir + "/short").c_str(), 0600);
  EXPECT_THROW(read_secret_file(dir + "/short"), std::runtime_error);
  EXPECT_THROW(read_secret_file(dir + "/missing"), std::runtime_error);
  fs::remove_all(dir);
}

}  // namespace
}  // namespace glam
