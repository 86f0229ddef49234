// rmsnorm: finite differences for x and scale, float against double, the same bits for 1 and
// 2 threads, and rows computed alone equal to rows in a batch.
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>

#include "kernels/rmsnorm.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct rmsnorm_case {
  index n, m;
  double fd_rtol, float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const rmsnorm_case& c) { return os << c.n << "x" << c.m; }

class RmsnormTest : public ::testing::TestWithParam<rmsnorm_case> {};

TEST_P(RmsnormTest, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.n * c.m > 2000) GTEST_SKIP() << "finite differences run on the small rows only";
  dvec x = random_vector(c.n * c.m, 1), scale = random_vector(c.m, 2, 0.5), r = random_vector(c.n * c.m, 3);
  for (auto& s : scale) s += 1.0;
  auto loss = [&] {
    dvec y(x.size()), rstd(c.n);
    rmsnorm_forward(x.data(), scale.data(), y.data(), rstd.data(), c.n, c.m);
    return weighted_sum(y, r);
  };
  dvec y(x.size()), rstd(c.n), dx(x.size(), 0.5), dscale(c.m, -0.25);
  rmsnorm_forward(x.data(), scale.data(), y.data(), rstd.data(), c.n, c.m);
  rmsnorm_backward(x.data(), scale.data(), rstd.data(), r.data(), dx.data(), dscale.data(), c.n, c.m);
  // The backward adds: remove the starting values before comparing.
  for (auto& v : dx) v -= 0.5;
  for (auto& v : dscale) v += 0.25;
  expect_gradients_near(dx, numeric_gradient(x, loss), "dx", c.fd_rtol);
  expect_gradients_near(dscale, numeric_gradient(scale, loss), "dscale", c.fd_rtol);
}

TEST_P(RmsnormTest, FloatAgreesWithDouble) {
  const auto c = GetParam();
  const dvec x = random_vector(c.n * c.m, 4), scale = random_vector(c.m, 5), dy = random_vector(c.n * c.m, 6);
  dvec y(x.size()), rstd(c.n), dx(x.size()), dscale(c.m);
  rmsnorm_forward(x.data(), scale.data(), y.data(), rstd.data(), c.n, c.m);
  rmsnorm_backward(x.data(), scale.data(), rstd.data(), dy.data(), dx.data(), dscale.data(), c.n, c.m);
  const fvec xf = to_float(x), sf = to_float(scale), dyf = to_float(dy);
  fvec yf(x.size()), rf(c.n), dxf(x.size()), dsf(c.m);
  rmsnorm_forward(xf.data(), sf.data(), yf.data(), rf.data(), c.n, c.m);
  rmsnorm_backward(xf.data(), sf.data(), rf.data(), dyf.data(), dxf.data(), dsf.data(), c.n, c.m);
  expect_float_near_double(yf, y, "y", c.float_rtol, 1e-6);
  expect_float_near_double(rf, rstd, "rstd", c.float_rtol, 1e-6);
  expect_float_near_double(dxf, dx, "dx", c.float_rtol, 1e-5);
  expect_float_near_double(dsf, dscale, "dscale", c.float_rtol, 1e-5 * c.n);
}

TEST_P(RmsnormTest, SameBitsForOneAndTwoThreads) {
  const auto c = GetParam();
  const fvec x = to_float(random_vector(c.n * c.m, 7)), scale = to_float(random_vector(c.m, 8)),
             dy = to_float(random_vector(c.n * c.m, 9));
  fvec out[2][4];
  for (int t = 1; t <= 2; ++t)
    with_threads(t, [&] {
      fvec y(x.size()), rstd(c.n), dx(x.size()), dscale(c.m);
      rmsnorm_forward(x.data(), scale.data(), y.data(), rstd.data(), c.n, c.m);
      rmsnorm_backward(x.data(), scale.data(), rstd.data(), dy.data(), dx.data(), dscale.data(), c.n, c.m);
      out[t - 1][0] = y, out[t - 1][1] = rstd, out[t - 1][2] = dx, out[t - 1][3] = dscale;
    });
  for (int i = 0; i < 4; ++i) EXPECT_TRUE(same_bits(out[0][i], out[1][i])) << "output " << i;
}

TEST_P(RmsnormTest, RowAloneEqualsRowInBatch) {
  const auto c = GetParam();
  const fvec x = to_float(random_vector(c.n * c.m, 10)), scale = to_float(random_vector(c.m, 11)),
             dy = to_float(random_vector(c.n * c.m, 12));
  fvec y(x.size()), rstd(c.n), dx(x.size());
  rmsnorm_forward(x.data(), scale.data(), y.data(), rstd.data(), c.n, c.m);
  rmsnorm_backward(x.data(), scale.data(), rstd.data(), dy.data(), dx.data(), static_cast<float*>(nullptr), c.n, c.m);
  fvec y1(x.size()), r1(c.n), dx1(x.size());
  for (index i = 0; i < c.n; ++i) {
    rmsnorm_forward(x.data() + i * c.m, scale.data(), y1.data() + i * c.m, r1.data() + i, 1, c.m);
    rmsnorm_backward(x.data() + i * c.m, scale.data(), r1.data() + i, dy.data() + i * c.m,
                     dx1.data() + i * c.m, static_cast<float*>(nullptr), 1, c.m);
  }
  EXPECT_TRUE(same_bits(y, y1));
  EXPECT_TRUE(same_bits(rstd, r1));
  EXPECT_TRUE(same_bits(dx, dx1));
}

INSTANTIATE_TEST_SUITE_P(Shapes, RmsnormTest,
                         ::testing::Values(rmsnorm_case{1, 4, 1e-6, 1e-5}, rmsnorm_case{10, 4, 1e-6, 1e-5},
                                           rmsnorm_case{7, 33, 1e-6, 1e-5},
                                           rmsnorm_case{130, 12, 1e-6, 1e-5},
                                           rmsnorm_case{300, 96, 0, 1e-5}));

}  // namespace
}  // namespace glam
