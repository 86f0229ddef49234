// Load-aware placement driven by hand: the load monitor's window averages, and the
// rebalance decision from measured busy seconds (docs/placement.md).
#include <gtest/gtest.h>

#include <algorithm>

#include "coordinator/load_monitor.hpp"
#include "coordinator/rebalance.hpp"
#include "tests/tiny_job.hpp"

namespace glam {
namespace {

TEST(RuntimeLoadMonitor, AveragesTheLastWindowOfSteps) {
  load_monitor m(2);
  m.add({{{"w0", 1.0}, {"w1", 3.0}}, {10, 30}});
  m.add({{{"w0", 1.0}, {"w1", 1.0}}, {10, 10}});
  EXPECT_TRUE(m.full());
  EXPECT_DOUBLE_EQ(m.worker_seconds().at("w1"), 2.0);
  EXPECT_DOUBLE_EQ(m.busiest_seconds(), 2.0);
  EXPECT_DOUBLE_EQ(m.balancedness(), 1.5 / 2.0);
  m.add({{{"w0", 2.0}, {"w1", 2.0}}, {0, 0}});  // the first step leaves the window
  EXPECT_DOUBLE_EQ(m.worker_seconds().at("w0"), 1.5);
  EXPECT_DOUBLE_EQ(m.balancedness(), 1.0);
  const auto share = m.routed_share();
  ASSERT_EQ(share.size(), 2u);
  EXPECT_DOUBLE_EQ(share[0], 0.5);
  EXPECT_DOUBLE_EQ(share[1], 0.5);
  EXPECT_EQ(load_monitor(5).balancedness(), 0.0) << "nothing measured";
}

config job(double min_gain, std::int64_t payback_steps) {
  config c = parse_config_string(glam::testing::tiny_job_toml(2), "tiny.toml");
  c.placement.rebalance_every = 3;
  c.placement.min_gain = min_gain;
  c.placement.payback_steps = payback_steps;
  return c;
}

std::vector<worker_capacity> three_workers() {
  return {{"w0", "127.0.0.1", 1, 10, 0}, {"w1", "127.0.0.1", 2, 10, 0}, {"w2", "127.0.0.1", 3, 10, 0}};
}

// w1 hosts half the units.
const std::vector<worker_assignment> current = {{"w0", "127.0.0.1", 1, {0}, {0}},
                                                {"w1", "127.0.0.1", 2, {1}, {1, 2}},
                                                {"w2", "127.0.0.1", 3, {}, {3}}};

struct rebalance_case {
  const char* name;
  config cfg;
  std::map<std::string, double> busy;
  double transfer_rate;
  bool adopt;
  const char* why;  // part of the reason
};

const rebalance_case rebalance_cases[] = {
    // w1 is four times slower per unit of work than the others: move work off it.
    {"slow_worker_sheds_units", job(0.1, 100), {{"w0", 0.010}, {"w1", 0.080}, {"w2", 0.004}}, 1e8, true, "predicted"},
    // The same, with a hysteresis the gain cannot clear.
    {"under_min_gain_stays", job(0.99, 100), {{"w0", 0.010}, {"w1", 0.080}, {"w2", 0.004}}, 1e8, false, "min_gain"},
    // The move would take longer than payback_steps repay.
    {"too_costly_to_move", job(0.1, 1), {{"w0", 0.010}, {"w1", 0.080}, {"w2", 0.004}}, 1, false, "payback_steps"},
    {"nothing_measured", job(0.1, 100), {}, 1e8, false, "no measured load"},
};

class RuntimeRebalance : public ::testing::TestWithParam<rebalance_case> {};

TEST_P(RuntimeRebalance, AdoptsOnlyWhatRepaysItsMove) {
  const auto& c = GetParam();
  const auto d = plan_rebalance(c.cfg, current, three_workers(), c.busy, c.transfer_rate);
  EXPECT_EQ(d.adopt, c.adopt) << d.why;
  EXPECT_NE(d.why.find(c.why), std::string::npos) << d.why;
  if (!d.adopt) return;
  EXPECT_GT(d.gain, c.cfg.placement.min_gain);
  EXPECT_GT(d.units_moved, 0);
  EXPECT_LT(d.predicted_new, d.predicted_now);
  // Every unit is placed once.
  std::vector<int> shards(2, 0), experts(4, 0);
  for (const auto& a : d.proposed) {
    for (auto s : a.shards) ++shards.at(static_cast<std::size_t>(s));
    for (auto e : a.experts) ++experts.at(static_cast<std::size_t>(e));
  }
  EXPECT_EQ(shards, std::vector<int>(2, 1));
  EXPECT_EQ(experts, std::vector<int>(4, 1));
  // Only the surplus moves: a worker keeps as many of its units of each kind as the new
  // placement gives it.
  int kept = 0, placed = 0;
  for (const auto& a : d.proposed) {
    const auto& was = *std::find_if(current.begin(), current.end(), [&](const auto& w) { return w.worker == a.worker; });
    const auto keeps = [](const std::vector<std::int64_t>& now, const std::vector<std::int64_t>& then) {
      int n = 0;
      for (auto u : now) n += std::count(then.begin(), then.end(), u) > 0 ? 1 : 0;
      return std::make_pair(n, int(std::min(now.size(), then.size())));
    };
    const auto [kept_shards, most_shards] = keeps(a.shards, was.shards);
    const auto [kept_experts, most_experts] = keeps(a.experts, was.experts);
    EXPECT_EQ(kept_shards, most_shards) << a.worker;
    EXPECT_EQ(kept_experts, most_experts) << a.worker;
    kept += kept_shards + kept_experts;
    placed += int(a.shards.size() + a.experts.size());
  }
  EXPECT_EQ(d.units_moved, placed - kept);
}

INSTANTIATE_TEST_SUITE_P(Cases, RuntimeRebalance, ::testing::ValuesIn(rebalance_cases),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace glam
