#include "kernels/expert_ffn.hpp"

#include <memory>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/gelu_ffn.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {
constexpr index elements_per_item = 1 << 15;

}  // namespace

template <class T>
void relu_ffn_forward(const T* x, const T* w1, const T* w2, T* h, T* y, index rows, index m,
                      index hdim) {
  linear_forward(x, w1, h, rows, m, hdim);
  parallel_rows(rows * hdim, elements_per_item, [&](index begin, index end) {
    for (index i = begin; i < end; ++i) h[i] = relu_of(h[i]);
  });
  linear_forward(h, w2, y, rows, hdim, m);
}

template <class T>
void relu_ffn_backward_rows(const T* w1, const T* w2, const T* h, const T* dy, T* dx, T* dpre,
                            index rows, index m, index hdim) {
  gemm<T>(false, true, rows, hdim, m, T(1), dy, m, w2, m, T(0), dpre, hdim);
  parallel_rows(rows * hdim, elements_per_item, [&](index begin, index end) {
    for (index i = begin; i < end; ++i) dpre[i] *= relu_slope(h[i]);
  });
  if (dx) linear_backward<T>(nullptr, w1, dpre, dx, nullptr, rows, m, hdim);
}

template <class T>
void relu_ffn_backward_weights(const T* x, const T* h, const T* dy, const T* dpre, T* dw1, T* dw2,
                               index rows, index m, index hdim) {
  if (dw2) linear_backward<T>(h, nullptr, dy, nullptr, dw2, rows, hdim, m);
  if (dw1) linear_backward<T>(x, nullptr, dpre, nullptr, dw1, rows, m, hdim);
}

template <class T>
void relu_ffn_backward(const T* x, const T* w1, const T* w2, const T* h, const T* dy, T* dx, T* dw1,
                       T* dw2, index rows, index m, index hdim) {
  std::unique_ptr<T[]> dpre(new T[static_cast<std::size_t>(rows * hdim)]);
  relu_ffn_backward_rows(w1, w2, h, dy, dx, dpre.get(), rows, m, hdim);
  relu_ffn_backward_weights(x, h, dy, dpre.get(), dw1, dw2, rows, m, hdim);
}

template <class T>
void gated_ffn_backward_rows(const T* wg, const T* w1, const T* w2, const T* a, const T* u,
                             const T* dy, T* dx, T* da, T* du, index rows, index m, index hdim) {
  std::unique_ptr<T[]> dh(new T[static_cast<std::size_t>(rows * hdim)]);
  gemm<T>(false, true, rows, hdim, m, T(1), dy, m, w2, m, T(0), dh.get(), hdim);
  parallel_rows(rows * hdim, elements_per_item, [&](index begin, index end) {
    const T* d = dh.get();
    for (index i = begin; i < end; ++i) {
      // Read a[i] and u[i] before writing: da and du may be a and u.
      const T ai = a[i], ui = u[i];
      T g, slope;
      gelu_value_and_slope(ai, g, slope);
      du[i] = d[i] * g;
      da[i] = d[i] * ui * slope;
    }
  });
  if (dx) {
    linear_backward<T>(nullptr, wg, da, dx, nullptr, rows, m, hdim);
    linear_backward<T>(nullptr, w1, du, dx, nullptr, rows, m, hdim);
  }
}

template <class T>
void gated_ffn_backward_weights(const T* x, const T* h, const T* dy, const T* da, const T* du,
                                T* dwg, T* dw1, T* dw2, index rows, index m, index hdim) {
  if (dw2) linear_backward<T>(h, nullptr, dy, nullptr, dw2, rows, hdim, m);
  if (dwg) linear_backward<T>(x, nullptr, da, nullptr, dwg, rows, m, hdim);
  if (dw1) linear_backward<T>(x, nullptr, du, nullptr, dw1, rows, m, hdim);
}

index expert_saved_per_row(ffn_activation act, index hdim) {
  return act == ffn_activation::relu ? hdim : 3 * hdim;
}

index expert_pre_grads_per_row(ffn_activation act, index hdim) {
  return act == ffn_activation::relu ? hdim : 2 * hdim;
}

