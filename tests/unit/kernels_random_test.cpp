// Random streams: pure functions of (seed, counter), the expected moments, unrelated
// streams for different ids, fills equal to sequential draws and independent of threads.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <algorithm>
#include <vector>

#include "kernels/parallel.hpp"
#include "kernels/random.hpp"

namespace glam {
namespace {

void with_threads(int n, const std::function<void()>& body) {
  const int saved = compute_threads();
  set_compute_threads(n);
  body();
  set_compute_threads(saved);
}

TEST(RandomTest, SplitmixMatchesTheReferenceGenerator) {
  // splitmix64 seeded with 0: the first output mixes 0x9E3779B97F4A7C15 (Vigna's reference
  // implementation gives 0xE220A8397B1DCDAF).
  EXPECT_EQ(splitmix64_mix(0x9E3779B97F4A7C15ull), 0xE220A8397B1DCDAFull);
  EXPECT_EQ(splitmix64_mix(0), 0u);
}

TEST(RandomTest, ValuesArePinnedAcrossBuildsAndRuns) {
  // Init and routing depend on these bits: a change here changes every job's trajectory
  // and makes old checkpoints irreproducible.
  const std::uint64_t s = mix_seed(1, {2, 3});
  random_stream r(s);
  EXPECT_EQ(s, 0x2A478F755EFAAF00ull);
  EXPECT_EQ(r.bits_at(0), 0xEB11BBADAD0E32CCull);
  EXPECT_EQ(r.bits_at(12345), 0x41644E5BA33EB797ull);
}

TEST(RandomTest, StreamIsAPureFunctionOfSeedAndCounter) {
  random_stream a(42), b(42);
  std::vector<std::uint64_t> first;
  for (int i = 0; i < 100; ++i) first.push_back(a.next_bits());
  for (int i = 0; i < 100; ++i) EXPECT_EQ(b.bits_at(std::uint64_t(i)), first[std::size_t(i)]);
  EXPECT_EQ(a.position(), 100u);
  a.seek(37);
  EXPECT_EQ(a.next_bits(), first[37]);
  // uniform() and normal() consume one and two counter steps.
  random_stream c(42);
  EXPECT_EQ(c.uniform(), uniform_from_bits(first[0]));
  EXPECT_EQ(c.normal(), normal_from_bits(first[1], first[2]));
  EXPECT_EQ(c.position(), 3u);
}

TEST(RandomTest, UniformHasTheExpectedMoments) {
  random_stream r(mix_seed(7, {1}));
  const int n = 400000;
  double sum = 0, sq = 0, lo = 1, hi = 0;
  for (int i = 0; i < n; ++i) {
    const double u = r.uniform();
    ASSERT_GE(u, 0.0);
    ASSERT_LT(u, 1.0);
    sum += u;
    sq += u * u;
    lo = std::min(lo, u);
    hi = std::max(hi, u);
  }
  const double mean = sum / n, var = sq / n - mean * mean;
  // Standard errors: 0.289/sqrt(n) ≈ 4.6e-4 for the mean, ≈ 1.3e-4 for the variance.
  EXPECT_NEAR(mean, 0.5, 5 * 4.6e-4);
  EXPECT_NEAR(var, 1.0 / 12, 5 * 1.3e-4);
  EXPECT_LT(lo, 1e-4);
  EXPECT_GT(hi, 1 - 1e-4);
}

TEST(RandomTest, NormalHasTheExpectedMoments) {
  random_stream r(mix_seed(7, {2}));
  const int n = 400000;
  double s1 = 0, s2 = 0, s3 = 0, s4 = 0;
  for (int i = 0; i < n; ++i) {
    const double z = r.normal();
    ASSERT_TRUE(std::isfinite(z));
    s1 += z;
    s2 += z * z;
    s3 += z * z * z;
    s4 += z * z * z * z;
  }
  // Standard errors: mean 1/sqrt(n) ≈ 1.6e-3, second moment sqrt(2/n) ≈ 2.2e-3,
  // third sqrt(15/n) ≈ 6.1e-3, fourth sqrt(96/n) ≈ 1.5e-2.
  EXPECT_NEAR(s1 / n, 0.0, 5 * 1.6e-3);
  EXPECT_NEAR(s2 / n, 1.0, 5 * 2.2e-3);
  EXPECT_NEAR(s3 / n, 0.0, 5 * 6.1e-3);
  EXPECT_NEAR(s4 / n, 3.0, 5 * 1.5e-2);
}

TEST(RandomTest, DifferentIdsGiveUnrelatedStreams) {
  const std::uint64_t seed = 1;
  // Order and length of the ids matter.
  EXPECT_NE(mix_seed(seed, {1, 2}), mix_seed(seed, {2, 1}));
  EXPECT_NE(mix_seed(seed, {1}), mix_seed(seed, {1, 0}));
  EXPECT_NE(mix_seed(seed, {}), mix_seed(seed, {0}));
  EXPECT_NE(mix_seed(1, {5}), mix_seed(2, {5}));
  EXPECT_EQ(mix_seed(seed, {3, 4, 5}), mix_seed(seed, {3, 4, 5}));

  // Neighbouring (step, layer, shard) ids: no shared values, no correlation, no shift.
  const int n = 50000;
  std::vector<std::vector<double>> streams;
  std::vector<std::uint64_t> seen;
  for (std::uint64_t step = 0; step < 2; ++step)
    for (std::uint64_t layer = 0; layer < 2; ++layer)
      for (std::uint64_t shard = 0; shard < 2; ++shard) {
        random_stream r(mix_seed(seed, {step, layer, shard}));
        std::vector<double> v(n);
        for (int i = 0; i < n; ++i) {
          const std::uint64_t b = r.next_bits();
          seen.push_back(b);
          v[std::size_t(i)] = uniform_from_bits(b) - 0.5;
        }
        streams.push_back(std::move(v));
      }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(std::adjacent_find(seen.begin(), seen.end()), seen.end())
      << "two streams share a 64-bit value: overlapping sequences";
  for (std::size_t a = 0; a < streams.size(); ++a)
    for (std::size_t b = a + 1; b < streams.size(); ++b)
      for (int lag : {0, 1}) {
        double cov = 0;
        for (int i = 0; i + lag < n; ++i) cov += streams[a][std::size_t(i)] * streams[b][std::size_t(i + lag)];
        const double corr = cov / n / (1.0 / 12);
        EXPECT_LT(std::abs(corr), 5.0 / std::sqrt(double(n))) << a << " vs " << b << " lag " << lag;
      }
}

TEST(RandomTest, FillsEqualSequentialDrawsForAnyThreadCount) {
  const index n = 10007;  // not a multiple of the fill block
  for (int threads : {1, 2}) {
    with_threads(threads, [&] {
      random_stream seq(99), filled(99);
      seq.uniform();  // the fills continue from the stream's position
      filled.uniform();
      std::vector<float> normal(n), uniform(n);
      fill_normal(normal.data(), n, 0.5, filled);
      fill_uniform(uniform.data(), n, 3.0, filled);
      for (index i = 0; i < n; ++i)
        ASSERT_EQ(normal[std::size_t(i)], static_cast<float>(seq.normal() * 0.5)) << i;
      for (index i = 0; i < n; ++i)
        ASSERT_EQ(uniform[std::size_t(i)], static_cast<float>((2.0 * seq.uniform() - 1.0) * 3.0)) << i;
      EXPECT_EQ(filled.position(), seq.position());
      for (float u : uniform) {
        ASSERT_GE(u, -3.0f);
        ASSERT_LE(u, 3.0f);
      }
    });
  }
}

TEST(RandomTest, FillHasTheRequestedVariance) {
  std::vector<double> v(200000), u(200000);
  random_stream r(mix_seed(3, {0xABC}));
  fill_normal(v.data(), index(v.size()), 0.1, r);
  fill_uniform(u.data(), index(u.size()), 2.0, r);
  double sv = 0, su = 0, mu = 0;
  for (std::size_t i = 0; i < v.size(); ++i) {
    sv += v[i] * v[i];
    su += u[i] * u[i];
    mu += u[i];
  }
  EXPECT_NEAR(sv / double(v.size()), 0.01, 5 * 0.01 * std::sqrt(2.0 / double(v.size())));
  // U(−a, a): variance a²/3.
  EXPECT_NEAR(su / double(u.size()), 4.0 / 3, 5 * 0.0053);
  EXPECT_NEAR(mu / double(u.size()), 0.0, 5 * 2.0 / std::sqrt(3.0 * double(u.size())));
}

}  // namespace
}  // namespace glam
