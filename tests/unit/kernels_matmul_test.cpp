// matmul: BLIS with sup off must give the same bits for any thread count and any row
// batching (the determinism everything else rests on), and agree with a naive product.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <stdexcept>
#include <string>

#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

tensor random_tensor(std::vector<index> shape, std::uint32_t seed) {
  tensor t(std::move(shape));
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, 1.f);
  for (auto& v : t.data) v = d(rng);
  return t;
}

struct gemm_case {
  index n, k, o;
};

class MatmulTest : public ::testing::TestWithParam<gemm_case> {};

TEST_P(MatmulTest, MatchesNaiveProduct) {
  auto [n, k, o] = GetParam();
  tensor x = random_tensor({n, k}, 1), w = random_tensor({k, o}, 2), y({n, o});
  linear_forward(x.ptr(), w.ptr(), y.ptr(), n, k, o);
  for (index i = 0; i < n; ++i)
    for (index j = 0; j < o; ++j) {
      double ref = 0;
      for (index p = 0; p < k; ++p) ref += double(x[i * k + p]) * w[p * o + j];
      EXPECT_NEAR(y[i * o + j], ref, 1e-4 * (1 + std::abs(ref))) << i << "," << j;
    }
}

TEST_P(MatmulTest, SameBitsForAnyThreadCountAndRowBatching) {
  auto [n, k, o] = GetParam();
  tensor x = random_tensor({n, k}, 3), w = random_tensor({k, o}, 4);
  tensor y1({n, o}), y2({n, o}), rows({n, o});
  const int saved = compute_threads();
  set_compute_threads(1);
  linear_forward(x.ptr(), w.ptr(), y1.ptr(), n, k, o);
  set_compute_threads(2);
  linear_forward(x.ptr(), w.ptr(), y2.ptr(), n, k, o);
  // Every row alone, then in two uneven batches.
  for (index i = 0; i < n; ++i) linear_forward(x.ptr() + i * k, w.ptr(), rows.ptr() + i * o, 1, k, o);
  set_compute_threads(saved);
  EXPECT_TRUE(bitwise_equal(y1, y2));
  EXPECT_TRUE(bitwise_equal(y1, rows));
  tensor split({n, o});
  const index first = n / 3;
  linear_forward(x.ptr(), w.ptr(), split.ptr(), first, k, o);
  linear_forward(x.ptr() + first * k, w.ptr(), split.ptr() + first * o, n - first, k, o);
  EXPECT_TRUE(bitwise_equal(y1, split));
}

TEST_P(MatmulTest, WeightGradientSameBitsForAnyThreadCount) {
  auto [n, k, o] = GetParam();
  tensor x = random_tensor({n, k}, 5), dy = random_tensor({n, o}, 6), w = random_tensor({k, o}, 7);
  tensor dw1({k, o}), dw2({k, o}), dx1({n, k}), dx2({n, k});
  const int saved = compute_threads();
  set_compute_threads(1);
  linear_backward(x.ptr(), w.ptr(), dy.ptr(), dx1.ptr(), dw1.ptr(), n, k, o);
  set_compute_threads(2);
  linear_backward(x.ptr(), w.ptr(), dy.ptr(), dx2.ptr(), dw2.ptr(), n, k, o);
  set_compute_threads(saved);
  EXPECT_TRUE(bitwise_equal(dw1, dw2));
  EXPECT_TRUE(bitwise_equal(dx1, dx2));
}

INSTANTIATE_TEST_SUITE_P(Shapes, MatmulTest,
                         ::testing::Values(gemm_case{7, 64, 48}, gemm_case{37, 128, 96},
                                           gemm_case{256, 64, 256}, gemm_case{300, 96, 160},
                                           gemm_case{1, 33, 17},
                                           // over the single-thread cut-off: BLIS runs two threads
                                           gemm_case{520, 128, 256}));

TEST(MatmulBaseline, SgemmRateIsPositiveAndFinite) {
  // A small, quick product: the rate is the best of the repetitions, so it must be a real
  // number of FLOP/s however the machine is loaded.
  const double rate = measure_sgemm_flops(64, 0.0);
  EXPECT_GT(rate, 0.0);
  EXPECT_TRUE(std::isfinite(rate));
  EXPECT_THROW(measure_sgemm_flops(0, 0.0), std::logic_error);
}

#if defined(__x86_64__)
// Read before main: the first GEMM sets BLIS_ARCH_TYPE itself when it selects the kernels.
const bool user_chose_blis_kernels = std::getenv("BLIS_ARCH_TYPE") != nullptr;

TEST(MatmulBaseline, VectorKernelsWhereTheCpuHasThem) {
  // BLIS falls back to its portable kernels on CPUs newer than its release; matmul.cpp
  // then selects the x86-64 kernel set the CPU supports (unless BLIS_ARCH_TYPE is set).
  if (user_chose_blis_kernels) GTEST_SKIP() << "BLIS_ARCH_TYPE chooses the kernels";
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) GTEST_SKIP() << "no AVX2/FMA";
  const std::string config = blis_configuration();
  EXPECT_EQ(config.find("generic"), std::string::npos) << config;
}
#endif

}  // namespace
}  // namespace glam
