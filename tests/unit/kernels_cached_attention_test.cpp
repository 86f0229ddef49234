// attention over a KV cache: the naive definition (double, 1e-12), float against double,
// the training op (attention.hpp) on the whole sequence, and the property decoding rests on:
// a query computed with the others (prefill) has the same bits as the same query computed
// alone over the cache up to its position (decode), with 1 or 2 threads.
#include <gtest/gtest.h>

#include <cmath>
#include <ostream>

#include "kernels/attention.hpp"
#include "kernels/cached_attention.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

struct cached_case {
  index queries, length, heads, d_head;
  double float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const cached_case& c) {
  return os << "Q" << c.queries << "_L" << c.length << "_heads" << c.heads << "_dh" << c.d_head;
}

struct cached_data {
  dvec q, k, v, bias;  // q [Q, D]; k, v [L, D]
};

cached_data make_data(const cached_case& c, std::uint32_t seed) {
  const index D = c.heads * c.d_head;
  return {random_vector(c.queries * D, seed), random_vector(c.length * D, seed + 1),
          random_vector(c.length * D, seed + 2), random_vector(relative_bias_buckets * c.heads, seed + 3)};
}

// The definition, term by term, in double: query r sits at position L − Q + r.
dvec naive(const cached_data& d, const cached_case& c) {
  const index D = c.heads * c.d_head;
  dvec out(c.queries * D, 0.0);
  for (index r = 0; r < c.queries; ++r)
    for (index h = 0; h < c.heads; ++h) {
      const index pos = c.length - c.queries + r;
      std::vector<double> s(pos + 1);
      double mx = -1e300;
      for (index j = 0; j <= pos; ++j) {
        double dot = 0;
        for (index e = 0; e < c.d_head; ++e) dot += d.q[r * D + h * c.d_head + e] * d.k[j * D + h * c.d_head + e];
        s[j] = dot + d.bias[relative_position_bucket(j - pos) * c.heads + h];
        mx = std::max(mx, s[j]);
      }
      double z = 0;
      for (auto& x : s) z += (x = std::exp(x - mx));
      for (index j = 0; j <= pos; ++j)
        for (index e = 0; e < c.d_head; ++e) out[r * D + h * c.d_head + e] += s[j] / z * d.v[j * D + h * c.d_head + e];
    }
  return out;
}

template <class T>
std::vector<T> run(const cached_case& c, const std::vector<T>& q, const std::vector<T>& k, const std::vector<T>& v,
                   const std::vector<T>& bias) {
  std::vector<T> out(q.size(), T(-7));
  cached_attention_forward(q.data(), k.data(), v.data(), bias.data(), out.data(), c.queries, c.length, c.heads,
                           c.d_head);
  return out;
}

class CachedAttentionTest : public ::testing::TestWithParam<cached_case> {};

TEST_P(CachedAttentionTest, MatchesNaiveDefinition) {
  const auto c = GetParam();
  const cached_data d = make_data(c, 1);
  const dvec got = run<double>(c, d.q, d.k, d.v, d.bias), want = naive(d, c);
  for (std::size_t i = 0; i < want.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-12 * (1 + std::abs(want[i]))) << i;
}

TEST_P(CachedAttentionTest, FloatAgreesWithDouble) {
  const auto c = GetParam();
  const cached_data d = make_data(c, 2);
  const dvec want = run<double>(c, d.q, d.k, d.v, d.bias);
  expect_float_near_double(run<float>(c, to_float(d.q), to_float(d.k), to_float(d.v), to_float(d.bias)), want, "out",
                           c.float_rtol, 1e-5);
}

// Prefill (all queries at once) against decode (each query alone, the cache cut at its
// position): the same bits, with 1 and 2 threads.
TEST_P(CachedAttentionTest, QueryAloneEqualsQueryWithTheOthers) {
  const auto c = GetParam();
  const cached_data d = make_data(c, 3);
  const fvec q = to_float(d.q), k = to_float(d.k), v = to_float(d.v), b = to_float(d.bias);
  const index D = c.heads * c.d_head;
  fvec together[2];
  for (int t = 1; t <= 2; ++t) with_threads(t, [&] { together[t - 1] = run<float>(c, q, k, v, b); });
  EXPECT_TRUE(same_bits(together[0], together[1]));
  for (index r = 0; r < c.queries; ++r) {
    const index pos = c.length - c.queries + r;
    const cached_case one{1, pos + 1, c.heads, c.d_head, c.float_rtol};
    const fvec alone = run<float>(one, fvec(q.begin() + r * D, q.begin() + (r + 1) * D), k, v, b);
    EXPECT_TRUE(same_bits(alone, fvec(together[0].begin() + r * D, together[0].begin() + (r + 1) * D))) << "query " << r;
  }
}

// On a whole sequence (Q = L) it computes what the training op computes, to rounding: the
// training op sums with GEMMs, this one with fixed-order loops.
TEST_P(CachedAttentionTest, WholeSequenceAgreesWithTrainingAttention) {
  const auto c = GetParam();
  if (c.queries != c.length) GTEST_SKIP() << "the training op needs the whole sequence";
  const cached_data d = make_data(c, 4);
  const fvec q = to_float(d.q), k = to_float(d.k), v = to_float(d.v), b = to_float(d.bias);
  fvec train(q.size()), probs(c.heads * c.length * c.length);
  attention_forward(q.data(), k.data(), v.data(), b.data(), train.data(), probs.data(), 1, c.length, c.heads, c.d_head);
  const fvec got = run<float>(c, q, k, v, b);
  for (std::size_t i = 0; i < got.size(); ++i)
    ASSERT_NEAR(got[i], train[i], c.float_rtol * (1 + std::abs(train[i]))) << i;
}

INSTANTIATE_TEST_SUITE_P(Shapes, CachedAttentionTest,
                         ::testing::Values(cached_case{1, 1, 1, 1, 1e-5},      // the first token
                                           cached_case{5, 5, 2, 3, 1e-5},      // a prefill
                                           cached_case{1, 40, 2, 8, 1e-5},     // a decode step
                                           cached_case{7, 40, 3, 4, 1e-5},     // a prompt after a cache
                                           cached_case{150, 150, 4, 16, 1e-4},  // distances past 128
                                           cached_case{1, 200, 2, 32, 1e-4}));

TEST(CachedAttention, RefusesMoreQueriesThanTheCacheHolds) {
  fvec q(4), k(4), v(4), b(relative_bias_buckets), out(4);
  EXPECT_THROW(cached_attention_forward(q.data(), k.data(), v.data(), b.data(), out.data(), 2, 1, 1, 2), std::logic_error);
}

}  // namespace
}  // namespace glam
