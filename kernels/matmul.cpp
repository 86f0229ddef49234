#include "kernels/matmul.hpp"

#include <blis.h>

#include <chrono>
#include <string>

#include "kernels/parallel.hpp"

namespace glam {
namespace {

// Below this many multiply-adds BLIS's own thread team costs more than it saves (its
// threads are started per call); the bits are the same either way, since sup is off.
constexpr double single_thread_work = double(1 << 24);

rntm_t deterministic_runtime(index m, index n, index k) {
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
  tensor a({n, n}), b({n, n}), c({n, n});
  for (index i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7 % 13) - 6) * 0.01f;
    b[i] = static_cast<float>((i * 5 % 11) - 5) * 0.01f;
  }
  gemm<float>(false, false, n, n, n, 1.f, a.ptr(), n, b.ptr(), n, 0.f, c.ptr(), n);  // warm up
  using clock = std::chrono::steady_clock;
  auto start = clock::now();
  int reps = 0;
  double elapsed = 0;
  do {
    gemm<float>(false, false, n, n, n, 1.f, a.ptr(), n, b.ptr(), n, 0.f, c.ptr(), n);
    ++reps;
    elapsed = std::chrono::duration<double>(clock::now() - start).count();
  } while (elapsed < min_seconds);
  return 2.0 * double(n) * double(n) * double(n) * reps / elapsed;
}

std::string blis_configuration() {
  return std::string(bli_info_get_version_str()) + "/" + bli_arch_string(bli_arch_query_id());
}

}  // namespace glam
