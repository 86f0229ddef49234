#pragma once
// Finite-difference gradient checks for the double instantiation of the kernels.
// Central differences: (f(x + h) - f(x - h)) / 2h, error O(h²) plus rounding ~eps/h;
// with h = 1e-5 in double the numeric gradient is good to ~1e-8 relative.
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <vector>

namespace glam::testing {

inline std::vector<double> random_vector(std::size_t n, std::uint32_t seed, double scale = 1.0) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> d(0.0, scale);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// Numeric gradient of the scalar `loss()` with respect to every element of `x`
// (x is perturbed in place and restored).
inline std::vector<double> numeric_gradient(std::vector<double>& x, const std::function<double()>& loss,
                                            double h = 1e-5) {
  std::vector<double> g(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    const double saved = x[i];
    x[i] = saved + h;
    const double up = loss();
    x[i] = saved - h;
    const double down = loss();
    x[i] = saved;
    g[i] = (up - down) / (2 * h);
  }
  return g;
}

// Every element within atol + rtol·|numeric|.
inline void expect_gradients_near(const std::vector<double>& analytic, const std::vector<double>& numeric,
                                  const std::string& what, double rtol = 1e-5, double atol = 1e-7) {
  ASSERT_EQ(analytic.size(), numeric.size()) << what;
  int reported = 0;
  for (std::size_t i = 0; i < analytic.size(); ++i) {
    const double tol = atol + rtol * std::abs(numeric[i]);
    if (!(std::abs(analytic[i] - numeric[i]) <= tol) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: analytic " << analytic[i] << " numeric " << numeric[i];
  }
}

}  // namespace glam::testing
