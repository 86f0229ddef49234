// cross_entropy (tied output logits, softmax cross-entropy, z-loss): a naive reference,
// finite differences for h and E, float against double, the same bits for 1 and 2 threads,
// a row's loss alone equal to the row in a batch, more rows than one block, and targets
// outside the vocabulary refused.
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>
#include <stdexcept>

#include "kernels/cross_entropy.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct ce_case {
  index n, m, vocab;
  double z_weight;
  double fd_rtol, float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const ce_case& c) { return os << "N" << c.n << "_M" << c.m << "_V" << c.vocab << "_z" << c.z_weight; }

struct ce_data {
  dvec h, e;
  std::vector<std::int32_t> targets;
};

ce_data make_data(const ce_case& c, std::uint32_t seed) {
  ce_data d{random_vector(c.n * c.m, seed), random_vector(c.vocab * c.m, seed + 1), {}};
  std::mt19937 rng(seed + 2);
  for (index r = 0; r < c.n; ++r) d.targets.push_back(static_cast<std::int32_t>(rng() % c.vocab));
  return d;
}

// Row losses by the definition, in double: {ce_row, lse_row}.
std::vector<std::pair<double, double>> naive(const ce_data& d, const ce_case& c) {
  std::vector<std::pair<double, double>> out;
  for (index r = 0; r < c.n; ++r) {
    dvec logits(c.vocab);
    double mx = -1e300;
    for (index v = 0; v < c.vocab; ++v) {
      double s = 0;
      for (index j = 0; j < c.m; ++j) s += d.h[r * c.m + j] / std::sqrt(double(c.m)) * d.e[v * c.m + j];
      logits[v] = s;
      mx = std::max(mx, s);
    }
    double z = 0;
    for (double l : logits) z += std::exp(l - mx);
    const double lse = mx + std::log(z);
    out.push_back({lse - logits[d.targets[r]], lse});
  }
  return out;
}

template <class T>
struct ce_run {
  cross_entropy_sums sums;
  std::vector<T> dh, de, row;
};

template <class T>
ce_run<T> run(const ce_case& c, const std::vector<T>& h, const std::vector<T>& e,
              const std::vector<std::int32_t>& targets, double loss_scale, bool backward = true) {
  ce_run<T> r;
  r.dh.assign(h.size(), T(0));
  r.de.assign(e.size(), T(0));
  r.row.assign(c.n, T(0));
  r.sums = cross_entropy(h.data(), e.data(), targets.data(), backward ? r.dh.data() : nullptr,
                         backward ? r.de.data() : nullptr, r.row.data(), c.n, c.m, c.vocab, c.z_weight, loss_scale);
  return r;
}

class CrossEntropyTest : public ::testing::TestWithParam<ce_case> {};

TEST_P(CrossEntropyTest, MatchesNaiveReference) {
  const auto c = GetParam();
  const ce_data d = make_data(c, 1);
  const auto ref = naive(d, c);
  const auto r = run<double>(c, d.h, d.e, d.targets, 1.0, false);
  double ce = 0, z = 0;
  for (index i = 0; i < c.n; ++i) {
    ASSERT_NEAR(r.row[i], ref[i].first, 1e-12 * (1 + ref[i].first)) << i;
    ce += ref[i].first;
    z += c.z_weight * ref[i].second * ref[i].second;
  }
  EXPECT_NEAR(r.sums.ce, ce, 1e-12 * (1 + ce));
  EXPECT_NEAR(r.sums.z, z, 1e-12 * (1 + z));
  for (double v : r.dh) ASSERT_EQ(v, 0.0);  // forward only: no gradient written
  const auto f = run<float>(c, to_float(d.h), to_float(d.e), d.targets, 1.0, false);
  for (index i = 0; i < c.n; ++i) ASSERT_NEAR(f.row[i], ref[i].first, c.float_rtol * (1 + ref[i].first)) << i;
  EXPECT_NEAR(f.sums.ce, ce, c.float_rtol * (c.n + ce));
}

TEST_P(CrossEntropyTest, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  ce_data d = make_data(c, 2);
  const double scale = 1.0 / double(c.n + 3);
  auto loss = [&] {
    const auto r = run<double>(c, d.h, d.e, d.targets, scale, false);
    return (r.sums.ce + r.sums.z) * scale;
  };
  const auto g = run<double>(c, d.h, d.e, d.targets, scale);
  expect_gradients_near(g.dh, numeric_gradient(d.h, loss), "dh", c.fd_rtol, 1e-9);
  expect_gradients_near(g.de, numeric_gradient(d.e, loss), "dE", c.fd_rtol, 1e-9);
}

