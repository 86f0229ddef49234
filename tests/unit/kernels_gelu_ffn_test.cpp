// gelu_ffn (dense gated-GELU FFN): gelu_tanh against its formula, finite differences for x,
// Wg, W1, W2, float against double, the same bits for 1 and 2 threads, and rows computed
// alone equal to rows in a batch.
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>

#include "kernels/gelu_ffn.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

double gelu_reference(double z) {
  return 0.5 * z * (1 + std::tanh(std::sqrt(2 / M_PI) * (z + 0.044715 * z * z * z)));
}

TEST(GeluTanh, MatchesFormula) {
  const index n = 20001;
  dvec z(n);
  for (index i = 0; i < n; ++i) z[i] = -12 + 24.0 * double(i) / double(n - 1);
  dvec gd(n);
  gelu_tanh(z.data(), gd.data(), n);
  const fvec zf = to_float(z);
  fvec gf(n);
  gelu_tanh(zf.data(), gf.data(), n);
  for (index i = 0; i < n; ++i) {
    ASSERT_NEAR(gd[i], gelu_reference(z[i]), 1e-15 * (1 + std::abs(z[i]))) << z[i];
    // The float kernel keeps its relative accuracy on the negative tail (down to z ≈ −9,
    // below which exp saturates and the values are under 1e-30); compare against the
    // same function in its sigmoid form, which does not cancel in double either.
    const double w = std::sqrt(2 / M_PI) * (zf[i] + 0.044715 * zf[i] * zf[i] * zf[i]);
    const double ref = double(zf[i]) / (1 + std::exp(-2 * w));
    // On the negative tail exp(−2w) amplifies the float rounding of w by |2w|: that is the
    // conditioning of the function in float, not an error of the kernel.
    const double rtol = 4e-7 + 1.5e-7 * std::abs(2 * w) * (w < 0);
    ASSERT_NEAR(gf[i], ref, rtol * std::abs(ref) + 1e-30) << zf[i];
  }
}

struct ffn_case {
  index n, m, h;
  double fd_rtol, float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const ffn_case& c) { return os << "N" << c.n << "_M" << c.m << "_H" << c.h; }

template <class T>
struct ffn_run {
  std::vector<T> a, u, h, y, dx, dwg, dw1, dw2;
};

template <class T>
ffn_run<T> run(const ffn_case& c, const std::vector<T>& x, const std::vector<T>& wg, const std::vector<T>& w1,
               const std::vector<T>& w2, const std::vector<T>& dy) {
  ffn_run<T> r;
  r.a.assign(c.n * c.h, T(0));
  r.u = r.h = r.a;
  r.y.assign(c.n * c.m, T(0));
  gelu_ffn_forward(x.data(), wg.data(), w1.data(), w2.data(), r.a.data(), r.u.data(), r.h.data(), r.y.data(),
                   c.n, c.m, c.h);
  if (dy.empty()) return r;
  r.dx.assign(x.size(), T(0));
  r.dwg.assign(wg.size(), T(0));
  r.dw1.assign(w1.size(), T(0));
  r.dw2.assign(w2.size(), T(0));
  gelu_ffn_backward(x.data(), wg.data(), w1.data(), w2.data(), r.a.data(), r.u.data(), r.h.data(), dy.data(),
                    r.dx.data(), r.dwg.data(), r.dw1.data(), r.dw2.data(), c.n, c.m, c.h);
  return r;
}

struct ffn_data {
  dvec x, wg, w1, w2;
};
ffn_data make_data(const ffn_case& c, std::uint32_t seed) {
  return {random_vector(c.n * c.m, seed), random_vector(c.m * c.h, seed + 1, 1 / std::sqrt(double(c.m))),
          random_vector(c.m * c.h, seed + 2, 1 / std::sqrt(double(c.m))),
          random_vector(c.h * c.m, seed + 3, 1 / std::sqrt(double(c.h)))};
}

class GeluFfnTest : public ::testing::TestWithParam<ffn_case> {};

TEST_P(GeluFfnTest, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  ffn_data d = make_data(c, 1);
  const dvec r = random_vector(c.n * c.m, 9);
  auto loss = [&] { return weighted_sum(run<double>(c, d.x, d.wg, d.w1, d.w2, {}).y, r); };
  const auto g = run<double>(c, d.x, d.wg, d.w1, d.w2, r);
  expect_gradients_near(g.dx, numeric_gradient(d.x, loss), "dx", c.fd_rtol);
  expect_gradients_near(g.dwg, numeric_gradient(d.wg, loss), "dWg", c.fd_rtol);
  expect_gradients_near(g.dw1, numeric_gradient(d.w1, loss), "dW1", c.fd_rtol);
  expect_gradients_near(g.dw2, numeric_gradient(d.w2, loss), "dW2", c.fd_rtol);
}

