// The step engines of a job's unit actors, wired by hand with messages delivered in a seeded
// random order, give the reference train_step's losses and parameters bit for bit, for
// every placement: placement invariance without sockets. And an engine refuses a tensor
// the layout does not send it, and applies a step once.
#include <gtest/gtest.h>

#include <map>
#include <cstring>
#include <random>

#include "actors/unit_layout.hpp"
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
  round_id round;
  exchange_key key;
  tensor value;
};

// Runs `rounds` of training (and one evaluation) on engines for `placement`, delivering
// every message in a random order drawn from `seed`.
class engine_cluster {
 public:
  engine_cluster(const config& c, const placement& p, std::uint64_t seed) : cfg_(c), rng_(seed) {
    auto layout = unit_layout::of(p, c.cluster.shards, c.model.experts);
    auto data = std::make_shared<synthetic_source>(c);
    for (int a = 0; a < layout.size(); ++a) engines_.push_back(std::make_unique<step_engine>(c, layout, a, data));
  }

  std::vector<step_report> round(std::int64_t step, bool train) {
    const round_id wire = train ? round_id::training(step) : round_id::validation(step);
    for (auto& e : engines_) {
      e->begin(wire);
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
    EXPECT_EQ(out.size(), engines_.size()) << "every unit actor reports";
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
  void collect(step_engine& e, const round_id& wire) {
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

TEST(StepEngine, RefusesTensorsThatTheLayoutDoesNotSend) {
  const config c = engine_config();
  auto layout = unit_layout::of(place_units(workers(2), c.cluster.shards, c.model.experts, unit_costs{}),
                                c.cluster.shards, c.model.experts);
  const int expert_actor = layout.expert_actors().front();
  const int shard0 = layout.shard_actor(0), shard1 = layout.shard_actor(1);
  step_engine experts(c, layout, expert_actor, std::make_shared<synthetic_source>(c));
  const index rows = static_cast<index>(layout.actor(expert_actor).experts.size()) * expert_capacity(c);
  // The expected shape, per sender and exchange: what the job implies, nothing else.
  const exchange_key fwd{exchange_kind::forward_rows, 0, 0, 0};
  EXPECT_EQ(experts.expected_shape(shard0, fwd), (std::vector<index>{rows, c.model.d_model}));
  EXPECT_FALSE(experts.expected_shape(shard1, fwd)) << "shard 0's rows come from shard 0's actor only";
  EXPECT_FALSE(experts.expected_shape(shard0, {exchange_kind::forward_rows, 99, 0, 0})) << "no MoE layer 99";
  EXPECT_FALSE(experts.expected_shape(shard0, {exchange_kind::grad_sum, 0, 0, 0})) << "no dense state here";
  EXPECT_FALSE(experts.expected_shape(77, fwd)) << "no unit actor 77";
  experts.begin(round_id::training(0));
  EXPECT_THROW(experts.receive(round_id::training(0), shard0, fwd, tensor({3, 5})), std::invalid_argument);
  EXPECT_THROW(experts.receive(round_id::training(0), 77, fwd, tensor({0})), std::invalid_argument);
  // The same shard's rows of one layer twice in a round: refused, not computed twice.
  EXPECT_NO_THROW(experts.receive(round_id::training(0), shard0, fwd, tensor({0})));
  EXPECT_THROW(experts.receive(round_id::training(0), shard0, fwd, tensor({0})), std::runtime_error);
}

TEST(StepEngine, HeldMessagesOfOtherRoundsAreBounded) {
  const config c = engine_config();
  auto layout = unit_layout::of(place_units(workers(2), c.cluster.shards, c.model.experts, unit_costs{}),
                                c.cluster.shards, c.model.experts);
  const int expert_actor = layout.expert_actors().front();
  step_engine experts(c, layout, expert_actor, std::make_shared<synthetic_source>(c));
  const exchange_key fwd{exchange_kind::forward_rows, 0, 0, 0};
  // A peer that keeps sending rows of rounds that never begin fills a bounded queue only.
  bool refused = false;
  for (std::int64_t k = 1; k < 100000 && !refused; ++k) try {
      experts.receive(round_id::training(k), layout.shard_actor(0), fwd, tensor({0}));
    } catch (const std::runtime_error& e) {
      refused = std::string(e.what()).find("held") != std::string::npos;
    }
  EXPECT_TRUE(refused);
}

TEST(StepEngine, AStepIsAppliedOnce) {
  config c = engine_config();
  c.cluster.shards = 1;
  engine_cluster cluster(c, place_units(workers(1), c.cluster.shards, c.model.experts, unit_costs{}), 1);
  bool skipped = false;
  cluster.train(0, &skipped);
  // finish() ran once in train(); a second decision for the same round is a bug.
  for (auto& e : cluster.engines()) EXPECT_THROW(e->finish(true), std::logic_error);
}

}  // namespace
}  // namespace glam
