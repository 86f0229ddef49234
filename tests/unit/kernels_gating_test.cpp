// Top-2 gating (GShard Algorithm 1): routing worked by hand, both second-choice policies,
// the capacity formula, the aux loss, finite differences for the backward pass, and the
// same bits for 1 and 2 compute threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/gating.hpp"
#include "kernels/parallel.hpp"
#include "kernels/random.hpp"
#include "tests/unit/gradcheck.hpp"

namespace glam {
namespace {

using testing::expect_gradients_near;
using testing::numeric_gradient;
using testing::random_vector;

void with_threads(int n, const std::function<void()>& body) {
  const int saved = compute_threads();
  set_compute_threads(n);
  body();
  set_compute_threads(saved);
}

template <class T>
std::vector<T> identity(index e) {
  std::vector<T> w(std::size_t(e * e), T(0));
  for (index i = 0; i < e; ++i) w[std::size_t(i * e + i)] = T(1);
  return w;
}

// Gating with Wg = I (M = E), so that x holds the logits directly.
struct logit_gate {
  routing route;
  std::vector<float> probs;
  logit_gate(const std::vector<float>& logits, index e, gating_options opt) {
    const index n = index(logits.size()) / e;
    probs.resize(logits.size());
    auto wg = identity<float>(e);
    gating_forward(logits.data(), wg.data(), n, e, e, opt, route, probs.data());
  }
};

struct capacity_row {
  index tokens, experts;
  double factor;
  index capacity;
};

TEST(GatingTest, CapacityFormula) {
  const capacity_row rows[] = {
      {2048, 8, 2.0, 512},  // glam-small: floor(512) is already a multiple of 4
      {2048, 64, 2.0, 64},  //
      {16, 8, 2.0, 4},      // floor(4) = 4
      {10, 8, 1.0, 4},      // floor(1.25) = 1 -> 4 -> max(4, 4)
      {100, 8, 2.0, 28},    // floor(25) = 25 -> 28
      {100, 3, 1.25, 44},   // floor(41.67) = 41 -> 44
      {1000, 7, 2.0, 288},  // floor(285.7) = 285 -> 288
      {64, 2, 0.5, 16},     //
      {0, 4, 2.0, 4},       // the floor of 4 still holds
      {3, 2, 1.0, 4},       // capacity may exceed the token count
  };
  for (const auto& r : rows)
    EXPECT_EQ(gating_capacity(r.tokens, r.experts, r.factor), r.capacity)
        << r.tokens << " tokens, " << r.experts << " experts, cf " << r.factor;
  EXPECT_THROW(gating_capacity(16, 0, 2.0), std::logic_error);
  EXPECT_THROW(gating_capacity(16, 4, 0.0), std::logic_error);
  EXPECT_THROW(gating_capacity(16, 4, NAN), std::logic_error);
}

TEST(GatingTest, CapacityOverflowAndDropOrderByHand) {
  // E = 3, C = 2. Every row holds the logits {2, 1, 0} in some order, so the top two are
  // e, 1 and the renormalised weights are e/(e+1) and 1/(e+1).
  const std::vector<float> logits = {
      2, 1, 0,  // s0: e1 = 0, e2 = 1
      2, 0, 1,  // s1: e1 = 0, e2 = 2
      2, 1, 0,  // s2: e1 = 0 (third first choice of expert 0: dropped), e2 = 1
      0, 2, 1,  // s3: e1 = 1, e2 = 2
      1, 0, 2,  // s4: e1 = 2, e2 = 0
  };
  gating_options opt;
  opt.capacity = 2;
  logit_gate g(logits, 3, opt);
  const routing& r = g.route;
  // Pass 1 gives expert 0 slots {s0: 0, s1: 1}, expert 1 {s3: 0}, expert 2 {s4: 0}.
  // Pass 2 fills after them: s0 takes expert 1 slot 1 (after s3, a later token), s1
  // expert 2 slot 1; s2, s3 and s4 find their second expert full.
  EXPECT_EQ(r.expert1, (std::vector<std::int32_t>{0, 0, 0, 1, 2}));
  EXPECT_EQ(r.expert2, (std::vector<std::int32_t>{1, 2, 1, 2, 0}));
  EXPECT_EQ(r.slot1, (std::vector<std::int32_t>{0, 1, -1, 0, 0}));
  EXPECT_EQ(r.slot2, (std::vector<std::int32_t>{1, 1, -1, -1, -1}));
  EXPECT_EQ(r.counts, (std::vector<index>{2, 2, 2}));
  EXPECT_EQ(r.dropped_tokens, 1);   // s2 keeps neither
  EXPECT_EQ(r.dropped_choices, 4);  // s2 both, s3 and s4 their second
  const double e = std::exp(1.0);
  const double hi = e / (e + 1), lo = 1 / (e + 1);
  const double w1[] = {hi, hi, 0, hi, hi}, w2[] = {lo, lo, 0, 0, 0};
  for (int s = 0; s < 5; ++s) {
    EXPECT_NEAR(r.weight1[std::size_t(s)], w1[s], 1e-6) << "token " << s;
    EXPECT_NEAR(r.weight2[std::size_t(s)], w2[s], 1e-6) << "token " << s;
  }
  // Softmax saved for backward.
  const double z = e * e + e + 1;
  EXPECT_NEAR(g.probs[0], e * e / z, 1e-6);
  EXPECT_NEAR(g.probs[1], e / z, 1e-6);
  EXPECT_NEAR(g.probs[2], 1 / z, 1e-6);
  // f = (3/5, 1/5, 1/5); m_e = mean of the rows' softmax: expert 0 sees e², e², e², 1, e.
  EXPECT_NEAR(r.top1_fraction[0], 0.6, 1e-7);
  EXPECT_NEAR(r.top1_fraction[1], 0.2, 1e-7);
  const double m0 = (3 * e * e + 1 + e) / (5 * z), m1 = (e + 1 + e + e * e + 1) / (5 * z),
               m2 = (1 + e + 1 + e + e * e) / (5 * z);
  EXPECT_NEAR(r.mean_prob[0], m0, 1e-6);
  EXPECT_NEAR(r.aux, 9 * (m0 * 0.6 + m1 * 0.2 + m2 * 0.2) / 3, 1e-6);
}

TEST(GatingTest, TiesGoToTheLowerExpertIndex) {
  const std::vector<float> logits = {
      1, 1, 0, 0,  // e1 = 0, e2 = 1
      0, 3, 3, 3,  // e1 = 1, e2 = 2
      5, 5, 5, 5,  // e1 = 0, e2 = 1
  };
  gating_options opt;
  opt.capacity = 4;
  logit_gate g(logits, 4, opt);
  EXPECT_EQ(g.route.expert1, (std::vector<std::int32_t>{0, 1, 0}));
  EXPECT_EQ(g.route.expert2, (std::vector<std::int32_t>{1, 2, 1}));
  for (int s = 0; s < 3; ++s) {
    EXPECT_FLOAT_EQ(g.route.weight1[std::size_t(s)], 0.5f);
    EXPECT_FLOAT_EQ(g.route.weight2[std::size_t(s)], 0.5f);
  }
}

TEST(GatingTest, AuxLossIsOneAtPerfectBalanceAndAHandValueOtherwise) {
  // Perfect balance: token s's logits are a cyclic shift of one vector by s mod E.
  const index e = 4, n = 32;
  const float base[] = {0.3f, -1.2f, 2.0f, 0.7f};
  std::vector<float> logits;
  for (index s = 0; s < n; ++s)
    for (index j = 0; j < e; ++j) logits.push_back(base[(j + s) % e]);
  gating_options opt;
  opt.capacity = gating_capacity(n, e, 2.0);
  logit_gate balanced(logits, e, opt);
  for (index j = 0; j < e; ++j) EXPECT_FLOAT_EQ(balanced.route.top1_fraction[std::size_t(j)], 0.25f);
  EXPECT_NEAR(balanced.route.aux, 1.0, 1e-6);

  // Unbalanced, E = 2: both tokens have softmax (3/4, 1/4) and pick expert 0:
  // m = (3/4, 1/4), f = (1, 0), aux = 4 · mean(3/4 · 1, 1/4 · 0) = 1.5.
  const float l3 = float(std::log(3.0));
  logit_gate skewed({l3, 0, l3, 0}, 2, opt);
  EXPECT_NEAR(skewed.route.mean_prob[0], 0.75, 1e-7);
  EXPECT_NEAR(skewed.route.aux, 1.5, 1e-6);
  // Mirrored tokens balance it again: m = (1/2, 1/2), f = (1/2, 1/2).
  logit_gate mirrored({l3, 0, 0, l3}, 2, opt);
  EXPECT_NEAR(mirrored.route.aux, 1.0, 1e-6);
}

// The routing passes re-done from the top-2 choices, for the random policy.
struct expected_routing {
  std::vector<std::int32_t> slot1, slot2;
  std::vector<index> counts;
};

expected_routing simulate(const routing& r, const std::vector<float>& probs, gate_policy policy,
                          std::uint64_t seed) {
  const index n = r.tokens, e = r.experts, c = r.capacity;
  expected_routing x{std::vector<std::int32_t>(std::size_t(n), -1), std::vector<std::int32_t>(std::size_t(n), -1),
                     std::vector<index>(std::size_t(e), 0)};
  for (index s = 0; s < n; ++s) {
    auto& cnt = x.counts[std::size_t(r.expert1[std::size_t(s)])];
    if (cnt < c) x.slot1[std::size_t(s)] = std::int32_t(cnt++);
  }
  random_stream draws(seed);  // one draw per token, in token order
  for (index s = 0; s < n; ++s) {
    const double u = draws.uniform();
    const float p1 = probs[std::size_t(s * e + r.expert1[std::size_t(s)])];
    const float p2 = probs[std::size_t(s * e + r.expert2[std::size_t(s)])];
    const float g2 = p2 / (p1 + p2);
    auto& cnt = x.counts[std::size_t(r.expert2[std::size_t(s)])];
    if (cnt < c && (policy == gate_policy::all || 2.0 * double(g2) > u)) x.slot2[std::size_t(s)] = std::int32_t(cnt++);
  }
  return x;
}

TEST(GatingTest, SecondChoicePoliciesMatchAnIndependentComputationOfTheDraws) {
  const index n = 200, m = 16, e = 8;
  const auto xd = random_vector(std::size_t(n * m), 11), wd = random_vector(std::size_t(m * e), 12, 0.5);
  const std::vector<float> x(xd.begin(), xd.end()), wg(wd.begin(), wd.end());
  const std::uint64_t seed = mix_seed(1234, {7, 2, 0});  // (job seed, step, layer, shard)
  for (index capacity : {index(200), index(28)}) {
    for (gate_policy policy : {gate_policy::all, gate_policy::random}) {
      gating_options opt;
      opt.capacity = capacity;
      opt.policy = policy;
      opt.random_seed = seed;
      routing r;
      std::vector<float> probs(std::size_t(n * e));
      gating_forward(x.data(), wg.data(), n, m, e, opt, r, probs.data());
      const auto want = simulate(r, probs, policy, seed);
      EXPECT_EQ(r.slot1, want.slot1);
      EXPECT_EQ(r.slot2, want.slot2);
      EXPECT_EQ(r.counts, want.counts);
      index kept2 = 0;
      for (index s = 0; s < n; ++s) {
        kept2 += r.kept2(s);
        if (!r.kept2(s)) {
          EXPECT_EQ(r.weight2[std::size_t(s)], 0.f);
        }
        if (!r.kept1(s)) {
          EXPECT_EQ(r.weight1[std::size_t(s)], 0.f);
        }
      }
      if (policy == gate_policy::all && capacity >= n) {
        EXPECT_EQ(kept2, n);
      }
      if (policy == gate_policy::random) {
        // Non-trivial: some second choices pass the test, some do not.
        EXPECT_GT(kept2, 0);
        EXPECT_LT(kept2, n);
        // Another seed gives other decisions.
        gating_options other = opt;
        other.random_seed = mix_seed(1234, {8, 2, 0});
        routing r2;
        gating_forward(x.data(), wg.data(), n, m, e, other, r2, probs.data());
        EXPECT_NE(r2.slot2, r.slot2);
      }
    }
  }
}

TEST(GatingTest, TokensKeepingNeitherExpertAreCounted) {
  // Seven tokens all preferring experts 0 then 1, C = 4: s0..s3 keep expert 0; the
  // second choices s0..s3 fill expert 1; s4..s6 keep nothing.
  std::vector<float> logits;
  for (int s = 0; s < 7; ++s) logits.insert(logits.end(), {3.f, 2.f, 0.f});
  gating_options opt;
  opt.capacity = 4;
  logit_gate g(logits, 3, opt);
  EXPECT_EQ(g.route.slot1, (std::vector<std::int32_t>{0, 1, 2, 3, -1, -1, -1}));
  EXPECT_EQ(g.route.slot2, (std::vector<std::int32_t>{0, 1, 2, 3, -1, -1, -1}));
  EXPECT_EQ(g.route.dropped_tokens, 3);
  EXPECT_EQ(g.route.dropped_choices, 6);
  EXPECT_EQ(g.route.counts, (std::vector<index>{4, 4, 0}));
}

TEST(GatingTest, BackwardMatchesFiniteDifferences) {
  // L = Σ_s a_s·w1_s + b_s·w2_s + c·aux, with capacity drops (C = 3 < the load).
  const index n = 12, m = 5, e = 4;
  auto x = random_vector(std::size_t(n * m), 21), wg = random_vector(std::size_t(m * e), 22);
  const auto a = random_vector(std::size_t(n), 23), b = random_vector(std::size_t(n), 24);
  const double c = 0.7;
  // With and without the testing router bias: a constant on two logits, so the same backward.
  for (double bias : {0.0, 0.8})
  for (gate_policy policy : {gate_policy::all, gate_policy::random}) {
    gating_options opt;
    opt.capacity = 3;
    opt.policy = policy;
    opt.random_seed = 5;
    opt.router_bias = bias;
    basic_routing<double> route;
    std::vector<double> probs(std::size_t(n * e));
    auto loss = [&] {
      basic_routing<double> r;
      std::vector<double> p(std::size_t(n * e));
      gating_forward(x.data(), wg.data(), n, m, e, opt, r, p.data());
      double l = c * r.aux;
      for (index s = 0; s < n; ++s) l += a[std::size_t(s)] * r.weight1[std::size_t(s)] + b[std::size_t(s)] * r.weight2[std::size_t(s)];
      return l;
    };
    gating_forward(x.data(), wg.data(), n, m, e, opt, route, probs.data());
    ASSERT_GT(route.dropped_choices, 0) << "the case should exercise dropped choices";
    std::vector<double> dx(std::size_t(n * m), 0.0), dwg(std::size_t(m * e), 0.0);
    gating_backward(x.data(), wg.data(), probs.data(), route, a.data(), b.data(), c, dx.data(), dwg.data(), n,
                    m, e);
    // One compute thread: tiny GEMMs on a thread team cost more than the math here, and
    // the thread count cannot change the result (SameBitsWithOneAndTwoThreads).
    with_threads(1, [&] {
      expect_gradients_near(dx, numeric_gradient(x, loss), "gating dx");
      expect_gradients_near(dwg, numeric_gradient(wg, loss), "gating dWg");
    });
  }
}

TEST(GatingTest, BackwardAddsIntoGradients) {
  const index n = 8, m = 4, e = 3;
  const auto x = random_vector(std::size_t(n * m), 31), wg = random_vector(std::size_t(m * e), 32);
  const auto a = random_vector(std::size_t(n), 33), b = random_vector(std::size_t(n), 34);
  gating_options opt;
  opt.capacity = 8;
  basic_routing<double> route;
  std::vector<double> probs(std::size_t(n * e));
  gating_forward(x.data(), wg.data(), n, m, e, opt, route, probs.data());
  std::vector<double> dx0(std::size_t(n * m), 0.0), dx1(std::size_t(n * m), 1.5);
  gating_backward(x.data(), wg.data(), probs.data(), route, a.data(), b.data(), 0.3, dx0.data(),
                  static_cast<double*>(nullptr), n, m, e);
  gating_backward(x.data(), wg.data(), probs.data(), route, a.data(), b.data(), 0.3, dx1.data(),
                  static_cast<double*>(nullptr), n, m, e);
  for (std::size_t i = 0; i < dx0.size(); ++i) EXPECT_NEAR(dx1[i], dx0[i] + 1.5, 1e-12);
}

TEST(GatingTest, SameBitsWithOneAndTwoThreads) {
  // glam-small's group: N = 2048, M = 512, E = 8, C = 512; random policy.
  const index n = 2048, m = 512, e = 8;
  const auto xd = random_vector(std::size_t(n * m), 41), wd = random_vector(std::size_t(m * e), 42, 0.05);
  const auto ad = random_vector(std::size_t(n), 43), bd = random_vector(std::size_t(n), 44);
  const std::vector<float> x(xd.begin(), xd.end()), wg(wd.begin(), wd.end()), a(ad.begin(), ad.end()),
      b(bd.begin(), bd.end());
  gating_options opt;
  opt.capacity = gating_capacity(n, e, 2.0);
  opt.policy = gate_policy::random;
  opt.random_seed = 77;
  struct result {
    routing r;
    std::vector<float> probs, dx, dwg;
  };
  auto run = [&](int threads) {
    result out;
    with_threads(threads, [&] {
      out.probs.resize(std::size_t(n * e));
      out.dx.assign(std::size_t(n * m), 0.f);
      out.dwg.assign(std::size_t(m * e), 0.f);
      gating_forward(x.data(), wg.data(), n, m, e, opt, out.r, out.probs.data());
      gating_backward(x.data(), wg.data(), out.probs.data(), out.r, a.data(), b.data(), 0.01f, out.dx.data(),
                      out.dwg.data(), n, m, e);
    });
    return out;
  };
  const result one = run(1), two = run(2);
  auto same = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(one.probs, two.probs));
  EXPECT_TRUE(same(one.r.weight1, two.r.weight1));
  EXPECT_TRUE(same(one.r.weight2, two.r.weight2));
  EXPECT_TRUE(same(one.r.mean_prob, two.r.mean_prob));
  EXPECT_EQ(std::memcmp(&one.r.aux, &two.r.aux, sizeof(float)), 0);
  EXPECT_EQ(one.r.slot1, two.r.slot1);
  EXPECT_EQ(one.r.slot2, two.r.slot2);
  EXPECT_TRUE(same(one.dx, two.dx));
  EXPECT_TRUE(same(one.dwg, two.dwg));
}

// testing.router_bias (docs/placement.md): the bias on the logits of experts 0 and 1 sends
// most first choices there, and the probabilities are the softmax of the biased logits,
// computed here independently (in double, from the same float logits).
struct router_bias_row {
  double bias;
  double least_share_to_0_and_1;  // of the tokens' first choices
  double most_share_to_0_and_1;
};

class GatingRouterBias : public ::testing::TestWithParam<router_bias_row> {};

TEST_P(GatingRouterBias, SkewsFirstChoicesToExpertsZeroAndOne) {
  const auto& row = GetParam();
  const index n = 512, m = 32, e = 8;
  const auto xd = random_vector(std::size_t(n * m), 51), wd = random_vector(std::size_t(m * e), 52, 0.3);
  const std::vector<float> x(xd.begin(), xd.end()), wg(wd.begin(), wd.end());
  gating_options opt;
  opt.capacity = gating_capacity(n, e, 2.0);
  opt.router_bias = row.bias;
  routing route;
  std::vector<float> probs(std::size_t(n * e));
  gating_forward(x.data(), wg.data(), n, m, e, opt, route, probs.data());
  index to_01 = 0;
  for (index s = 0; s < n; ++s) to_01 += route.expert1[std::size_t(s)] < router_biased_experts ? 1 : 0;
  const double share = double(to_01) / double(n);
  EXPECT_GE(share, row.least_share_to_0_and_1);
  EXPECT_LE(share, row.most_share_to_0_and_1);
  // The logits as the kernel forms them (x·Wg in float), then the bias and a softmax.
  std::vector<float> logits(std::size_t(n * e));
  gating_options plain = opt;
  plain.router_bias = 0;
  routing unused;
  gating_forward(x.data(), wg.data(), n, m, e, plain, unused, logits.data());  // softmax of the plain logits
  for (index s = 0; s < n; ++s) {
    const float* p0 = logits.data() + s * e;
    std::vector<double> want(static_cast<std::size_t>(e));
    double sum = 0;
    for (index j = 0; j < e; ++j) {
      // log p0 recovers the plain logits up to a per-token constant, which the softmax drops.
      want[std::size_t(j)] = std::exp(std::log(double(p0[j])) + (j < router_biased_experts ? row.bias : 0.0));
      sum += want[std::size_t(j)];
    }
    for (index j = 0; j < e; ++j) EXPECT_NEAR(probs[std::size_t(s * e + j)], want[std::size_t(j)] / sum, 1e-5);
  }
}

INSTANTIATE_TEST_SUITE_P(Rows, GatingRouterBias,
                         ::testing::Values(router_bias_row{0.0, 0.1, 0.45},   // about 2 of 8 without it
                                           router_bias_row{4.0, 0.9, 1.0},    // the placement bench's skew
                                           router_bias_row{-4.0, 0.0, 0.02}));  // away from them

TEST(GatingTest, RejectsBadShapes) {
  std::vector<float> x(4), wg(4), probs(4);
  routing r;
  gating_options opt;
  EXPECT_THROW(gating_forward(x.data(), wg.data(), 4, 1, 1, opt, r, probs.data()), std::logic_error);
  opt.capacity = 0;
  EXPECT_THROW(gating_forward(x.data(), wg.data(), 2, 1, 2, opt, r, probs.data()), std::logic_error);
}

}  // namespace
}  // namespace glam
