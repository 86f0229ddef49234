// The step engines of several workers, wired by hand with messages delivered in a seeded
// random order, give the reference train_step's losses and parameters bit for bit, for
// every placement: placement invariance without sockets.
#include <gtest/gtest.h>

#include <map>
#include <cstring>
#include <random>

#include "coordinator/placement.hpp"
#include "worker/step_engine.hpp"
#include "tests/unit/model_testing.hpp"

namespace glam {
namespace {

config engine_config() {
  config c = testing::tiny_model_config();
  c.model.layers = 4;  // two MoE layers
  c.cluster.shards = 3;
  c.moe.capacity_factor = 1.0;  // drops happen
  c.moe.policy = second_expert_policy::random;
  return c;
}

struct in_flight {
  int to, from;
  std::int64_t round;
  exchange_key key;
  tensor value;
};

// Runs `rounds` of training (and one evaluation) on engines for `placement`, delivering
// every message in a random order drawn from `seed`.
class engine_cluster {
 public:
  engine_cluster(const config& c, const std::vector<unit_assignment>& placement, std::uint64_t seed)
      : cfg_(c), rng_(seed) {
    auto layout = step_layout::from_placement(placement, c.cluster.shards, c.model.experts);
    auto data = std::make_shared<synthetic_source>(c);
    for (std::size_t w = 0; w < placement.size(); ++w)
      engines_.push_back(std::make_unique<step_engine>(c, layout, static_cast<int>(w), data));
  }

  std::vector<step_report> round(std::int64_t step, bool train) {
    const std::int64_t wire = train ? step : -1 - step;
    for (auto& e : engines_) {
      e->begin(step, train);
      collect(*e, wire);
    }
    while (!queue_.empty()) {
      std::uniform_int_distribution<std::size_t> pick(0, queue_.size() - 1);
      auto i = pick(rng_);
      auto m = std::move(queue_[i]);
      queue_.erase(queue_.begin() + static_cast<std::ptrdiff_t>(i));
      EXPECT_EQ(m.round, wire);
      engines_[static_cast<std::size_t>(m.to)]->receive(m.round, m.from, m.key, std::move(m.value));
      collect(*engines_[static_cast<std::size_t>(m.to)], wire);
    }
    std::vector<step_report> out;
    for (auto& [w, r] : reports_) out.push_back(r);
    reports_.clear();
    EXPECT_EQ(out.size(), engines_.size()) << "every worker reports";
    return out;
  }

  step_loss train(std::int64_t step, bool* skipped) {
    auto reports = round(step, true);
    std::map<std::int64_t, loss_parts> by_shard;
    bool finite = true;
    for (auto& r : reports) {
      finite = finite && r.finite;
      for (auto& s : r.shards) by_shard[s.shard] = s.parts;
    }
    std::vector<loss_parts> parts;
    for (auto& [s, p] : by_shard) parts.push_back(p);
    for (auto& e : engines_) e->finish(finite);
    *skipped = !finite;
    return combine_losses(cfg_, parts);
  }

  std::vector<std::unique_ptr<step_engine>>& engines() { return engines_; }

 private:
  void collect(step_engine& e, std::int64_t wire) {
    for (auto& o : e.take_outbox()) queue_.push_back({o.to, e.self(), wire, o.key, std::move(o.value)});
    if (auto r = e.take_report()) reports_[e.self()] = *r;
  }