TEST_P(GeluFfnTest, BackwardAddsIntoGradients) {
  const auto c = GetParam();
  const ffn_data d = make_data(c, 2);
  const dvec dy = random_vector(c.n * c.m, 10);
  const auto g = run<double>(c, d.x, d.wg, d.w1, d.w2, dy);
  dvec dx(d.x.size(), 2.0), dwg(d.wg.size(), 2.0), dw1(d.w1.size(), 2.0), dw2(d.w2.size(), 2.0);
  gelu_ffn_backward(d.x.data(), d.wg.data(), d.w1.data(), d.w2.data(), g.a.data(), g.u.data(), g.h.data(),
                    dy.data(), dx.data(), dwg.data(), dw1.data(), dw2.data(), c.n, c.m, c.h);
  for (std::size_t i = 0; i < dx.size(); ++i) ASSERT_NEAR(dx[i], 2.0 + g.dx[i], 1e-12);
  for (std::size_t i = 0; i < dwg.size(); ++i) ASSERT_NEAR(dwg[i], 2.0 + g.dwg[i], 1e-12);
  for (std::size_t i = 0; i < dw1.size(); ++i) ASSERT_NEAR(dw1[i], 2.0 + g.dw1[i], 1e-12);
  for (std::size_t i = 0; i < dw2.size(); ++i) ASSERT_NEAR(dw2[i], 2.0 + g.dw2[i], 1e-12);
}

TEST_P(GeluFfnTest, FloatAgreesWithDouble) {
  const auto c = GetParam();
  const ffn_data d = make_data(c, 3);
  const dvec dy = random_vector(c.n * c.m, 11);
  const auto rd = run<double>(c, d.x, d.wg, d.w1, d.w2, dy);
  const auto rf = run<float>(c, to_float(d.x), to_float(d.wg), to_float(d.w1), to_float(d.w2), to_float(dy));
  expect_float_near_double(rf.y, rd.y, "y", c.float_rtol, 1e-5);
  expect_float_near_double(rf.h, rd.h, "h", c.float_rtol, 1e-6);
  expect_float_near_double(rf.dx, rd.dx, "dx", c.float_rtol, 1e-5);
  expect_float_near_double(rf.dwg, rd.dwg, "dWg", c.float_rtol, 1e-5 * c.n);
  expect_float_near_double(rf.dw1, rd.dw1, "dW1", c.float_rtol, 1e-5 * c.n);
  expect_float_near_double(rf.dw2, rd.dw2, "dW2", c.float_rtol, 1e-5 * c.n);
}

TEST_P(GeluFfnTest, SameBitsForOneAndTwoThreads) {
  const auto c = GetParam();
  const ffn_data d = make_data(c, 4);
  const fvec x = to_float(d.x), wg = to_float(d.wg), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.n * c.m, 12));
  ffn_run<float> r[2];
  for (int t = 1; t <= 2; ++t) with_threads(t, [&] { r[t - 1] = run<float>(c, x, wg, w1, w2, dy); });
  EXPECT_TRUE(same_bits(r[0].y, r[1].y));
  EXPECT_TRUE(same_bits(r[0].h, r[1].h));
  EXPECT_TRUE(same_bits(r[0].dx, r[1].dx));
  EXPECT_TRUE(same_bits(r[0].dwg, r[1].dwg));
  EXPECT_TRUE(same_bits(r[0].dw1, r[1].dw1));
  EXPECT_TRUE(same_bits(r[0].dw2, r[1].dw2));
}

TEST_P(GeluFfnTest, RowAloneEqualsRowInBatch) {
  const auto c = GetParam();
  const ffn_data d = make_data(c, 5);
  const fvec x = to_float(d.x), wg = to_float(d.wg), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const auto all = run<float>(c, x, wg, w1, w2, {});
  ffn_case one = c;
  one.n = 1;
  for (index i = 0; i < c.n; ++i) {
    const auto alone = run<float>(one, fvec(x.begin() + i * c.m, x.begin() + (i + 1) * c.m), wg, w1, w2, {});
    ASSERT_TRUE(same_bits(alone.y, fvec(all.y.begin() + i * c.m, all.y.begin() + (i + 1) * c.m))) << i;
    ASSERT_TRUE(same_bits(alone.h, fvec(all.h.begin() + i * c.h, all.h.begin() + (i + 1) * c.h))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, GeluFfnTest,
                         ::testing::Values(ffn_case{10, 4, 6, 1e-6, 1e-5}, ffn_case{1, 3, 5, 1e-6, 1e-5},
                                           ffn_case{7, 8, 12, 1e-6, 1e-5}, ffn_case{300, 64, 96, 0, 1e-4},
                                           // Large enough (≥ 2^24 multiply-adds) that BLIS runs 2 threads.
                                           ffn_case{520, 128, 256, 0, 1e-4}));

}  // namespace
}  // namespace glam
