#include "kernels/rmsnorm.hpp"

#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {
constexpr index rows_per_item = 16;
}

template <class T>
void rmsnorm_forward(const T* x, const T* scale, T* y, T* rstd, index n, index m) {
  GLAM_CHECK(m > 0, "rmsnorm: d_model must be positive, got " + std::to_string(m));
  parallel_rows(n, rows_per_item, [&](index begin, index end) {
    for (index r = begin; r < end; ++r) {
      const T* xr = x + r * m;
      T* yr = y + r * m;
      const T ms = dot_fixed(xr, xr, m) / T(m);
      const T rs = T(1) / std::sqrt(ms + T(rmsnorm_eps));
      rstd[r] = rs;
      for (index j = 0; j < m; ++j) yr[j] = xr[j] * rs * scale[j];
    }
  });
}

template <class T>
void rmsnorm_backward(const T* x, const T* scale, const T* rstd, const T* dy, T* dx, T* dscale,
                      index n, index m) {
  // dx_j = rs·s_j·dy_j − x_j · rs³/M · Σ_k dy_k·s_k·x_k
  if (dx) {
    parallel_rows(n, rows_per_item, [&](index begin, index end) {
      std::vector<T> g(static_cast<std::size_t>(m));
      for (index r = begin; r < end; ++r) {
        const T* xr = x + r * m;
        const T* dyr = dy + r * m;
        T* dxr = dx + r * m;
        const T rs = rstd[r];
        for (index j = 0; j < m; ++j) g[j] = dyr[j] * scale[j];
        const T c = dot_fixed(g.data(), xr, m) * rs * rs * rs / T(m);
        for (index j = 0; j < m; ++j) dxr[j] += g[j] * rs - xr[j] * c;
      }
    });
  }
  if (dscale) {
    // dscale_j = Σ_rows dy_j · x_j · rs: one partial per fixed chunk of rows.
    const index chunks = reduction_chunks(n);
    std::vector<T> partial(static_cast<std::size_t>(chunks * m), T(0));
    parallel_for(chunks, [&](index c) {
      T* p = partial.data() + c * m;
      const index end = std::min(n, (c + 1) * reduction_chunk_rows);
      for (index r = c * reduction_chunk_rows; r < end; ++r) {
        const T* xr = x + r * m;
        const T* dyr = dy + r * m;
        const T rs = rstd[r];
        for (index j = 0; j < m; ++j) p[j] += dyr[j] * (xr[j] * rs);
      }
    });
    for (index j = 0; j < m; ++j) {
      T total = T(0);
      for (index c = 0; c < chunks; ++c) total += partial[c * m + j];
      dscale[j] += total;
    }
  }
}

template void rmsnorm_forward<float>(const float*, const float*, float*, float*, index, index);
template void rmsnorm_forward<double>(const double*, const double*, double*, double*, index, index);
template void rmsnorm_backward<float>(const float*, const float*, const float*, const float*, float*,
                                      float*, index, index);
template void rmsnorm_backward<double>(const double*, const double*, const double*, const double*,
                                       double*, double*, index, index);

}  // namespace glam
