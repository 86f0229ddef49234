// The pieces of in-memory recovery, driven by hand: the coordinator's ledger of who holds
// which snapshot (and the restore point it picks), a worker's bounded store, and the
// reassembly of a unit state sent in chunks, which trusts nothing the sender says.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>

#include "actors/tensor_chunk.hpp"
#include "coordinator/snapshot_ledger.hpp"
#include "data/checksum.hpp"
#include "worker/snapshot_store.hpp"

namespace glam {
namespace {

struct held {
  const char* worker;
  const char* unit;
  std::int64_t step;
};

struct ledger_case {
  const char* name;
  std::vector<held> records;
  std::vector<std::string> lost;  // workers forgotten before the question
  std::set<std::string> live;
  std::int64_t max_step;
  std::int64_t expect_step;  // -1: no restore point
};

const std::vector<std::string> job_units = {"dense", "expert0", "expert1"};

// w0 hosts the dense state and expert0, w1 the dense state and expert1; each is the
// other's buddy, so every unit has two holders per step.
std::vector<held> two_workers_through(std::int64_t last_step) {
  std::vector<held> out;
  for (std::int64_t s = 1; s <= last_step; ++s)
    for (const char* w : {"w0", "w1"})
      for (const char* u : {"dense", "expert0", "expert1"}) out.push_back({w, u, s});
  return out;
}

const ledger_case ledger_cases[] = {
    {"newest_step_all_hold", two_workers_through(3), {}, {"w0", "w1"}, 100, 3},
    {"capped_by_the_committed_step", two_workers_through(3), {}, {"w0", "w1"}, 2, 2},
    {"one_worker_lost_is_covered", two_workers_through(3), {"w1"}, {"w0"}, 100, 3},
    {"both_lost_nothing_left", two_workers_through(3), {"w0", "w1"}, {}, 100, -1},
    {"only_the_newest_two_steps_are_kept", two_workers_through(5), {}, {"w0", "w1"}, 3, -1},
    {"a_unit_missing_at_the_newest_step",
     [] {
       auto r = two_workers_through(2);
       r.push_back({"w0", "dense", 3});
       r.push_back({"w0", "expert0", 3});
       return r;
     }(),
     {},
     {"w0", "w1"},
     100,
     2},
    {"holders_that_are_not_live_do_not_count", two_workers_through(2), {}, {"w2"}, 100, -1},
    {"nothing_recorded", {}, {}, {"w0"}, 100, -1},
};

class RuntimeSnapshotLedger : public ::testing::TestWithParam<ledger_case> {};

TEST_P(RuntimeSnapshotLedger, PicksTheNewestStepEveryUnitShares) {
  const auto& c = GetParam();
  snapshot_ledger ledger;
  for (const auto& h : c.records) ledger.record(h.worker, h.unit, h.step);
  for (const auto& w : c.lost) ledger.forget_worker(w);
  const auto point = ledger.newest_complete(job_units, c.live, c.max_step);
  if (c.expect_step < 0) {
    EXPECT_FALSE(point.has_value()) << "step " << point->step;
    return;
  }
  ASSERT_TRUE(point.has_value());
  EXPECT_EQ(point->step, c.expect_step);
  for (const auto& u : job_units) {
    ASSERT_TRUE(point->holders.count(u)) << u;
    for (const auto& w : point->holders.at(u)) EXPECT_TRUE(c.live.count(w)) << u << " held by " << w;
  }
}

INSTANTIATE_TEST_SUITE_P(Cases, RuntimeSnapshotLedger, ::testing::ValuesIn(ledger_cases),
                         [](const auto& info) { return std::string(info.param.name); });

unit_snapshot state_of(const std::string& unit, std::int64_t step, std::size_t bytes) {
  unit_snapshot s;
  s.unit = unit;
  s.step = step;
  s.bytes.resize(bytes);
  std::mt19937 rng(static_cast<unsigned>(step * 31 + bytes));
  for (auto& b : s.bytes) b = static_cast<char>(rng());
  s.checksum = checksum64(s.bytes.data(), s.bytes.size());
  return s;
}

TEST(RuntimeSnapshotStore, KeepsTheNewestStepsOfOneJob) {
  snapshot_store store;
  for (std::int64_t step = 1; step <= 4; ++step) store.put("job-1", state_of("expert0", step, 100));
  EXPECT_EQ(store.find("job-1", "expert0", 2), nullptr) << "older than the steps kept";
  ASSERT_NE(store.find("job-1", "expert0", 4), nullptr);
  EXPECT_EQ(store.find("job-1", "expert0", 4)->step, 4);
  EXPECT_EQ(store.inventory("job-1").size(), static_cast<std::size_t>(snapshot_store::steps_kept));
  EXPECT_EQ(store.bytes(), 100 * snapshot_store::steps_kept);
  EXPECT_EQ(store.find("job-2", "expert0", 4), nullptr);

  // Another job's snapshot replaces everything held for the first.
  store.put("job-2", state_of("dense", 1, 10));
  EXPECT_TRUE(store.inventory("job-1").empty());
  EXPECT_EQ(store.bytes(), 10);
}

TEST(RuntimeStateAssembler, ReassemblesChunksInAnyOrder) {
  const unit_snapshot s = state_of("expert3", 7, 10000);
  auto chunks = split_state(s, {"tiny-1", 2}, 999);
  ASSERT_EQ(chunks.size(), 11u);
  std::reverse(chunks.begin(), chunks.end());
  state_assembler a(20000);
  for (auto& c : chunks) ASSERT_EQ(a.add(c), "");
  ASSERT_TRUE(a.complete());
  std::string why;
  const unit_snapshot back = a.take(&why);
  EXPECT_EQ(why, "");
  EXPECT_EQ(back.unit, "expert3");
  EXPECT_EQ(back.step, 7);
  EXPECT_TRUE(back.bytes == s.bytes);
}

struct chunk_case {
  const char* name;
  void (*mutate)(std::vector<blob_chunk>&);
  const char* says;  // from add(); "checksum" is said by take()
};

const chunk_case chunk_cases[] = {
    {"over_the_layout_bound", [](std::vector<blob_chunk>& c) { for (auto& x : c) x.total = 1 << 30; }, "at most"},
    {"range_outside", [](std::vector<blob_chunk>& c) { c[1].offset = c[1].total - 1; }, "outside"},
    {"received_twice", [](std::vector<blob_chunk>& c) { c[1] = c[0]; }, "received twice"},
    {"another_state", [](std::vector<blob_chunk>& c) { c[1].step += 1; }, "another state"},
    {"flipped_bit", [](std::vector<blob_chunk>& c) { c[2].data[5] ^= 1; }, "checksum"},
};

class RuntimeStateAssemblerRefuses : public ::testing::TestWithParam<chunk_case> {};

TEST_P(RuntimeStateAssemblerRefuses, NamesWhatIsWrong) {
  auto chunks = split_state(state_of("dense", 3, 3000), {"tiny-1", 0}, 1000);
  GetParam().mutate(chunks);
  state_assembler a(4000);
  std::string why;
  for (auto& c : chunks) {
    why = a.add(c);
    if (!why.empty()) break;
  }
  if (why.empty()) {
    ASSERT_TRUE(a.complete());
    const unit_snapshot s = a.take(&why);
    EXPECT_TRUE(s.unit.empty());
  }
  EXPECT_NE(why.find(GetParam().says), std::string::npos) << why;
}

INSTANTIATE_TEST_SUITE_P(Cases, RuntimeStateAssemblerRefuses, ::testing::ValuesIn(chunk_cases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam
