// expert_ffn (ReLU expert; gated-GELU through gelu_ffn): finite differences for x, W1, W2,
// float against double, the same bits for 1 and 2 threads, rows alone equal to rows in a
// batch, zero padding rows giving zero outputs and no weight gradient, the gated variant
// equal to gelu_ffn bit for bit, and the split backward (rows now, weights later) against
// plain loops, finite differences and the one-call backward's bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <ostream>

#include "kernels/expert_ffn.hpp"
#include "kernels/gelu_ffn.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct expert_case {
  index rows, m, h;
  double fd_rtol, float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const expert_case& c) { return os << "R" << c.rows << "_M" << c.m << "_H" << c.h; }

template <class T>
struct expert_run {
  std::vector<T> saved, y, dx, dwg, dw1, dw2;
};

template <class T>
expert_run<T> run(ffn_activation act, const expert_case& c, const std::vector<T>& x, const std::vector<T>& wg,
                  const std::vector<T>& w1, const std::vector<T>& w2, const std::vector<T>& dy) {
  expert_run<T> r;
  r.saved.assign(c.rows * expert_saved_per_row(act, c.h), T(0));
  r.y.assign(c.rows * c.m, T(0));
  expert_weights<T> w{wg.empty() ? nullptr : wg.data(), w1.data(), w2.data()};
  expert_ffn_forward(act, x.data(), w, r.saved.data(), r.y.data(), c.rows, c.m, c.h);
  if (dy.empty()) return r;
  r.dx.assign(x.size(), T(0));
  r.dwg.assign(wg.size(), T(0));
  r.dw1.assign(w1.size(), T(0));
  r.dw2.assign(w2.size(), T(0));
  expert_gradients<T> g{wg.empty() ? nullptr : r.dwg.data(), r.dw1.data(), r.dw2.data()};
  expert_ffn_backward(act, x.data(), w, r.saved.data(), dy.data(), r.dx.data(), g, c.rows, c.m, c.h);
  return r;
}

struct expert_data {
  dvec x, wg, w1, w2;
};
expert_data make_data(const expert_case& c, std::uint32_t seed) {
  return {random_vector(c.rows * c.m, seed), random_vector(c.m * c.h, seed + 1, 1 / std::sqrt(double(c.m))),
          random_vector(c.m * c.h, seed + 2, 1 / std::sqrt(double(c.m))),
          random_vector(c.h * c.m, seed + 3, 1 / std::sqrt(double(c.h)))};
}

class ExpertFfnTest : public ::testing::TestWithParam<expert_case> {};

TEST_P(ExpertFfnTest, ReluBackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  expert_data d = make_data(c, 1);
  const dvec r = random_vector(c.rows * c.m, 9);
  auto loss = [&] { return weighted_sum(run<double>(ffn_activation::relu, c, d.x, {}, d.w1, d.w2, {}).y, r); };
  const auto g = run<double>(ffn_activation::relu, c, d.x, {}, d.w1, d.w2, r);
  // Finite differences are exact away from ReLU's kink; the random pre-activations sit far
  // from 0 compared with h = 1e-5.
  expect_gradients_near(g.dx, numeric_gradient(d.x, loss), "dx", c.fd_rtol);
  expect_gradients_near(g.dw1, numeric_gradient(d.w1, loss), "dW1", c.fd_rtol);
  expect_gradients_near(g.dw2, numeric_gradient(d.w2, loss), "dW2", c.fd_rtol);
}

TEST_P(ExpertFfnTest, GatedGeluBackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  expert_data d = make_data(c, 2);
  const dvec r = random_vector(c.rows * c.m, 10);
  const auto act = ffn_activation::gated_gelu;
  auto loss = [&] { return weighted_sum(run<double>(act, c, d.x, d.wg, d.w1, d.w2, {}).y, r); };
  const auto g = run<double>(act, c, d.x, d.wg, d.w1, d.w2, r);
  expect_gradients_near(g.dx, numeric_gradient(d.x, loss), "dx", c.fd_rtol);
  expect_gradients_near(g.dwg, numeric_gradient(d.wg, loss), "dWg", c.fd_rtol);
  expect_gradients_near(g.dw1, numeric_gradient(d.w1, loss), "dW1", c.fd_rtol);
  expect_gradients_near(g.dw2, numeric_gradient(d.w2, loss), "dW2", c.fd_rtol);
}

TEST_P(ExpertFfnTest, GatedGeluIsGeluFfnBitForBit) {
  const auto c = GetParam();
  const expert_data d = make_data(c, 3);
  const fvec x = to_float(d.x), wg = to_float(d.wg), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.rows * c.m, 11));
  const auto e = run<float>(ffn_activation::gated_gelu, c, x, wg, w1, w2, dy);
  const index rh = c.rows * c.h;
  fvec a(rh), u(rh), h(rh), y(c.rows * c.m), dx(x.size()), dwg(wg.size()), dw1(w1.size()), dw2(w2.size());
  gelu_ffn_forward(x.data(), wg.data(), w1.data(), w2.data(), a.data(), u.data(), h.data(), y.data(), c.rows, c.m, c.h);
  gelu_ffn_backward(x.data(), wg.data(), w1.data(), w2.data(), a.data(), u.data(), h.data(), dy.data(), dx.data(),
                    dwg.data(), dw1.data(), dw2.data(), c.rows, c.m, c.h);
  EXPECT_TRUE(same_bits(e.y, y));
  EXPECT_TRUE(same_bits(fvec(e.saved.begin() + 2 * rh, e.saved.end()), h));
  EXPECT_TRUE(same_bits(e.dx, dx));
  EXPECT_TRUE(same_bits(e.dwg, dwg));
  EXPECT_TRUE(same_bits(e.dw1, dw1));
  EXPECT_TRUE(same_bits(e.dw2, dw2));
}

TEST_P(ExpertFfnTest, ReluFloatAgreesWithDouble) {
  const auto c = GetParam();
  const expert_data d = make_data(c, 4);
  const dvec dy = random_vector(c.rows * c.m, 12);
  const auto act = ffn_activation::relu;
  const auto rd = run<double>(act, c, d.x, {}, d.w1, d.w2, dy);
  const auto rf = run<float>(act, c, to_float(d.x), {}, to_float(d.w1), to_float(d.w2), to_float(dy));
  expect_float_near_double(rf.y, rd.y, "y", c.float_rtol, 1e-5);
  expect_float_near_double(rf.dx, rd.dx, "dx", c.float_rtol, 1e-5);
  expect_float_near_double(rf.dw1, rd.dw1, "dW1", c.float_rtol, 1e-5 * c.rows);
  expect_float_near_double(rf.dw2, rd.dw2, "dW2", c.float_rtol, 1e-5 * c.rows);
}

TEST_P(ExpertFfnTest, SameBitsForOneAndTwoThreads) {
  const auto c = GetParam();
  const expert_data d = make_data(c, 5);
  const fvec x = to_float(d.x), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.rows * c.m, 13));
  expert_run<float> r[2];
  for (int t = 1; t <= 2; ++t)
    with_threads(t, [&] { r[t - 1] = run<float>(ffn_activation::relu, c, x, {}, w1, w2, dy); });
  EXPECT_TRUE(same_bits(r[0].y, r[1].y));
  EXPECT_TRUE(same_bits(r[0].dx, r[1].dx));
  EXPECT_TRUE(same_bits(r[0].dw1, r[1].dw1));
  EXPECT_TRUE(same_bits(r[0].dw2, r[1].dw2));
}

TEST_P(ExpertFfnTest, RowAloneEqualsRowInBatch) {
  const auto c = GetParam();
  const expert_data d = make_data(c, 6);
  const fvec x = to_float(d.x), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.rows * c.m, 14));
  const auto all = run<float>(ffn_activation::relu, c, x, {}, w1, w2, dy);
  expert_case one = c;
  one.rows = 1;
  for (index i = 0; i < c.rows; ++i) {
    auto row = [&](const fvec& v) { return fvec(v.begin() + i * c.m, v.begin() + (i + 1) * c.m); };
    const auto alone = run<float>(ffn_activation::relu, one, row(x), {}, w1, w2, row(dy));
    ASSERT_TRUE(same_bits(alone.y, row(all.y))) << i;
    ASSERT_TRUE(same_bits(alone.dx, row(all.dx))) << i;
  }
}

TEST_P(ExpertFfnTest, ZeroPaddingRowsContributeNothing) {
  // A dispatch buffer pads unused capacity slots with zero rows (zero input, zero output
  // gradient): they must give zero output and leave the weight gradients' values unchanged.
  const auto c = GetParam();
  const expert_data d = make_data(c, 7);
  const fvec x = to_float(d.x), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.rows * c.m, 15));
  expert_case padded = c;
  padded.rows = c.rows + 3;
  fvec xp = x, dyp = dy;
  xp.resize(padded.rows * c.m, 0.f);
  dyp.resize(padded.rows * c.m, 0.f);
  const auto a = run<float>(ffn_activation::relu, c, x, {}, w1, w2, dy);
  const auto b = run<float>(ffn_activation::relu, padded, xp, {}, w1, w2, dyp);
  for (index i = c.rows * c.m; i < padded.rows * c.m; ++i) ASSERT_EQ(b.y[i], 0.f);
  expect_float_near_double(b.dw1, dvec(a.dw1.begin(), a.dw1.end()), "dW1", 1e-6, 1e-7);
  expect_float_near_double(b.dw2, dvec(a.dw2.begin(), a.dw2.end()), "dW2", 1e-6, 1e-7);
}

// The split backward as an expert unit runs it: the rows part once per chunk of `chunk`
// rows (a shard's rows), last chunk first (arrival order must not matter), then the weights
// part over all rows. Gated GELU overwrites a and u with da and du, as the unit does.
template <class T>
expert_run<T> run_split(ffn_activation act, const expert_case& c, const std::vector<T>& x, const std::vector<T>& wg,
                        const std::vector<T>& w1, const std::vector<T>& w2, const std::vector<T>& dy, index chunk) {
  expert_run<T> r = run<T>(act, c, x, wg, w1, w2, {});
  r.dx.assign(x.size(), T(0));
  r.dwg.assign(wg.size(), T(0));
  r.dw1.assign(w1.size(), T(0));
  r.dw2.assign(w2.size(), T(0));
  const index rh = c.rows * c.h;
  std::vector<T> dpre(act == ffn_activation::relu ? rh : 0);
  T* a = r.saved.data();
  T* u = a + rh;
  const T* h = act == ffn_activation::relu ? r.saved.data() : r.saved.data() + 2 * rh;
  const index chunks = (c.rows + chunk - 1) / chunk;
  for (index k = chunks - 1; k >= 0; --k) {
    const index begin = k * chunk, n = std::min(chunk, c.rows - begin);
    const index xm = begin * c.m, xh = begin * c.h;
    if (act == ffn_activation::relu)
      relu_ffn_backward_rows(w1.data(), w2.data(), h + xh, dy.data() + xm, r.dx.data() + xm, dpre.data() + xh, n, c.m,
                             c.h);
    else
      gated_ffn_backward_rows(wg.data(), w1.data(), w2.data(), a + xh, u + xh, dy.data() + xm, r.dx.data() + xm,
                              a + xh, u + xh, n, c.m, c.h);
  }
  if (act == ffn_activation::relu)
    relu_ffn_backward_weights(x.data(), h, dy.data(), dpre.data(), r.dw1.data(), r.dw2.data(), c.rows, c.m, c.h);
  else
    gated_ffn_backward_weights(x.data(), h, dy.data(), a, u, r.dwg.data(), r.dw1.data(), r.dw2.data(), c.rows, c.m,
                               c.h);
  return r;
}

// A plain-loop double reference of the ReLU expert's backward: the formulas, written out.
struct reference_grads {
  dvec dx, dw1, dw2;
};
reference_grads relu_reference(const expert_case& c, const dvec& x, const dvec& w1, const dvec& w2, const dvec& dy) {
  reference_grads g{dvec(x.size()), dvec(w1.size()), dvec(w2.size())};
  for (index r = 0; r < c.rows; ++r) {
    dvec h(c.h), dpre(c.h);
    for (index j = 0; j < c.h; ++j) {
      double p = 0;
      for (index i = 0; i < c.m; ++i) p += x[r * c.m + i] * w1[i * c.h + j];
      h[j] = p > 0 ? p : 0;
      double dh = 0;
      for (index o = 0; o < c.m; ++o) dh += dy[r * c.m + o] * w2[j * c.m + o];
      dpre[j] = p > 0 ? dh : 0;
    }
    for (index j = 0; j < c.h; ++j)
      for (index o = 0; o < c.m; ++o) g.dw2[j * c.m + o] += h[j] * dy[r * c.m + o];
    for (index i = 0; i < c.m; ++i)
      for (index j = 0; j < c.h; ++j) {
        g.dw1[i * c.h + j] += x[r * c.m + i] * dpre[j];
        g.dx[r * c.m + i] += dpre[j] * w1[i * c.h + j];
      }
  }
  return g;
}

TEST_P(ExpertFfnTest, SplitReluBackwardMatchesPlainLoops) {
  const auto c = GetParam();
  const expert_data d = make_data(c, 8);
  const dvec dy = random_vector(c.rows * c.m, 16);
  const auto ref = relu_reference(c, d.x, d.w1, d.w2, dy);
  const auto g = run_split<double>(ffn_activation::relu, c, d.x, {}, d.w1, d.w2, dy, 3);
  expect_gradients_near(g.dx, ref.dx, "dx", 1e-12, 1e-12);
  expect_gradients_near(g.dw1, ref.dw1, "dW1", 1e-12, 1e-12);
  expect_gradients_near(g.dw2, ref.dw2, "dW2", 1e-12, 1e-12);
}

TEST_P(ExpertFfnTest, SplitBackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  for (auto act : {ffn_activation::relu, ffn_activation::gated_gelu}) {
    SCOPED_TRACE(act == ffn_activation::relu ? "relu" : "gated_gelu");
    expert_data d = make_data(c, 9);
    if (act == ffn_activation::relu) d.wg.clear();
    const dvec r = random_vector(c.rows * c.m, 17);
    auto loss = [&] { return weighted_sum(run<double>(act, c, d.x, d.wg, d.w1, d.w2, {}).y, r); };
    const auto g = run_split<double>(act, c, d.x, d.wg, d.w1, d.w2, r, 4);
    expect_gradients_near(g.dx, numeric_gradient(d.x, loss), "dx", c.fd_rtol);
    if (!d.wg.empty()) expect_gradients_near(g.dwg, numeric_gradient(d.wg, loss), "dWg", c.fd_rtol);
    expect_gradients_near(g.dw1, numeric_gradient(d.w1, loss), "dW1", c.fd_rtol);
    expect_gradients_near(g.dw2, numeric_gradient(d.w2, loss), "dW2", c.fd_rtol);
  }
}

TEST_P(ExpertFfnTest, SplitBackwardIsWholeBackwardBitForBit) {
  // Any split of the rows, in any order, with 1 or 2 threads, gives the one-call backward's
  // bits: what lets an expert compute each shard's rows as they arrive.
  const auto c = GetParam();
  const expert_data d = make_data(c, 10);
  const fvec x = to_float(d.x), wg = to_float(d.wg), w1 = to_float(d.w1), w2 = to_float(d.w2);
  const fvec dy = to_float(random_vector(c.rows * c.m, 18));
  for (auto act : {ffn_activation::relu, ffn_activation::gated_gelu}) {
    SCOPED_TRACE(act == ffn_activation::relu ? "relu" : "gated_gelu");
    const fvec g_in = act == ffn_activation::relu ? fvec() : wg;
    const auto whole = run<float>(act, c, x, g_in, w1, w2, dy);
    for (index chunk : {index(1), index(5), c.rows})
      for (int t = 1; t <= 2; ++t) {
        expert_run<float> split;
        with_threads(t, [&] { split = run_split<float>(act, c, x, g_in, w1, w2, dy, chunk); });
        EXPECT_TRUE(same_bits(split.dx, whole.dx)) << "chunk " << chunk << ", threads " << t;
        EXPECT_TRUE(same_bits(split.dwg, whole.dwg)) << "chunk " << chunk << ", threads " << t;
        EXPECT_TRUE(same_bits(split.dw1, whole.dw1)) << "chunk " << chunk << ", threads " << t;
        EXPECT_TRUE(same_bits(split.dw2, whole.dw2)) << "chunk " << chunk << ", threads " << t;
      }
    // The dispatching pair over all rows at once, too.
    expert_run<float> r = run<float>(act, c, x, g_in, w1, w2, {});
    fvec dx(x.size()), dwg(wg.size()), dw1(w1.size()), dw2(w2.size());
    fvec pre(c.rows * expert_pre_grads_per_row(act, c.h));
    expert_weights<float> w{g_in.empty() ? nullptr : g_in.data(), w1.data(), w2.data()};
    expert_gradients<float> g{g_in.empty() ? nullptr : dwg.data(), dw1.data(), dw2.data()};
    expert_ffn_backward_rows(act, w, r.saved.data(), dy.data(), dx.data(), pre.data(), c.rows, c.m, c.h);
    expert_ffn_backward_weights(act, x.data(), r.saved.data(), dy.data(), pre.data(), g, c.rows, c.m, c.h);
    EXPECT_TRUE(same_bits(dx, whole.dx));
    if (!g_in.empty()) {
      EXPECT_TRUE(same_bits(dwg, whole.dwg));
    }
    EXPECT_TRUE(same_bits(dw1, whole.dw1));
    EXPECT_TRUE(same_bits(dw2, whole.dw2));
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, ExpertFfnTest,
                         ::testing::Values(expert_case{10, 4, 6, 1e-6, 1e-5}, expert_case{1, 3, 5, 1e-6, 1e-5},
                                           expert_case{9, 8, 12, 1e-6, 1e-5}, expert_case{260, 48, 80, 0, 1e-4}));

}  // namespace
}  // namespace glam
