#include "kernels/cross_entropy.hpp"

#include <algorithm>
#include <cmath>
#include <memory>
#include <string>
#include <vector>

#include "kernels/elementwise.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 8;

template <class T>
T logit_scale(index m) {
  return T(1) / std::sqrt(T(m));
}

void check_targets(const std::int32_t* targets, index n, index vocab) {
  for (index r = 0; r < n; ++r)
    if (targets[r] < 0 || targets[r] >= vocab)
      throw std::out_of_range("cross_entropy: target " + std::to_string(targets[r]) + " at row " +
                              std::to_string(r) + " is outside the vocabulary [0, " +
                              std::to_string(vocab) + ")");
}

}  // namespace

template <class T>
void output_logits(const T* h, const T* embedding, T* logits, index n, index m, index vocab) {
  gemm<T>(false, true, n, vocab, m, logit_scale<T>(m), h, m, embedding, m, T(0), logits, vocab);
}

template <class T>
cross_entropy_sums cross_entropy(const T* h, const T* embedding, const std::int32_t* targets, T* dh,
                                 T* dembedding, T* row_ce, index n, index m, index vocab,
                                 double z_weight, double loss_scale) {
  check_targets(targets, n, vocab);
  const bool backward = dh != nullptr || dembedding != nullptr;
  const T alpha = logit_scale<T>(m);
  const T zw = T(z_weight), ls = T(loss_scale);
  const index block = std::min(n, cross_entropy_block_rows);
  std::unique_ptr<T[]> logits(new T[static_cast<std::size_t>(std::max<index>(block, 1) * vocab)]);
  std::vector<T> ce(static_cast<std::size_t>(n)), z(static_cast<std::size_t>(n));
  for (index r0 = 0; r0 < n; r0 += cross_entropy_block_rows) {
    const index rows = std::min(cross_entropy_block_rows, n - r0);
    T* lg = logits.get();
    gemm<T>(false, true, rows, vocab, m, alpha, h + r0 * m, m, embedding, m, T(0), lg, vocab);
    parallel_rows(rows, rows_per_item, [&](index begin, index end) {
      for (index i = begin; i < end; ++i) {
        T* row = lg + i * vocab;
        const index target = targets[r0 + i];
        const T mx = max_fixed(row, vocab);
        const T target_logit = row[target];
        for (index j = 0; j < vocab; ++j) row[j] = exp_of(row[j] - mx);
        const T sum = sum_fixed(row, vocab);
        const T lse = mx + std::log(sum);
        ce[r0 + i] = lse - target_logit;
        z[r0 + i] = zw * lse * lse;
        if (!backward) continue;
        // ∂loss/∂logit_j = loss_scale · ((1 + 2·z_weight·lse) · p_j − [j = target])
        const T c = ls * (T(1) + T(2) * zw * lse) / sum;
        for (index j = 0; j < vocab; ++j) row[j] *= c;
        row[target] -= ls;
      }
    });
    if (dh) gemm<T>(false, false, rows, m, vocab, alpha, lg, vocab, embedding, m, T(1), dh + r0 * m, m);
    if (dembedding)
      gemm<T>(true, false, vocab, m, rows, alpha, lg, vocab, h + r0 * m, m, T(1), dembedding, m);
  }
  cross_entropy_sums sums;
  for (index r = 0; r < n; ++r) {
    sums.ce += double(ce[r]);
    sums.z += double(z[r]);
  }
  if (row_ce) std::copy(ce.begin(), ce.end(), row_ce);
  return sums;
}

template cross_entropy_sums cross_entropy<float>(const float*, const float*, const std::int32_t*,
                                                 float*, float*, float*, index, index, index, double,
                                                 double);
template cross_entropy_sums cross_entropy<double>(const double*, const double*, const std::int32_t*,
                                                  double*, double*, double*, index, index, index,
                                                  double, double);
template void output_logits<float>(const float*, const float*, float*, index, index, index);
template void output_logits<double>(const double*, const double*, double*, index, index, index);

}  // namespace glam
