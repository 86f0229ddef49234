#include "kernels/matmul.hpp"

#include <blis.h>

#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <string>

#include "kernels/check.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

// Below this many multiply-adds BLIS's own thread team costs more than it saves (its
// threads are started per call); the bits are the same either way, since sup is off.
constexpr double single_thread_work = double(1 << 24);

// measure_sgemm_flops times at least this many products, however short min_seconds is.
constexpr int min_sgemm_repetitions = 5;

// BLIS picks its kernel set (sub-configuration) from the CPU's vendor, family and
// features, and a release does not know the CPUs that come after it: BLIS 0.9 runs AMD
// family 0x1A (Zen 5) on its portable `generic` kernels, at about a fifth of the rate of its
// AVX-512 `skx` kernels on the same cores. On an AMD family newer than 0x19 (Zen 3/4, the
// last that 0.9 knows) under a 0.x BLIS, select the x86-64 kernel set the CPU's instructions
// allow (BLIS_ARCH_TYPE, read once when BLIS initialises), unless the user chose one. The
// set in use is part of the build fingerprint (blis_configuration), so workers that would
// compute different bits are still told apart.
bool blis_predates_cpu() {
#if defined(__x86_64__)
  if (std::string(bli_info_get_version_str()).rfind("0.", 0) != 0) return false;
  __builtin_cpu_init();
  if (!__builtin_cpu_is("amd")) return false;
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return false;
  unsigned family = (eax >> 8) & 0xf;
  if (family == 0xf) family += (eax >> 20) & 0xff;
  return family > 0x19;
#else
  return false;
#endif
}

void select_blis_kernels() {
#if defined(__x86_64__)
  if (std::getenv("BLIS_ARCH_TYPE") == nullptr && blis_predates_cpu()) {
    int id = -1;
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
      id = BLIS_ARCH_SKX;
    else if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
      id = BLIS_ARCH_HASWELL;
    if (id >= 0) setenv("BLIS_ARCH_TYPE", std::to_string(id).c_str(), 0);
  }
#endif
  bli_init();
}

void blis_init_once() {
  static std::once_flag once;
  std::call_once(once, select_blis_kernels);
}

rntm_t deterministic_runtime(index m, index n, index k) {
  blis_init_once();
  rntm_t rntm;
  bli_rntm_init(&rntm);
  bli_rntm_disable_l3_sup(&rntm);
  const bool small = double(m) * double(n) * double(k) < single_thread_work;
  bli_rntm_set_num_threads(inside_parallel_for() || small ? 1 : compute_threads(), &rntm);
  return rntm;
}

trans_t trans(bool t) { return t ? BLIS_TRANSPOSE : BLIS_NO_TRANSPOSE; }

}  // namespace

template <>
void gemm<float>(bool trans_a, bool trans_b, index m, index n, index k, float alpha, const float* a,
                 index lda, const float* b, index ldb, float beta, float* c, index ldc) {
  if (m == 0 || n == 0) return;
  rntm_t rntm = deterministic_runtime(m, n, k);
  bli_sgemm_ex(trans(trans_a), trans(trans_b), m, n, k, &alpha, const_cast<float*>(a), lda, 1,
               const_cast<float*>(b), ldb, 1, &beta, c, ldc, 1, nullptr, &rntm);
}

template <>
void gemm<double>(bool trans_a, bool trans_b, index m, index n, index k, double alpha, const double* a,
                  index lda, const double* b, index ldb, double beta, double* c, index ldc) {
  if (m == 0 || n == 0) return;
  rntm_t rntm = deterministic_runtime(m, n, k);
  bli_dgemm_ex(trans(trans_a), trans(trans_b), m, n, k, &alpha, const_cast<double*>(a), lda, 1,
               const_cast<double*>(b), ldb, 1, &beta, c, ldc, 1, nullptr, &rntm);
}

template <class T>
void linear_forward(const T* x, const T* w, T* y, index n, index k, index o) {
  gemm<T>(false, false, n, o, k, T(1), x, k, w, o, T(0), y, o);
}

template <class T>
void linear_backward(const T* x, const T* w, const T* dy, T* dx, T* dw, index n, index k, index o) {
  if (dx) gemm<T>(false, true, n, k, o, T(1), dy, o, w, o, T(1), dx, k);
  if (dw) gemm<T>(true, false, k, o, n, T(1), x, k, dy, o, T(1), dw, o);
}

template void linear_forward<float>(const float*, const float*, float*, index, index, index);
template void linear_forward<double>(const double*, const double*, double*, index, index, index);
template void linear_backward<float>(const float*, const float*, const float*, float*, float*, index,
                                     index, index);
template void linear_backward<double>(const double*, const double*, const double*, double*, double*,
                                      index, index, index);

double measure_sgemm_flops(index n, double min_seconds) {
  GLAM_CHECK(n > 0, "measure_sgemm_flops: n must be positive");
  tensor a({n, n}), b({n, n}), c({n, n});
  for (index i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7 % 13) - 6) * 0.01f;
    b[i] = static_cast<float>((i * 5 % 11) - 5) * 0.01f;
  }
  gemm<float>(false, false, n, n, n, 1.f, a.ptr(), n, b.ptr(), n, 0.f, c.ptr(), n);  // warm up
  // The best single product, not the mean: on a shared machine a neighbour's burst only
  // ever slows a repetition down, so the fastest one is the closest to what the cores can
  // do, and dividing by it keeps MFU from exceeding 1 when the baseline happens to be
  // measured under load and the training run is not.
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  double best = 0;
  int reps = 0;
  for (;;) {
    const auto rep_start = clock::now();
    gemm<float>(false, false, n, n, n, 1.f, a.ptr(), n, b.ptr(), n, 0.f, c.ptr(), n);
    const auto rep_end = clock::now();
    best = std::max(best, 2.0 * double(n) * double(n) * double(n) /
                              std::chrono::duration<double>(rep_end - rep_start).count());
    ++reps;
    if (reps >= min_sgemm_repetitions &&
        std::chrono::duration<double>(rep_end - start).count() >= min_seconds)
      break;
  }
  return best;
}

std::string blis_configuration() {
  blis_init_once();
  return std::string(bli_info_get_version_str()) + "/" + bli_arch_string(bli_arch_query_id());
}

}  // namespace glam
