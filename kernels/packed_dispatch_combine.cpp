#include "kernels/packed_dispatch_combine.hpp"

#include <algorithm>
#include <string>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 32;

std::size_t at(index i) { return static_cast<std::size_t>(i); }

template <class T>
void check_route(const char* op, const basic_routing<T>& r, index m) {
  GLAM_CHECK(m >= 1, std::string(op) + ": d_model must be ≥ 1, got " + std::to_string(m));
  GLAM_CHECK(r.tokens >= 0 && r.experts >= 1 && r.slot1.size() == at(r.tokens) && r.counts.size() == at(r.experts),
             std::string(op) + ": routing is not filled in; run gating_forward first");
}

}  // namespace

std::vector<index> packed_offsets(const std::vector<index>& counts) {
  std::vector<index> offset(counts.size() + 1, 0);
  for (std::size_t e = 0; e < counts.size(); ++e) {
    GLAM_CHECK(counts[e] >= 0, "packed_offsets: negative count for expert " + std::to_string(e));
    offset[e + 1] = offset[e] + counts[e];
  }
  return offset;
}

template <class T>
void dispatch_packed_forward(const T* x, const basic_routing<T>& route, T* rows, index m) {
  check_route("dispatch_packed_forward", route, m);
  const std::vector<index> offset = packed_offsets(route.counts);
  parallel_rows(route.tokens, rows_per_item, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) {
      const T* src = x + s * m;
      if (route.kept1(s)) std::copy(src, src + m, rows + (offset[at(route.expert1[at(s)])] + route.slot1[at(s)]) * m);
      if (route.kept2(s)) std::copy(src, src + m, rows + (offset[at(route.expert2[at(s)])] + route.slot2[at(s)]) * m);
    }
  });
}

template <class T>
void combine_packed_forward(const T* expert_out, const basic_routing<T>& route, T* y, index m) {
  check_route("combine_packed_forward", route, m);
  const std::vector<index> offset = packed_offsets(route.counts);
  parallel_rows(route.tokens, rows_per_item, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) {
      T* out = y + s * m;
      if (route.kept1(s)) {
        const T w = route.weight1[at(s)];
        const T* o = expert_out + (offset[at(route.expert1[at(s)])] + route.slot1[at(s)]) * m;
        for (index j = 0; j < m; ++j) out[j] = w * o[j];
      } else {
        std::fill(out, out + m, T(0));
      }
      if (route.kept2(s)) {
        const T w = route.weight2[at(s)];
        const T* o = expert_out + (offset[at(route.expert2[at(s)])] + route.slot2[at(s)]) * m;
        for (index j = 0; j < m; ++j) out[j] += w * o[j];
      }
    }
  });
}

template void dispatch_packed_forward<float>(const float*, const routing&, float*, index);
template void dispatch_packed_forward<double>(const double*, const basic_routing<double>&, double*, index);
template void combine_packed_forward<float>(const float*, const routing&, float*, index);
template void combine_packed_forward<double>(const double*, const basic_routing<double>&, double*, index);

}  // namespace glam
