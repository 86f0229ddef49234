// attention core: T5 bucket hand values, a naive reference forward, finite differences for
// q, k, v and the bias table (with T = 40 so that logarithmic buckets are used), float
// against double, the same bits for 1 and 2 threads, and a batch element computed alone
// equal to the same element in a batch.
#include <gtest/gtest.h>

#include <ostream>

#include <cmath>

#include "kernels/attention.hpp"
#include "tests/unit/kernels_dense_testing.hpp"

namespace glam {
namespace {

using namespace glam::testing;

TEST(AttentionBucket, HandValues) {
  // relative_position = j − i ≤ 0 in causal attention; n = i − j.
  const std::pair<index, int> table[] = {
      {0, 0},   {-1, 1},   {-15, 15},  {-16, 16}, {-17, 16}, {-18, 16}, {-19, 17},
      {-20, 17}, {-21, 18}, {-24, 19}, {-27, 20}, {-31, 21}, {-32, 21}, {-40, 23},
      {-64, 26}, {-100, 30}, {-127, 31}, {-128, 31}, {-129, 31}, {-5000, 31}};
  for (auto [rel, bucket] : table) EXPECT_EQ(relative_position_bucket(rel), bucket) << rel;
  // Causal: a key after the query (never attended) is clipped to n = 0.
  EXPECT_EQ(relative_position_bucket(3), 0);
  // Monotone in n and never past 31.
  for (index n = 1; n < 2000; ++n) {
    EXPECT_GE(relative_position_bucket(-n), relative_position_bucket(-(n - 1)));
    EXPECT_LE(relative_position_bucket(-n), 31);
  }
}

struct attention_case {
  index batch, seq, heads, d_head;
  double fd_rtol, float_rtol;
};

inline std::ostream& operator<<(std::ostream& os, const attention_case& c) { return os << "B" << c.batch << "_T" << c.seq << "_heads" << c.heads << "_dh" << c.d_head; }

struct attention_data {
  dvec q, k, v, bias;
};

attention_data make_data(const attention_case& c, std::uint32_t seed) {
  const index n = c.batch * c.seq * c.heads * c.d_head;
  return {random_vector(n, seed), random_vector(n, seed + 1), random_vector(n, seed + 2),
          random_vector(relative_bias_buckets * c.heads, seed + 3)};
}

// The definition, term by term, in double.
dvec naive_attention(const attention_data& d, const attention_case& c) {
  const index D = c.heads * c.d_head;
  dvec out(c.batch * c.seq * D, 0.0);
  for (index b = 0; b < c.batch; ++b)
    for (index h = 0; h < c.heads; ++h)
      for (index i = 0; i < c.seq; ++i) {
        std::vector<double> s(i + 1);
        double mx = -1e300;
        for (index j = 0; j <= i; ++j) {
          double dot = 0;
          for (index e = 0; e < c.d_head; ++e)
            dot += d.q[(b * c.seq + i) * D + h * c.d_head + e] * d.k[(b * c.seq + j) * D + h * c.d_head + e];
          s[j] = dot + d.bias[relative_position_bucket(j - i) * c.heads + h];
          mx = std::max(mx, s[j]);
        }
        double z = 0;
        for (auto& v : s) z += (v = std::exp(v - mx));
        for (index j = 0; j <= i; ++j)
          for (index e = 0; e < c.d_head; ++e)
            out[(b * c.seq + i) * D + h * c.d_head + e] += s[j] / z * d.v[(b * c.seq + j) * D + h * c.d_head + e];
      }
  return out;
}

template <class T>
struct attention_run {
  std::vector<T> out, probs, dq, dk, dv, dbias;
};

template <class T>
attention_run<T> run(const attention_case& c, const std::vector<T>& q, const std::vector<T>& k,
                     const std::vector<T>& v, const std::vector<T>& bias, const std::vector<T>& dout) {
  attention_run<T> r;
  r.out.assign(q.size(), T(0));
  r.probs.assign(c.batch * c.heads * c.seq * c.seq, T(0));
  r.dq.assign(q.size(), T(0));
  r.dk.assign(q.size(), T(0));
  r.dv.assign(q.size(), T(0));
  r.dbias.assign(bias.size(), T(0));
  attention_forward(q.data(), k.data(), v.data(), bias.data(), r.out.data(), r.probs.data(), c.batch,
                    c.seq, c.heads, c.d_head);
  if (!dout.empty())
    attention_backward(q.data(), k.data(), v.data(), r.probs.data(), dout.data(), r.dq.data(), r.dk.data(),
                       r.dv.data(), r.dbias.data(), c.batch, c.seq, c.heads, c.d_head);
  return r;
}

class AttentionTest : public ::testing::TestWithParam<attention_case> {};

TEST_P(AttentionTest, ForwardMatchesNaiveDefinition) {
  const auto c = GetParam();
  const attention_data d = make_data(c, 1);
  const auto r = run<double>(c, d.q, d.k, d.v, d.bias, {});
  const dvec ref = naive_attention(d, c);
  for (std::size_t i = 0; i < ref.size(); ++i) ASSERT_NEAR(r.out[i], ref[i], 1e-12 * (1 + std::abs(ref[i]))) << i;
  // Probabilities: zero above the diagonal, rows sum to one.
  for (index row = 0; row < c.batch * c.heads * c.seq; ++row) {
    const index i = row % c.seq;
    double s = 0;
    for (index j = 0; j < c.seq; ++j) {
      const double p = r.probs[row * c.seq + j];
      if (j > i) {
        ASSERT_EQ(p, 0.0);
      }
      s += p;
    }
    ASSERT_NEAR(s, 1.0, 1e-12);
  }
}

TEST_P(AttentionTest, BackwardMatchesFiniteDifferences) {
  const auto c = GetParam();
  if (c.fd_rtol == 0) GTEST_SKIP() << "finite differences run on the small shapes only";
  attention_data d = make_data(c, 2);
  const dvec r = random_vector(d.q.size(), 9);
  auto loss = [&] { return weighted_sum(run<double>(c, d.q, d.k, d.v, d.bias, {}).out, r); };
  const auto g = run<double>(c, d.q, d.k, d.v, d.bias, r);
  expect_gradients_near(g.dq, numeric_gradient(d.q, loss), "dq", c.fd_rtol);
  expect_gradients_near(g.dk, numeric_gradient(d.k, loss), "dk", c.fd_rtol);
  expect_gradients_near(g.dv, numeric_gradient(d.v, loss), "dv", c.fd_rtol);
  expect_gradients_near(g.dbias, numeric_gradient(d.bias, loss), "dbias", c.fd_rtol);
}

TEST_P(AttentionTest, BackwardAddsIntoGradients) {
  const auto c = GetParam();
  const attention_data d = make_data(c, 3);
  const fvec q = to_float(d.q), k = to_float(d.k), v = to_float(d.v), b = to_float(d.bias);
  const fvec dout = to_float(random_vector(q.size(), 10));
  const auto once = run<float>(c, q, k, v, b, dout);
  fvec dq(q.size(), 1.f), dk(q.size(), 1.f), dv(q.size(), 1.f), db(b.size(), 1.f);
  attention_backward(q.data(), k.data(), v.data(), once.probs.data(), dout.data(), dq.data(), dk.data(),
                     dv.data(), db.data(), c.batch, c.seq, c.heads, c.d_head);
  for (std::size_t i = 0; i < q.size(); ++i) {
    ASSERT_NEAR(dq[i], 1.f + once.dq[i], 1e-5f * (1 + std::abs(once.dq[i])));
    ASSERT_NEAR(dv[i], 1.f + once.dv[i], 1e-5f * (1 + std::abs(once.dv[i])));
  }
  for (std::size_t i = 0; i < b.size(); ++i) ASSERT_NEAR(db[i], 1.f + once.dbias[i], 1e-4f * (1 + std::abs(once.dbias[i])));
}

TEST_P(AttentionTest, FloatAgreesWithDouble) {
  const auto c = GetParam();
  const attention_data d = make_data(c, 4);
  const dvec dout = random_vector(d.q.size(), 11);
  const auto rd = run<double>(c, d.q, d.k, d.v, d.bias, dout);
  const auto rf = run<float>(c, to_float(d.q), to_float(d.k), to_float(d.v), to_float(d.bias), to_float(dout));
  expect_float_near_double(rf.out, rd.out, "out", c.float_rtol, 1e-5);
  expect_float_near_double(rf.probs, rd.probs, "probs", c.float_rtol, 1e-6);
  expect_float_near_double(rf.dq, rd.dq, "dq", c.float_rtol, 1e-4);
  expect_float_near_double(rf.dk, rd.dk, "dk", c.float_rtol, 1e-4);
  expect_float_near_double(rf.dv, rd.dv, "dv", c.float_rtol, 1e-4);
  expect_float_near_double(rf.dbias, rd.dbias, "dbias", c.float_rtol, 1e-4 * c.batch * c.seq);
}

TEST_P(AttentionTest, SameBitsForOneAndTwoThreads) {
  const auto c = GetParam();
  const attention_data d = make_data(c, 5);
  const fvec q = to_float(d.q), k = to_float(d.k), v = to_float(d.v), b = to_float(d.bias);
  const fvec dout = to_float(random_vector(q.size(), 12));
  attention_run<float> r[2];
  for (int t = 1; t <= 2; ++t) with_threads(t, [&] { r[t - 1] = run<float>(c, q, k, v, b, dout); });
  EXPECT_TRUE(same_bits(r[0].out, r[1].out));
  EXPECT_TRUE(same_bits(r[0].probs, r[1].probs));
  EXPECT_TRUE(same_bits(r[0].dq, r[1].dq));
  EXPECT_TRUE(same_bits(r[0].dk, r[1].dk));
  EXPECT_TRUE(same_bits(r[0].dv, r[1].dv));
  EXPECT_TRUE(same_bits(r[0].dbias, r[1].dbias));
}

TEST_P(AttentionTest, SequenceAloneEqualsSequenceInBatch) {
  const auto c = GetParam();
  const attention_data d = make_data(c, 6);
  const fvec q = to_float(d.q), k = to_float(d.k), v = to_float(d.v), b = to_float(d.bias);
  const fvec dout = to_float(random_vector(q.size(), 13));
  const auto all = run<float>(c, q, k, v, b, dout);
  const index per = c.seq * c.heads * c.d_head;
  attention_case one = c;
  one.batch = 1;
  for (index s = 0; s < c.batch; ++s) {
    auto slice = [&](const fvec& x) { return fvec(x.begin() + s * per, x.begin() + (s + 1) * per); };
    const auto alone = run<float>(one, slice(q), slice(k), slice(v), b, slice(dout));
    EXPECT_TRUE(same_bits(alone.out, slice(all.out))) << s;
    EXPECT_TRUE(same_bits(alone.dq, slice(all.dq))) << s;
    EXPECT_TRUE(same_bits(alone.dk, slice(all.dk))) << s;
    EXPECT_TRUE(same_bits(alone.dv, slice(all.dv))) << s;
  }
}

INSTANTIATE_TEST_SUITE_P(Shapes, AttentionTest,
                         ::testing::Values(attention_case{2, 5, 2, 3, 1e-6, 1e-5},
                                           attention_case{1, 1, 1, 1, 1e-6, 1e-5},
                                           attention_case{1, 40, 2, 2, 1e-6, 1e-5},
                                           attention_case{3, 17, 3, 4, 1e-6, 1e-5},
                                           attention_case{2, 150, 4, 16, 0, 1e-4}));

}  // namespace
}  // namespace glam
