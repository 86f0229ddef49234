#include "kernels/gelu_ffn.hpp"

#include <memory>

#include "kernels/elementwise.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

// Elements per parallel item of the elementwise passes.
constexpr index elements_per_item = 1 << 15;

template <class T>
std::unique_ptr<T[]> scratch(index n) {
  return std::unique_ptr<T[]>(new T[static_cast<std::size_t>(n)]);
}

}  // namespace

template <class T>
void gelu_tanh(const T* z, T* out, index n) {
  parallel_rows(n, elements_per_item, [&](index begin, index end) {
    for (index i = begin; i < end; ++i) out[i] = gelu_value(z[i]);
  });
}

template <class T>
void gelu_ffn_forward(const T* x, const T* wg, const T* w1, const T* w2, T* a, T* u, T* h, T* y,
                      index n, index m, index hdim) {
  linear_forward(x, wg, a, n, m, hdim);
  linear_forward(x, w1, u, n, m, hdim);
  parallel_rows(n * hdim, elements_per_item, [&](index begin, index end) {
    for (index i = begin; i < end; ++i) h[i] = gelu_value(a[i]) * u[i];
  });
  linear_forward(h, w2, y, n, hdim, m);
}

template <class T>
void gelu_ffn_backward(const T* x, const T* wg, const T* w1, const T* w2, const T* a, const T* u,
                       const T* h, const T* dy, T* dx, T* dwg, T* dw1, T* dw2, index n, index m,
                       index hdim) {
  const index nh = n * hdim;
  auto da = scratch<T>(nh);  // first dh = dy·W2ᵀ, then da in place
  auto du = scratch<T>(nh);
  gemm<T>(false, true, n, hdim, m, T(1), dy, m, w2, m, T(0), da.get(), hdim);
  if (dw2) linear_backward<T>(h, w2, dy, nullptr, dw2, n, hdim, m);
  parallel_rows(nh, elements_per_item, [&](index begin, index end) {
    T* dap = da.get();
    T* dup = du.get();
    for (index i = begin; i < end; ++i) {
      T g, slope;
      gelu_value_and_slope(a[i], g, slope);
      const T dh = dap[i];
      dup[i] = dh * g;
      dap[i] = dh * u[i] * slope;
    }
  });
  linear_backward<T>(x, wg, da.get(), dx, dwg, n, m, hdim);
  linear_backward<T>(x, w1, du.get(), dx, dw1, n, m, hdim);
}

template void gelu_tanh<float>(const float*, float*, index);
template void gelu_tanh<double>(const double*, double*, index);
template void gelu_ffn_forward<float>(const float*, const float*, const float*, const float*, float*,
                                      float*, float*, float*, index, index, index);
template void gelu_ffn_forward<double>(const double*, const double*, const double*, const double*,
                                       double*, double*, double*, double*, index, index, index);
template void gelu_ffn_backward<float>(const float*, const float*, const float*, const float*,
                                       const float*, const float*, const float*, const float*, float*,
                                       float*, float*, float*, index, index, index);
template void gelu_ffn_backward<double>(const double*, const double*, const double*, const double*,
                                        const double*, const double*, const double*, const double*,
                                        double*, double*, double*, double*, index, index, index);

}  // namespace glam