  config cfg_;
  std::mt19937_64 rng_;
  std::vector<std::unique_ptr<step_engine>> engines_;
  std::vector<in_flight> queue_;
  std::map<int, step_report> reports_;
};

bool same_bits(float a, float b) { return std::memcmp(&a, &b, sizeof a) == 0; }

std::vector<worker_capacity> workers(int n) {
  std::vector<worker_capacity> w;
  for (int i = 0; i < n; ++i) w.push_back({"w" + std::to_string(i), "127.0.0.1", std::uint16_t(7000 + i), 1.0, 0});
  return w;
}

struct placement_case {
  const char* name;
  int workers;
  std::uint64_t placement_seed;  // 0: the planner's placement
  std::int64_t poison_step;      // -1: none
};

class StepEngineInvariance : public ::testing::TestWithParam<placement_case> {};

TEST_P(StepEngineInvariance, EqualsTheReferenceStepBitwise) {
  const auto& pc = GetParam();
  const config c = engine_config();
  synthetic_source data(c);
  reference_trainer reference(c, data);
  auto placement = pc.placement_seed == 0
                       ? place_units(workers(pc.workers), c.cluster.shards, c.model.experts, unit_costs{})
                       : random_placement(workers(pc.workers), c.cluster.shards, c.model.experts, pc.placement_seed);
  engine_cluster cluster(c, placement, 1234 + pc.placement_seed);
  if (pc.poison_step >= 0) {
    reference.inject_nonfinite_gradient_at(pc.poison_step);
    for (auto& e : cluster.engines()) e->inject_nonfinite_gradient_at(pc.poison_step);
  }
  for (std::int64_t k = 0; k < 4; ++k) {
    auto want = reference.train_step(k);
    bool skipped = false;
    auto got = cluster.train(k, &skipped);
    EXPECT_TRUE(same_bits(got.loss, want.loss.loss)) << "step " << k << ": " << got.loss << " vs " << want.loss.loss;
    EXPECT_TRUE(same_bits(got.aux, want.loss.aux)) << "step " << k;
    EXPECT_EQ(skipped, want.skipped) << "step " << k;
  }
  // Evaluation: forward only, the same cross-entropy sums.
  const double want_val = reference.evaluate(1);
  auto reports = cluster.round(0, false);
  double ce = 0, tokens = 0;
  std::map<std::int64_t, loss_parts> by_shard;
  for (auto& r : reports)
    for (auto& s : r.shards) by_shard[s.shard] = s.parts;
  for (auto& [s, p] : by_shard) {
    ce += p.cross_entropy_sum;
    tokens += double(p.tokens);
  }
  EXPECT_EQ(ce / tokens, want_val);

  for (auto& e : cluster.engines()) {
    for (auto& sh : e->shards())
      EXPECT_TRUE(bitwise_equal(sh.params(), reference.shards()[static_cast<std::size_t>(sh.shard())].params()))
          << "shard " << sh.shard();
    for (auto& ex : e->experts())
      EXPECT_TRUE(bitwise_equal(ex.params(), reference.experts()[static_cast<std::size_t>(ex.expert())].params()))
          << "expert " << ex.expert();
  }
}

INSTANTIATE_TEST_SUITE_P(Placements, StepEngineInvariance,
                         ::testing::Values(placement_case{"one_worker", 1, 0, -1},
                                           placement_case{"two_workers", 2, 0, -1},
                                           placement_case{"three_workers", 3, 0, -1},
                                           placement_case{"three_random", 3, 11, -1},
                                           placement_case{"two_random", 2, 5, -1},
                                           placement_case{"four_random_nan_step", 4, 3, 2}),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ExchangeKey, RoundTripsAndRefusesGarbage) {
  const std::vector<exchange_key> keys = {{exchange_kind::forward_rows, 0, 0, 0},
                                          {exchange_kind::backward_out, 4095, 65535, 0},
                                          {exchange_kind::grad_sum, 0, 0, 16777215}};
  for (const auto& k : keys) {
    auto d = exchange_key::decode(k.encode());
    ASSERT_TRUE(d.has_value());
    EXPECT_EQ(d->kind, k.kind);
    EXPECT_EQ(d->layer, k.layer);
    EXPECT_EQ(d->shard, k.shard);
    EXPECT_EQ(d->item, k.item);
  }
  EXPECT_FALSE(exchange_key::decode(-1).has_value());
  EXPECT_FALSE(exchange_key::decode(0).has_value());
  EXPECT_FALSE(exchange_key::decode(std::int64_t{9} << 52).has_value());
}

TEST(StepEngine, RefusesTensorsThatDoNotFit) {
  const config c = engine_config();
  auto placement = place_units(workers(2), c.cluster.shards, c.model.experts, unit_costs{});
  auto layout = step_layout::from_placement(placement, c.cluster.shards, c.model.experts);
  step_engine e(c, layout, 0, std::make_shared<synthetic_source>(c));
  e.begin(0, true);
  EXPECT_THROW(e.receive(0, 1, {exchange_kind::forward_rows, 0, 0, 0}, tensor({3, 5})), std::runtime_error);
  EXPECT_THROW(e.receive(0, 7, {exchange_kind::forward_rows, 0, 0, 0}, tensor()), std::invalid_argument);
  EXPECT_THROW(e.receive(0, 1, {exchange_kind::grad_sum, 0, 0, 100000}, tensor({1, 1})), std::runtime_error);
}

}  // namespace
}  // namespace glam