TEST_P(CrossEntropyTest, BackwardAddsIntoGradients) {
  const auto c = GetParam();
  const ce_data d = make_data(c, 3);
  const auto g = run<double>(c, d.h, d.e, d.targets, 0.5);
  dvec dh(d.h.size(), 1.0), de(d.e.size(), 1.0);
  cross_entropy(d.h.data(), d.e.data(), d.targets.data(), dh.data(), de.data(), static_cast<double*>(nullptr), c.n,
                c.m, c.vocab, c.z_weight, 0.5);
  for (std::size_t i = 0; i < dh.size(); ++i) ASSERT_NEAR(dh[i], 1.0 + g.dh[i], 1e-12);
  for (std::size_t i = 0; i < de.size(); ++i) ASSERT_NEAR(de[i], 1.0 + g.de[i], 1e-12);
}

TEST_P(CrossEntropyTest, FloatAgreesWithDouble) {
  const auto c = GetParam();
  const ce_data d = make_data(c, 4);
  const double scale = 1.0 / double(c.n);
  const auto rd = run<double>(c, d.h, d.e, d.targets, scale);
  const auto rf = run<float>(c, to_float(d.h), to_float(d.e), d.targets, scale);
  EXPECT_NEAR(rf.sums.ce, rd.sums.ce, c.float_rtol * (c.n + rd.sums.ce));
  EXPECT_NEAR(rf.sums.z, rd.sums.z, c.float_rtol * (c.n + rd.sums.z));
  expect_float_near_double(rf.dh, rd.dh, "dh", c.float_rtol, 1e-6);
  expect_float_near_double(rf.de, rd.de, "dE", c.float_rtol, 1e-6);
}

TEST_P(CrossEntropyTest, SameBitsForOneAndTwoThreads) {
  const auto c = GetParam();
  const ce_data d = make_data(c, 5);
  const fvec h = to_float(d.h), e = to_float(d.e);
  ce_run<float> r[2];
  for (int t = 1; t <= 2; ++t) with_threads(t, [&] { r[t - 1] = run<float>(c, h, e, d.targets, 1.0 / c.n); });
  EXPECT_EQ(r[0].sums.ce, r[1].sums.ce);
  EXPECT_EQ(r[0].sums.z, r[1].sums.z);
  EXPECT_TRUE(same_bits(r[0].row, r[1].row));
  EXPECT_TRUE(same_bits(r[0].dh, r[1].dh));
  EXPECT_TRUE(same_bits(r[0].de, r[1].de));
}

TEST_P(CrossEntropyTest, RowAloneEqualsRowInBatch) {
  const auto c = GetParam();
  const ce_data d = make_data(c, 6);
  const fvec h = to_float(d.h), e = to_float(d.e);
  const auto all = run<float>(c, h, e, d.targets, 1.0);
  ce_case one = c;
  one.n = 1;
  for (index i = 0; i < c.n; i += std::max<index>(1, c.n / 50)) {
    const fvec hi(h.begin() + i * c.m, h.begin() + (i + 1) * c.m);
    const auto alone = run<float>(one, hi, e, {d.targets[i]}, 1.0);
    ASSERT_EQ(alone.row[0], all.row[i]) << i;
    ASSERT_TRUE(same_bits(alone.dh, fvec(all.dh.begin() + i * c.m, all.dh.begin() + (i + 1) * c.m))) << i;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, CrossEntropyTest,
                         ::testing::Values(ce_case{10, 4, 7, 0.0, 1e-6, 1e-5}, ce_case{10, 4, 7, 0.1, 1e-6, 1e-5},
                                           ce_case{1, 3, 2, 1e-4, 1e-6, 1e-5},
                                           ce_case{600, 4, 7, 1e-4, 0, 1e-5},  // more than one block
                                           ce_case{700, 32, 300, 1e-4, 0, 1e-4}));

TEST(CrossEntropy, RefusesTargetsOutsideTheVocabulary) {
  const fvec h(2 * 4, 0.1f), e(7 * 4, 0.2f);
  for (std::int32_t bad : {7, -2}) {
    const std::vector<std::int32_t> targets = {1, bad};
    EXPECT_THROW(cross_entropy(h.data(), e.data(), targets.data(), static_cast<float*>(nullptr),
                               static_cast<float*>(nullptr), static_cast<float*>(nullptr), 2, 4, 7, 0.0, 1.0),
                 std::out_of_range);
  }
}

TEST(CrossEntropy, OutputLogitsAreScaledByInverseSqrtM) {
  const index m = 4, vocab = 3;
  const fvec h = {1, 2, 3, 4}, e = {1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1};
  fvec logits(vocab);
  output_logits(h.data(), e.data(), logits.data(), 1, m, vocab);
  EXPECT_FLOAT_EQ(logits[0], 0.5f);
  EXPECT_FLOAT_EQ(logits[1], 1.0f);
  EXPECT_FLOAT_EQ(logits[2], 5.0f);
}

}  // namespace
}  // namespace glam
