// Adafactor and the rsqrt schedule: steps worked by hand, a naive double reference for
// later steps (factored and unfactored), update clipping on and off, the ε2 floor of the
// parameter scale, the state's bookkeeping, and the same bits for 1 and 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <vector>

#include "kernels/adafactor.hpp"
#include "kernels/parallel.hpp"
#include "tests/unit/gradcheck.hpp"

namespace glam {
namespace {

using testing::random_vector;
using fvec = std::vector<float>;
using dvec = std::vector<double>;

void with_threads(int n, const std::function<void()>& body) {
  const int saved = compute_threads();
  set_compute_threads(n);
  body();
  set_compute_threads(saved);
}

fvec to_float(const dvec& v) { return fvec(v.begin(), v.end()); }

void expect_near(const fvec& got, const dvec& want, double rtol, double atol, const char* what) {
  ASSERT_EQ(got.size(), want.size());
  int reported = 0;
  for (std::size_t i = 0; i < got.size(); ++i)
    if (!(std::abs(double(got[i]) - want[i]) <= atol + rtol * std::abs(want[i])) && reported++ < 5)
      ADD_FAILURE() << what << "[" << i << "]: got " << got[i] << " want " << want[i];
}

// The paper's algorithm written out plainly in double, one update; returns the clipping
// divisor max(1, RMS(U)) so that tests can tell whether clipping was active.
struct reference_adafactor {
  index rows, cols;
  bool factored;
  long t = 0;
  dvec r, c, v;
  reference_adafactor(index rows_, index cols_)
      : rows(rows_), cols(cols_), factored(rows_ >= 128 && cols_ >= 128),
        r(std::size_t(rows_), 0.0), c(std::size_t(cols_), 0.0), v(std::size_t(rows_ * cols_), 0.0) {}

  double update(dvec& x, const fvec& g, double lr) {
    const double rho = 1.0 - std::pow(double(t + 1), -0.8);
    const auto G2 = [&](index i, index j) {
      const double gij = g[std::size_t(i * cols + j)];
      return gij * gij + 1e-30;
    };
    dvec vhat(std::size_t(rows * cols));
    if (factored) {
      for (index i = 0; i < rows; ++i) {
        double s = 0;
        for (index j = 0; j < cols; ++j) s += G2(i, j);
        r[std::size_t(i)] = rho * r[std::size_t(i)] + (1 - rho) * s;
      }
      for (index j = 0; j < cols; ++j) {
        double s = 0;
        for (index i = 0; i < rows; ++i) s += G2(i, j);
        c[std::size_t(j)] = rho * c[std::size_t(j)] + (1 - rho) * s;
      }
      double rs = 0;
      for (double ri : r) rs += ri;
      for (index i = 0; i < rows; ++i)
        for (index j = 0; j < cols; ++j) vhat[std::size_t(i * cols + j)] = r[std::size_t(i)] * c[std::size_t(j)] / rs;
    } else {
      for (index i = 0; i < rows * cols; ++i) {
        v[std::size_t(i)] = rho * v[std::size_t(i)] + (1 - rho) * G2(i / cols, i % cols);
        vhat[std::size_t(i)] = v[std::size_t(i)];
      }
    }
    dvec u(vhat.size());
    double su = 0, sx = 0;
    for (std::size_t i = 0; i < u.size(); ++i) {
      u[i] = g[i] / std::sqrt(vhat[i]);
      su += u[i] * u[i];
      sx += x[i] * x[i];
    }
    const double n = double(u.size());
    const double clip = std::max(1.0, std::sqrt(su / n) / 1.0);
    const double alpha = lr * std::max(1e-3, std::sqrt(sx / n));
    for (std::size_t i = 0; i < u.size(); ++i) x[i] -= alpha * u[i] / clip;
    ++t;
    return clip;
  }
};

TEST(AdafactorTest, FirstStepUnfactoredByHand) {
  // ρ = 0 on the first step, so V = G² (+1e-30) and U = sign(G); RMS(U) = 1: no clipping.
  // RMS(X) = sqrt((0.25 + 1 + 4) / 3) = sqrt(1.75).
  fvec x = {0.5f, -1.0f, 2.0f};
  const fvec g = {0.1f, -0.2f, 0.3f};
  adafactor_state st;
  adafactor_update(x.data(), g.data(), 1, 3, st, 0.01);
  const double alpha = 0.01 * std::sqrt(1.75);
  expect_near(x, {0.5 - alpha, -1.0 + alpha, 2.0 - alpha}, 1e-7, 0, "x");
  EXPECT_EQ(st.steps, 1);
  EXPECT_FALSE(st.factored());
  ASSERT_EQ(st.full.size(), 3u);
  EXPECT_FLOAT_EQ(st.full[1], 0.04f);  // (1 − ρ)·G² with ρ = 0
}

TEST(AdafactorTest, FirstStepFactoredByHand) {
  // G = a·bᵀ (rank one): row[i] = a_i²·Σb², col[j] = b_j²·Σa², Σrow = Σa²·Σb², so
  // V̂ = a_i²·b_j² = G² exactly (up to ε1) and U = sign(G). X ← X − lr·RMS(X)·sign(G).
  const index rows = 128, cols = 130;
  const auto a = random_vector(std::size_t(rows), 1), b = random_vector(std::size_t(cols), 2);
  const auto xd = random_vector(std::size_t(rows * cols), 3, 0.02);
  fvec g(std::size_t(rows * cols)), x = to_float(xd);
  double sx = 0;
  for (float v : x) sx += double(v) * v;
  for (index i = 0; i < rows; ++i)
    for (index j = 0; j < cols; ++j) g[std::size_t(i * cols + j)] = float(a[std::size_t(i)] * b[std::size_t(j)]);
  const double alpha = 0.05 * std::sqrt(sx / double(rows * cols));
  dvec want(x.size());
  for (std::size_t i = 0; i < x.size(); ++i) want[i] = double(x[i]) - alpha * (g[i] > 0 ? 1 : -1);
  adafactor_state st(rows, cols);
  EXPECT_TRUE(st.factored());
  EXPECT_EQ(st.elements(), rows + cols);  // factored: R + K floats, not R·K
  adafactor_update(x.data(), g.data(), rows, cols, st, 0.05);
  expect_near(x, want, 1e-5, 1e-7, "x");
}

TEST(AdafactorTest, SecondStepByHandWithClippingOnAndOff) {
  // One element, X = 1, G0 = 1: V = 1, U = 1, X1 = 1 − lr. Second step: ρ = 1 − 2^−0.8,
  // V = ρ + (1 − ρ)·G1². With one element RMS(U) = |U|.
  const double lr = 0.1, f = std::pow(2.0, -0.8), rho = 1 - f;
  {
    // G1 = 2: U = 2 / sqrt(1 + 3f) ≈ 1.212 > 1, so clipping divides it down to 1.
    fvec x = {1.0f};
    adafactor_state st;
    fvec g = {1.0f};
    adafactor_update(x.data(), g.data(), 1, 1, st, lr);
    EXPECT_FLOAT_EQ(x[0], float(1 - lr));
    g = {2.0f};
    const double u = 2 / std::sqrt(rho + f * 4);
    ASSERT_GT(u, 1.2);
    adafactor_update(x.data(), g.data(), 1, 1, st, lr);
    EXPECT_NEAR(x[0], (1 - lr) - lr * (1 - lr) * 1.0, 1e-7);
    EXPECT_EQ(st.steps, 2);
  }
  {
    // G1 = 0.5: U = 0.5 / sqrt(1 − 0.75f) ≈ 0.663 < 1: no clipping.
    fvec x = {1.0f};
    adafactor_state st;
    fvec g = {1.0f};
    adafactor_update(x.data(), g.data(), 1, 1, st, lr);
    g = {0.5f};
    const double u = 0.5 / std::sqrt(rho + f * 0.25);
    ASSERT_LT(u, 0.7);
    adafactor_update(x.data(), g.data(), 1, 1, st, lr);
    EXPECT_NEAR(x[0], (1 - lr) - lr * (1 - lr) * u, 1e-7);
  }
}

TEST(AdafactorTest, ZeroParameterUsesTheEpsilon2Floor) {
  // X = 0: α = lr · ε2; first step U = sign(G).
  fvec x(6, 0.0f);
  const fvec g = {1.0f, -2.0f, 0.5f, -0.25f, 3.0f, -1.0f};
  adafactor_state st;
  adafactor_update(x.data(), g.data(), 2, 3, st, 0.5);
  for (std::size_t i = 0; i < x.size(); ++i) EXPECT_FLOAT_EQ(x[i], g[i] > 0 ? -5e-4f : 5e-4f) << i;
}

struct reference_case {
  index rows, cols;
  const char* name;
};

TEST(AdafactorTest, LaterStepsMatchTheReference) {
  // Four steps, with a gradient burst at step 2 (clipping on) and quiet gradients at
  // step 3 (clipping off), factored and unfactored.
  const reference_case cases[] = {{128, 128, "factored 128x128"}, {130, 200, "factored 130x200"},
                                  {200, 100, "unfactored 200x100"}, {1, 64, "vector 1x64"}, {64, 1, "vector 64x1"}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::size_t n = std::size_t(c.rows * c.cols);
    dvec xr = random_vector(n, 5, 0.05);
    fvec x = to_float(xr);
    xr.assign(x.begin(), x.end());
    adafactor_state st;
    reference_adafactor ref(c.rows, c.cols);
    bool clipped = false, unclipped_later = false;
    for (int step = 0; step < 4; ++step) {
      const double scale = step == 2 ? 30.0 : step == 3 ? 0.1 : 1.0;
      fvec g = to_float(random_vector(n, std::uint32_t(100 + step), scale));
      const double clip = ref.update(xr, g, 0.01);
      if (step == 2) clipped = clip > 1.5;
      if (step == 3) unclipped_later = clip == 1.0;
      adafactor_update(x.data(), g.data(), c.rows, c.cols, st, 0.01);
      expect_near(x, xr, 2e-6, 1e-8, "x");
      xr.assign(x.begin(), x.end());  // follow the float trajectory
    }
    EXPECT_TRUE(clipped) << "the burst should activate update clipping";
    EXPECT_TRUE(unclipped_later) << "quiet gradients should leave clipping off";
    EXPECT_EQ(st.steps, 4);
    if (st.factored()) {
      ASSERT_EQ(st.row.size(), std::size_t(c.rows));
      for (index i = 0; i < c.rows; ++i) EXPECT_NEAR(st.row[std::size_t(i)], ref.r[std::size_t(i)], 1e-5 * ref.r[std::size_t(i)]);
      for (index j = 0; j < c.cols; ++j) EXPECT_NEAR(st.col[std::size_t(j)], ref.c[std::size_t(j)], 1e-5 * ref.c[std::size_t(j)]);
    }
  }
}

TEST(AdafactorTest, StateBookkeeping) {
  adafactor_state big(512, 2048), vec(512, 1), small(127, 4096);
  EXPECT_TRUE(big.factored());
  EXPECT_FALSE(vec.factored());
  EXPECT_FALSE(small.factored());
  auto bufs = big.buffers();
  ASSERT_EQ(bufs.size(), 2u);
  EXPECT_STREQ(bufs[0].name, "row");
  EXPECT_EQ(bufs[0].size, 512);
  EXPECT_STREQ(bufs[1].name, "col");
  EXPECT_EQ(bufs[1].size, 2048);
  auto vb = vec.buffers();
  ASSERT_EQ(vb.size(), 1u);
  EXPECT_STREQ(vb[0].name, "full");
  EXPECT_EQ(vb[0].size, 512);
  // A state of another shape is refused.
  fvec x(6), g(6, 1.0f);
  adafactor_state st(2, 3);
  EXPECT_THROW(adafactor_update(x.data(), g.data(), 3, 2, st, 0.1), std::logic_error);
  EXPECT_EQ(st.steps, 0);
  // A restored state continues the trajectory bit for bit (what checkpoints rely on).
  const auto xd = random_vector(200 * 150, 9, 0.1);
  fvec xa = to_float(xd);
  adafactor_state sa;
  for (int step = 0; step < 2; ++step) {
    const fvec gr = to_float(random_vector(200 * 150, std::uint32_t(50 + step)));
    adafactor_update(xa.data(), gr.data(), 200, 150, sa, 0.01);
  }
  fvec xb = xa;
  adafactor_state restored(200, 150);
  restored.steps = sa.steps;
  auto from = sa.buffers();
  auto to = restored.buffers();
  for (std::size_t i = 0; i < from.size(); ++i) std::memcpy(to[i].data, from[i].data, std::size_t(from[i].size) * sizeof(float));
  const fvec g3 = to_float(random_vector(200 * 150, 77));
  adafactor_update(xa.data(), g3.data(), 200, 150, sa, 0.01);
  adafactor_update(xb.data(), g3.data(), 200, 150, restored, 0.01);
  EXPECT_EQ(std::memcmp(xa.data(), xb.data(), xa.size() * sizeof(float)), 0);
}

TEST(AdafactorTest, SameBitsWithOneAndTwoThreads) {
  // glam-small: a 512×2048 matrix (factored) and a 512×1 vector (unfactored).
  for (auto [rows, cols] : {std::pair<index, index>{512, 2048}, {512, 1}}) {
    const std::size_t n = std::size_t(rows * cols);
    const fvec x0 = to_float(random_vector(n, 1, 0.05));
    auto run = [&](int threads) {
      fvec x = x0;
      adafactor_state st;
      with_threads(threads, [&] {
        for (int step = 0; step < 2; ++step) {
          const fvec g = to_float(random_vector(n, std::uint32_t(10 + step)));
          adafactor_update(x.data(), g.data(), rows, cols, st, 0.01);
        }
      });
      return std::make_pair(x, st);
    };
    const auto one = run(1), two = run(2);
    EXPECT_EQ(std::memcmp(one.first.data(), two.first.data(), n * sizeof(float)), 0) << rows << "x" << cols;
    EXPECT_EQ(one.second.row, two.second.row);
    EXPECT_EQ(one.second.col, two.second.col);
    EXPECT_EQ(one.second.full, two.second.full);
  }
}

struct schedule_row {
  std::int64_t t, warmup;
  double scale, lr;
};

TEST(AdafactorTest, RsqrtSchedule) {
  const schedule_row rows[] = {
      {0, 10000, 1.0, 0.01},      // warmup plateau: rsqrt(10000)
      {9999, 10000, 1.0, 0.01},   // t + 1 = warmup
      {39999, 10000, 1.0, 0.005}, // rsqrt(40000)
      {39999, 10000, 2.0, 0.01},
      {0, 1, 1.0, 1.0},           // warmup 1: rsqrt(t + 1)
      {3, 1, 1.0, 0.5},
      {99, 4, 0.1, 0.01},
  };
  for (const auto& r : rows)
    EXPECT_DOUBLE_EQ(rsqrt_schedule(r.t, r.warmup, r.scale), r.lr) << "t " << r.t << " warmup " << r.warmup;
  EXPECT_THROW(rsqrt_schedule(0, 0, 1.0), std::invalid_argument);
  EXPECT_THROW(rsqrt_schedule(-1, 10, 1.0), std::invalid_argument);
}

}  // namespace
}  // namespace glam
