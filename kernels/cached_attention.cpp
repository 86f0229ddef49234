#include "kernels/cached_attention.hpp"

#include <string>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {

template <class T>
void cached_attention_forward(const T* q, const T* k_cache, const T* v_cache, const T* bias_table, T* out,
                              index queries, index length, index heads, index d_head) {
  GLAM_CHECK(queries >= 0 && queries <= length, "cached_attention: the queries must be the newest of the cache, got Q=" +
                                                    std::to_string(queries) + " L=" + std::to_string(length));
  GLAM_CHECK(heads > 0 && d_head > 0, "cached_attention: heads and d_head must be positive, got " +
                                          std::to_string(heads) + " x " + std::to_string(d_head));
  if (queries == 0) return;
  const index D = heads * d_head;
  const index first = length - queries;  // position of query 0
  // Bucket of every offset n = p − j in [0, L).
  std::vector<int> bucket(static_cast<std::size_t>(length));
  for (index n = 0; n < length; ++n) bucket[static_cast<std::size_t>(n)] = relative_position_bucket(-n);
  parallel_for(queries * heads, [&](index item) {
    const index r = item / heads, h = item % heads;
    const index pos = first + r, len = pos + 1;
    const T* qr = q + r * D + h * d_head;
    std::vector<T> p(static_cast<std::size_t>(len));
    for (index j = 0; j < len; ++j)
      p[j] = dot_fixed(qr, k_cache + j * D + h * d_head, d_head) + bias_table[bucket[pos - j] * heads + h];
    const T mx = max_fixed(p.data(), len);
    for (index j = 0; j < len; ++j) p[j] = exp_of(p[j] - mx);
    const T inv = T(1) / sum_fixed(p.data(), len);
    for (index j = 0; j < len; ++j) p[j] *= inv;
    T* o = out + r * D + h * d_head;
    for (index c = 0; c < d_head; ++c) o[c] = T(0);
    // Keys in order; each output column is a sum over j in that order.
    for (index j = 0; j < len; ++j) {
      const T pj = p[j];
      const T* vj = v_cache + j * D + h * d_head;
      for (index c = 0; c < d_head; ++c) o[c] += pj * vj[c];
    }
  });
}

template void cached_attention_forward<float>(const float*, const float*, const float*, const float*, float*, index,
                                              index, index, index);
template void cached_attention_forward<double>(const double*, const double*, const double*, const double*, double*,
                                               index, index, index, index);

}  // namespace glam
