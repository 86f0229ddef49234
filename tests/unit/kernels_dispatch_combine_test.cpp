// Dispatch and combine: the [E, C, M] layout by hand, finite differences for both
// backward passes and for the whole chain gating → dispatch → expert → combine, and the
// same bits for 1 and 2 compute threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/dispatch_combine.hpp"
#include "kernels/gating.hpp"
#include "kernels/parallel.hpp"
#include "tests/unit/gradcheck.hpp"

namespace glam {
namespace {

using testing::expect_gradients_near;
using testing::numeric_gradient;
using testing::random_vector;
using dvec = std::vector<double>;

void with_threads(int n, const std::function<void()>& body) {
  const int saved = compute_threads();
  set_compute_threads(n);
  body();
  set_compute_threads(saved);
}

double weighted_sum(const dvec& y, const dvec& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

// A routing written by hand: N = 4, E = 2, C = 2.
//   s0: e1 = 0 slot 0 (w .6), e2 = 1 slot 1 (w .4)
//   s1: e1 = 1 slot 0 (w .7), e2 = 0 dropped
//   s2: keeps neither
//   s3: e1 = 0 slot 1 (w .9), e2 = 1 dropped
basic_routing<double> hand_routing() {
  basic_routing<double> r;
  r.tokens = 4;
  r.experts = 2;
  r.capacity = 2;
  r.expert1 = {0, 1, 0, 0};
  r.expert2 = {1, 0, 1, 1};
  r.slot1 = {0, 0, -1, 1};
  r.slot2 = {1, -1, -1, -1};
  r.weight1 = {0.6, 0.7, 0.0, 0.9};
  r.weight2 = {0.4, 0.0, 0.0, 0.0};
  r.counts = {2, 2};
  return r;
}

TEST(DispatchCombineTest, LayoutByHand) {
  const index m = 2;
  const auto r = hand_routing();
  const dvec x = {1, 2, 3, 4, 5, 6, 7, 8};
  dvec buffer(8, -99.0);  // stale contents must be overwritten
  dispatch_forward(x.data(), r, buffer.data(), m);
  // Rows: (e0, 0) = x0, (e0, 1) = x3, (e1, 0) = x1, (e1, 1) = x0.
  EXPECT_EQ(buffer, (dvec{1, 2, 7, 8, 3, 4, 1, 2}));

  const dvec out = {10, 20, 30, 40, 50, 60, 70, 80};  // expert outputs, same rows
  dvec y(8, -99.0);
  combine_forward(out.data(), r, y.data(), m);
  // y0 = .6·(10, 20) + .4·(70, 80); y1 = .7·(50, 60); y2 = 0; y3 = .9·(30, 40).
  const dvec want = {0.6 * 10 + 0.4 * 70, 0.6 * 20 + 0.4 * 80, 0.7 * 50, 0.7 * 60, 0, 0, 0.9 * 30, 0.9 * 40};
  for (std::size_t i = 0; i < y.size(); ++i) EXPECT_DOUBLE_EQ(y[i], want[i]) << i;

  // With a padding row: only s0 routed, the other rows are zero.
  auto one = r;
  one.slot1 = {0, -1, -1, -1};
  one.slot2 = {-1, -1, -1, -1};
  dispatch_forward(x.data(), one, buffer.data(), m);
  EXPECT_EQ(buffer, (dvec{1, 2, 0, 0, 0, 0, 0, 0}));
}

TEST(DispatchCombineTest, BackwardByHand) {
  const index m = 2;
  const auto r = hand_routing();
  const dvec dbuf = {1, 2, 3, 4, 5, 6, 7, 8};
  dvec dx(8, 1.0);  // backward adds
  dispatch_backward(dbuf.data(), r, dx.data(), m);
  // dx0 += rows (e0,0) + (e1,1); dx1 += (e1,0); dx2 += nothing; dx3 += (e0,1).
  EXPECT_EQ(dx, (dvec{1 + 1 + 7, 1 + 2 + 8, 1 + 5, 1 + 6, 1, 1, 1 + 3, 1 + 4}));

  const dvec out = {10, 20, 30, 40, 50, 60, 70, 80};
  const dvec dy = {1, -1, 2, 0.5, 9, 9, -1, 3};
  dvec d_out(8, -99.0), dw1(4, 0.25), dw2(4, 0.25);
  combine_backward(out.data(), dy.data(), r, d_out.data(), dw1.data(), dw2.data(), m);
  const dvec want_out = {0.6 * 1, 0.6 * -1, 0.9 * -1, 0.9 * 3, 0.7 * 2, 0.7 * 0.5, 0.4 * 1, 0.4 * -1};
  for (std::size_t i = 0; i < d_out.size(); ++i) EXPECT_DOUBLE_EQ(d_out[i], want_out[i]) << i;
  EXPECT_EQ(dw1, (dvec{0.25 + 10 - 20, 0.25 + 100 + 30, 0.25, 0.25 - 30 + 120}));
  EXPECT_EQ(dw2, (dvec{0.25 + 70 - 80, 0.25, 0.25, 0.25}));
}

// A routing from real gating (with drops) for the finite-difference checks.
struct routed_case {
  index n = 10, m = 6, e = 3;
  basic_routing<double> route;
  routed_case() {
    const auto x = random_vector(std::size_t(n * m), 1), wg = random_vector(std::size_t(m * e), 2);
    gating_options opt;
    opt.capacity = 4;
    dvec probs(std::size_t(n * e));
    gating_forward(x.data(), wg.data(), n, m, e, opt, route, probs.data());
  }
  index rows() const { return e * route.capacity; }
};

TEST(DispatchCombineTest, DispatchBackwardMatchesFiniteDifferences) {
  routed_case c;
  ASSERT_GT(c.route.dropped_choices, 0);
  auto x = random_vector(std::size_t(c.n * c.m), 3);
  const auto r = random_vector(std::size_t(c.rows() * c.m), 4);
  auto loss = [&] {
    dvec buffer(std::size_t(c.rows() * c.m));
    dispatch_forward(x.data(), c.route, buffer.data(), c.m);
    return weighted_sum(buffer, r);
  };
  dvec dx(x.size(), 0.0);
  dispatch_backward(r.data(), c.route, dx.data(), c.m);
  expect_gradients_near(dx, numeric_gradient(x, loss), "dispatch dx");
}

TEST(DispatchCombineTest, CombineBackwardMatchesFiniteDifferences) {
  routed_case c;
  auto out = random_vector(std::size_t(c.rows() * c.m), 5);
  const auto d = random_vector(std::size_t(c.n * c.m), 6);
  auto loss = [&] {
    dvec y(std::size_t(c.n * c.m));
    combine_forward(out.data(), c.route, y.data(), c.m);
    return weighted_sum(y, d);
  };
  dvec d_out(out.size()), dw1(std::size_t(c.n), 0.0), dw2(std::size_t(c.n), 0.0);
  combine_backward(out.data(), d.data(), c.route, d_out.data(), dw1.data(), dw2.data(), c.m);
  expect_gradients_near(d_out, numeric_gradient(out, loss), "combine d_out");
  // Kept weights: the numeric gradient w.r.t. the weights; dropped: nothing (and the
  // forward pass ignores them too).
  expect_gradients_near(dw1, numeric_gradient(c.route.weight1, loss), "combine dw1");
  expect_gradients_near(dw2, numeric_gradient(c.route.weight2, loss), "combine dw2");
}

TEST(DispatchCombineTest, WholeMoeChainMatchesFiniteDifferences) {
  // x → gating → dispatch → expert (elementwise tanh) → combine, L = Σ y·D + c·aux.
  // dx = dispatch_backward(…) + gating_backward(…): the path a shard runs.
  const index n = 10, m = 5, e = 3;
  auto x = random_vector(std::size_t(n * m), 7), wg = random_vector(std::size_t(m * e), 8);
  const auto d = random_vector(std::size_t(n * m), 9);
  const double c = 0.3;
  gating_options opt;
  opt.capacity = 4;
  auto forward = [&](basic_routing<double>& r, dvec& probs, dvec& buffer, dvec& out, dvec& y) {
    probs.resize(std::size_t(n * e));
    gating_forward(x.data(), wg.data(), n, m, e, opt, r, probs.data());
    buffer.resize(std::size_t(e * r.capacity * m));
    dispatch_forward(x.data(), r, buffer.data(), m);
    out.resize(buffer.size());
    for (std::size_t i = 0; i < buffer.size(); ++i) out[i] = std::tanh(buffer[i]);
    y.resize(std::size_t(n * m));
    combine_forward(out.data(), r, y.data(), m);
    return weighted_sum(y, d) + c * r.aux;
  };
  auto loss = [&] {
    basic_routing<double> r;
    dvec probs, buffer, out, y;
    return forward(r, probs, buffer, out, y);
  };
  basic_routing<double> r;
  dvec probs, buffer, out, y;
  forward(r, probs, buffer, out, y);
  ASSERT_GT(r.dropped_choices, 0);
  dvec d_out(out.size()), dw1(std::size_t(n), 0.0), dw2(std::size_t(n), 0.0);
  combine_backward(out.data(), d.data(), r, d_out.data(), dw1.data(), dw2.data(), m);
  dvec d_buffer(out.size());
  for (std::size_t i = 0; i < out.size(); ++i) d_buffer[i] = d_out[i] * (1 - out[i] * out[i]);
  dvec dx(x.size(), 0.0), dwg(wg.size(), 0.0);
  dispatch_backward(d_buffer.data(), r, dx.data(), m);
  gating_backward(x.data(), wg.data(), probs.data(), r, dw1.data(), dw2.data(), c, dx.data(), dwg.data(), n, m, e);
  // One compute thread: see the gating test; the thread count cannot change the result.
  with_threads(1, [&] {
    expect_gradients_near(dx, numeric_gradient(x, loss), "moe chain dx");
    expect_gradients_near(dwg, numeric_gradient(wg, loss), "moe chain dWg");
  });
}

TEST(DispatchCombineTest, SameBitsWithOneAndTwoThreads) {
  // glam-small: N = 2048, M = 512, E = 8, C = 512.
  const index n = 2048, m = 512, e = 8;
  const auto xd = random_vector(std::size_t(n * m), 11), wd = random_vector(std::size_t(m * e), 12, 0.05);
  const std::vector<float> x(xd.begin(), xd.end()), wg(wd.begin(), wd.end());
  gating_options opt;
  opt.capacity = gating_capacity(n, e, 2.0);
  routing r;
  std::vector<float> probs(std::size_t(n * e));
  gating_forward(x.data(), wg.data(), n, m, e, opt, r, probs.data());
  const std::size_t rows = std::size_t(e * opt.capacity);
  std::vector<float> out(rows * std::size_t(m));
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = float(std::sin(double(i) * 0.001));
  struct result {
    std::vector<float> buffer, dx, y, d_out, dw1, dw2;
  };
  auto run = [&](int threads) {
    result res;
    with_threads(threads, [&] {
      res.buffer.resize(out.size());
      dispatch_forward(x.data(), r, res.buffer.data(), m);
      res.dx.assign(x.size(), 0.f);
      dispatch_backward(out.data(), r, res.dx.data(), m);
      res.y.resize(x.size());
      combine_forward(out.data(), r, res.y.data(), m);
      res.d_out.resize(out.size());
      res.dw1.assign(std::size_t(n), 0.f);
      res.dw2.assign(std::size_t(n), 0.f);
      combine_backward(out.data(), x.data(), r, res.d_out.data(), res.dw1.data(), res.dw2.data(), m);
    });
    return res;
  };
  const result one = run(1), two = run(2);
  auto same = [](const std::vector<float>& p, const std::vector<float>& q) {
    return p.size() == q.size() && std::memcmp(p.data(), q.data(), p.size() * sizeof(float)) == 0;
  };
  EXPECT_TRUE(same(one.buffer, two.buffer));
  EXPECT_TRUE(same(one.dx, two.dx));
  EXPECT_TRUE(same(one.y, two.y));
  EXPECT_TRUE(same(one.d_out, two.d_out));
  EXPECT_TRUE(same(one.dw1, two.dw1));
  EXPECT_TRUE(same(one.dw2, two.dw2));
}

}  // namespace
}  // namespace glam