template <class T>
void expert_ffn_forward(ffn_activation act, const T* x, const expert_weights<T>& w, T* saved, T* y,
                        index rows, index m, index hdim) {
  if (act == ffn_activation::relu) {
    relu_ffn_forward(x, w.w1, w.w2, saved, y, rows, m, hdim);
    return;
  }
  GLAM_CHECK(w.wg != nullptr, "expert_ffn: gated_gelu needs the gate matrix wg");
  const index rh = rows * hdim;
  gelu_ffn_forward(x, w.wg, w.w1, w.w2, saved, saved + rh, saved + 2 * rh, y, rows, m, hdim);
}

template <class T>
void expert_ffn_backward(ffn_activation act, const T* x, const expert_weights<T>& w, const T* saved,
                         const T* dy, T* dx, const expert_gradients<T>& g, index rows, index m,
                         index hdim) {
  if (act == ffn_activation::relu) {
    relu_ffn_backward(x, w.w1, w.w2, saved, dy, dx, g.dw1, g.dw2, rows, m, hdim);
    return;
  }
  GLAM_CHECK(w.wg != nullptr, "expert_ffn: gated_gelu needs the gate matrix wg");
  const index rh = rows * hdim;
  gelu_ffn_backward(x, w.wg, w.w1, w.w2, saved, saved + rh, saved + 2 * rh, dy, dx, g.dwg, g.dw1,
                    g.dw2, rows, m, hdim);
}

template <class T>
void expert_ffn_backward_rows(ffn_activation act, const expert_weights<T>& w, const T* saved,
                              const T* dy, T* dx, T* pre_grads, index rows, index m, index hdim) {
  if (act == ffn_activation::relu) {
    relu_ffn_backward_rows(w.w1, w.w2, saved, dy, dx, pre_grads, rows, m, hdim);
    return;
  }
  GLAM_CHECK(w.wg != nullptr, "expert_ffn: gated_gelu needs the gate matrix wg");
  const index rh = rows * hdim;
  gated_ffn_backward_rows(w.wg, w.w1, w.w2, saved, saved + rh, dy, dx, pre_grads, pre_grads + rh,
                          rows, m, hdim);
}

template <class T>
void expert_ffn_backward_weights(ffn_activation act, const T* x, const T* saved, const T* dy,
                                 const T* pre_grads, const expert_gradients<T>& g, index rows,
                                 index m, index hdim) {
  if (act == ffn_activation::relu) {
    relu_ffn_backward_weights(x, saved, dy, pre_grads, g.dw1, g.dw2, rows, m, hdim);
    return;
  }
  const index rh = rows * hdim;
  gated_ffn_backward_weights(x, saved + 2 * rh, dy, pre_grads, pre_grads + rh, g.dwg, g.dw1, g.dw2,
                             rows, m, hdim);
}

#define GLAM_INSTANTIATE_EXPERT(T)                                                                 \
  template void relu_ffn_forward<T>(const T*, const T*, const T*, T*, T*, index, index, index);     \
  template void relu_ffn_backward<T>(const T*, const T*, const T*, const T*, const T*, T*, T*, T*,  \
                                     index, index, index);                                         \
  template void relu_ffn_backward_rows<T>(const T*, const T*, const T*, const T*, T*, T*, index,    \
                                          index, index);                                           \
  template void relu_ffn_backward_weights<T>(const T*, const T*, const T*, const T*, T*, T*, index, \
                                             index, index);                                        \
  template void gated_ffn_backward_rows<T>(const T*, const T*, const T*, const T*, const T*,        \
                                           const T*, T*, T*, T*, index, index, index);             \
  template void gated_ffn_backward_weights<T>(const T*, const T*, const T*, const T*, const T*, T*, \
                                              T*, T*, index, index, index);                        \
  template void expert_ffn_forward<T>(ffn_activation, const T*, const expert_weights<T>&, T*, T*, \
                                      index, index, index);                                        \
  template void expert_ffn_backward<T>(ffn_activation, const T*, const expert_weights<T>&,       \
                                       const T*, const T*, T*, const expert_gradients<T>&, index,   \
                                       index, index);                                              \
  template void expert_ffn_backward_rows<T>(ffn_activation, const expert_weights<T>&, const T*,  \
                                            const T*, T*, T*, index, index, index);                \
  template void expert_ffn_backward_weights<T>(ffn_activation, const T*, const T*, const T*,     \
                                               const T*, const expert_gradients<T>&, index, index, \
                                               index);
GLAM_INSTANTIATE_EXPERT(float)
GLAM_INSTANTIATE_EXPERT(double)
#undef GLAM_INSTANTIATE_EXPERT

}  // namespace glam
