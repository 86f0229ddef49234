#pragma once
// Helpers shared by the dense-kernel tests (kernels_<op>_test.cpp): random inputs, float
// copies of double data, bitwise comparison, and running a body at a given thread count.
#include <gtest/gtest.h>

#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/parallel.hpp"
#include "tests/unit/gradcheck.hpp"

namespace glam::testing {

using dvec = std::vector<double>;
using fvec = std::vector<float>;

inline fvec to_float(const dvec& v) { return fvec(v.begin(), v.end()); }

inline bool same_bits(const fvec& a, const fvec& b) {
  return a.size() == b.size() && (a.empty() || std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
}

// Runs body with n compute threads, restoring the previous count afterwards.
inline void with_threads(int n, const std::function<void()>& body) {
  const int saved = compute_threads();
  set_compute_threads(n);
  body();
  set_compute_threads(saved);
}

// Σ y·r: the scalar whose gradient with respect to y is r, for checking backward passes.
inline double weighted_sum(const dvec& y, const dvec& r) {
  double s = 0;
  for (std::size_t i = 0; i < y.size(); ++i) s += y[i] * r[i];
  return s;
}

// Every float within atol + rtol·|reference| of the double reference.
inline void expect_float_near_double(const fvec& f, const dvec& d, const std::string& what, double rtol,
                                     double atol) {
  ASSERT_EQ(f.size(), d.size()) << what;
  int reported = 0;
  for (std::size_t i = 0; i < f.size(); ++i)
    if (!(std::abs(double(f[i]) - d[i]) <= atol + rtol * std::abs(d[i])) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: float " << f[i] << " double " << d[i];
}

}  // namespace glam::testing
