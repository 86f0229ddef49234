#include "kernels/dispatch_combine.hpp"

#include <algorithm>
#include <string>
#include <vector>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 32;

std::size_t at(index i) { return static_cast<std::size_t>(i); }

void check_route(const char* op, index n, index e, index c, index m, std::size_t slots) {
  GLAM_CHECK(m >= 1, std::string(op) + ": d_model must be ≥ 1, got " + std::to_string(m));
  GLAM_CHECK(n >= 0 && e >= 1 && c >= 1 && slots == at(n),
             std::string(op) + ": routing is not filled in (N = " + std::to_string(n) + ", E = " +
                 std::to_string(e) + ", C = " + std::to_string(c) + "); run gating_forward first");
}

// Inverse of the routing: for each row of [E, C, M], the token and the choice (0 first,
// 1 second) that fills it, or token −1 for padding. Slots are unique per expert.
struct row_owners {
  std::vector<std::int32_t> token;
  std::vector<std::int8_t> choice;
};

template <class T>
row_owners owners_of(const basic_routing<T>& r) {
  row_owners o;
  o.token.assign(at(r.experts * r.capacity), -1);
  o.choice.assign(at(r.experts * r.capacity), 0);
  for (index s = 0; s < r.tokens; ++s) {
    if (r.kept1(s)) {
      const index row = index(r.expert1[at(s)]) * r.capacity + r.slot1[at(s)];
      o.token[at(row)] = static_cast<std::int32_t>(s);
      o.choice[at(row)] = 0;
    }
    if (r.kept2(s)) {
      const index row = index(r.expert2[at(s)]) * r.capacity + r.slot2[at(s)];
      o.token[at(row)] = static_cast<std::int32_t>(s);
      o.choice[at(row)] = 1;
    }
  }
  return o;
}

}  // namespace

template <class T>
void dispatch_forward(const T* x, const basic_routing<T>& route, T* buffer, index m) {
  check_route("dispatch_forward", route.tokens, route.experts, route.capacity, m, route.slot1.size());
  const row_owners owners = owners_of(route);
  parallel_rows(route.experts * route.capacity, rows_per_item, [&](index begin, index end) {
    for (index row = begin; row < end; ++row) {
      T* out = buffer + row * m;
      const index s = owners.token[at(row)];
      if (s < 0)
        std::fill(out, out + m, T(0));
      else
        std::copy(x + s * m, x + (s + 1) * m, out);
    }
  });
}

template <class T>
void dispatch_backward(const T* d_buffer, const basic_routing<T>& route, T* dx, index m) {
  check_route("dispatch_backward", route.tokens, route.experts, route.capacity, m, route.slot1.size());
  const index c = route.capacity;
  parallel_rows(route.tokens, rows_per_item, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) {
      T* d = dx + s * m;
      if (route.kept1(s)) {
        const T* g = d_buffer + (index(route.expert1[at(s)]) * c + route.slot1[at(s)]) * m;
        for (index j = 0; j < m; ++j) d[j] += g[j];
      }
      if (route.kept2(s)) {
        const T* g = d_buffer + (index(route.expert2[at(s)]) * c + route.slot2[at(s)]) * m;
        for (index j = 0; j < m; ++j) d[j] += g[j];
      }
    }
  });
}

template <class T>
void combine_forward(const T* expert_out, const basic_routing<T>& route, T* y, index m) {
  check_route("combine_forward", route.tokens, route.experts, route.capacity, m, route.slot1.size());
  const index c = route.capacity;
  parallel_rows(route.tokens, rows_per_item, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) {
      T* out = y + s * m;
      if (route.kept1(s)) {
        const T w = route.weight1[at(s)];
        const T* o = expert_out + (index(route.expert1[at(s)]) * c + route.slot1[at(s)]) * m;
        for (index j = 0; j < m; ++j) out[j] = w * o[j];
      } else {
        std::fill(out, out + m, T(0));
      }
      if (route.kept2(s)) {
        const T w = route.weight2[at(s)];
        const T* o = expert_out + (index(route.expert2[at(s)]) * c + route.slot2[at(s)]) * m;
        for (index j = 0; j < m; ++j) out[j] += w * o[j];
      }
    }
  });
}

template <class T>
void combine_backward(const T* expert_out, const T* dy, const basic_routing<T>& route, T* d_out,
                      T* dweight1, T* dweight2, index m) {
  check_route("combine_backward", route.tokens, route.experts, route.capacity, m, route.slot1.size());
  const row_owners owners = owners_of(route);
  parallel_rows(route.experts * route.capacity, rows_per_item, [&](index begin, index end) {
    for (index row = begin; row < end; ++row) {
      T* d = d_out + row * m;
      const index s = owners.token[at(row)];
      if (s < 0) {
        std::fill(d, d + m, T(0));
        continue;
      }
      const T w = owners.choice[at(row)] == 0 ? route.weight1[at(s)] : route.weight2[at(s)];
      const T* g = dy + s * m;
      for (index j = 0; j < m; ++j) d[j] = w * g[j];
    }
  });
  if (!dweight1 && !dweight2) return;
  const index c = route.capacity;
  parallel_rows(route.tokens, rows_per_item, [&](index begin, index end) {
    for (index s = begin; s < end; ++s) {
      const T* g = dy + s * m;
      if (dweight1 && route.kept1(s))
        dweight1[s] += dot_fixed(g, expert_out + (index(route.expert1[at(s)]) * c + route.slot1[at(s)]) * m, m);
      if (dweight2 && route.kept2(s))
        dweight2[s] += dot_fixed(g, expert_out + (index(route.expert2[at(s)]) * c + route.slot2[at(s)]) * m, m);
    }
  });
}

#define GLAM_INSTANTIATE(T)                                                                       \
  template void dispatch_forward<T>(const T*, const basic_routing<T>&, T*, index);               \
  template void dispatch_backward<T>(const T*, const basic_routing<T>&, T*, index);              \
  template void combine_forward<T>(const T*, const basic_routing<T>&, T*, index);                \
  template void combine_backward<T>(const T*, const T*, const basic_routing<T>&, T*, T*, T*, index);
GLAM_INSTANTIATE(float)
GLAM_INSTANTIATE(double)
#undef GLAM_INSTANTIATE

}  // namespace glam
