// The float exp/tanh of the dense kernels: accuracy against the double library functions
// over their whole range, special values, and fixed-order sums that do not depend on
// pointer alignment.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "kernels/elementwise.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using testing::fvec;

// Largest relative error of f against ref over n evenly spaced points of [lo, hi] (run
// through a vectorised loop, which is how the kernels call these functions).
template <class F, class R>
double max_relative_error(F f, R ref, float lo, float hi, int n) {
  fvec x(n), y(n);
  for (int i = 0; i < n; ++i) x[i] = lo + (hi - lo) * float(i) / float(n - 1);
  for (int i = 0; i < n; ++i) y[i] = f(x[i]);
  double worst = 0;
  for (int i = 0; i < n; ++i) {
    const double r = ref(double(x[i]));
    if (r == 0) continue;
    worst = std::max(worst, std::abs(double(y[i]) - r) / std::abs(r));
  }
  return worst;
}

TEST(Elementwise, FastExpRelativeErrorBelow3e7) {
  const double err = max_relative_error([](float x) { return fast_exp(x); },
                                        [](double x) { return std::exp(x); }, -86.9f, 87.9f, 2000001);
  EXPECT_LT(err, 3e-7);
  const double near0 = max_relative_error([](float x) { return fast_exp(x); },
                                          [](double x) { return std::exp(x); }, -1.f, 1.f, 200001);
  EXPECT_LT(near0, 2e-7);
}

TEST(Elementwise, FastExpSpecialValues) {
  EXPECT_EQ(fast_exp(0.f), 1.f);
  EXPECT_EQ(fast_exp(-100.f), 0.f);
  EXPECT_EQ(fast_exp(-std::numeric_limits<float>::infinity()), 0.f);
  EXPECT_TRUE(std::isfinite(fast_exp(1000.f)));
  EXPECT_GT(fast_exp(1000.f), 1e38f);
  EXPECT_TRUE(std::isnan(fast_exp(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_TRUE(std::isnan(fast_exp(-std::numeric_limits<float>::quiet_NaN())));
}

TEST(Elementwise, FastTanhRelativeErrorBelow3e7) {
  const auto f = [](float x) { return fast_tanh(x); };
  const auto ref = [](double x) { return std::tanh(x); };
  EXPECT_LT(max_relative_error(f, ref, -1.f, 1.f, 200001), 3e-7);   // both sides of 0.625
  EXPECT_LT(max_relative_error(f, ref, -12.f, 12.f, 400001), 3e-7);
  EXPECT_LT(max_relative_error(f, ref, -1e-3f, 1e-3f, 20001), 3e-7);
}

TEST(Elementwise, FastTanhSpecialValues) {
  EXPECT_EQ(fast_tanh(0.f), 0.f);
  EXPECT_EQ(fast_tanh(50.f), 1.f);
  EXPECT_EQ(fast_tanh(-50.f), -1.f);
  EXPECT_EQ(fast_tanh(std::numeric_limits<float>::infinity()), 1.f);
  EXPECT_TRUE(std::isnan(fast_tanh(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(fast_tanh(-0.3f), -fast_tanh(0.3f));
  EXPECT_EQ(fast_tanh(-3.f), -fast_tanh(3.f));
}

TEST(Elementwise, ReluKeepsNaN) {
  EXPECT_EQ(relu_of(-2.f), 0.f);
  EXPECT_EQ(relu_of(3.f), 3.f);
  EXPECT_TRUE(std::isnan(relu_of(-std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(relu_slope(2.f), 1.f);
  EXPECT_EQ(relu_slope(-2.f), 0.f);
  EXPECT_EQ(relu_slope(0.f), 0.f);
}

TEST(Elementwise, MaxFixedMatchesStdAndSeesNaN) {
  for (int n : {1, 3, 8, 9, 37}) {
    fvec x(n);
    for (int i = 0; i < n; ++i) x[i] = -100.f + float((i * 37) % 11) - 0.5f * float(i);
    EXPECT_EQ(max_fixed(x.data(), n), *std::max_element(x.begin(), x.end())) << n;
    x[n / 2] = std::numeric_limits<float>::quiet_NaN();
    EXPECT_TRUE(std::isnan(max_fixed(x.data(), n))) << n;
  }
  const fvec neg = {-3.f, -1.f, -2.f, -std::numeric_limits<float>::infinity()};
  EXPECT_EQ(max_fixed(neg.data(), 4), -1.f);
}

TEST(Elementwise, FixedSumsDoNotDependOnAlignment) {
  for (int n : {5, 64, 1001}) {
    const fvec x = testing::to_float(testing::random_vector(n, 11));
    const fvec y = testing::to_float(testing::random_vector(n, 12));
    const float s = sum_fixed(x.data(), n), d = dot_fixed(x.data(), y.data(), n);
    for (int shift = 1; shift < 4; ++shift) {
      fvec xs(n + shift), ys(n + shift);
      std::copy(x.begin(), x.end(), xs.begin() + shift);
      std::copy(y.begin(), y.end(), ys.begin() + shift);
      EXPECT_EQ(sum_fixed(xs.data() + shift, n), s);
      EXPECT_EQ(dot_fixed(xs.data() + shift, ys.data() + shift, n), d);
    }
    double ref = 0;
    for (float v : x) ref += v;
    EXPECT_NEAR(s, ref, 1e-5 * n);
  }
}

}  // namespace
}  // namespace glam
