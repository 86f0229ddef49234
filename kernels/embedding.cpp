#include "kernels/embedding.hpp"

#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/check.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr index rows_per_item = 64;
constexpr index vocab_rows_per_item = 256;

void check_tokens(const std::int32_t* tokens, index n, index vocab) {
  for (index r = 0; r < n; ++r)
    if (tokens[r] < 0 || tokens[r] >= vocab)
      throw std::out_of_range("embedding: token " + std::to_string(tokens[r]) + " at row " +
                              std::to_string(r) + " is outside the vocabulary [0, " +
                              std::to_string(vocab) + "); check the tokenizer's vocab_size "
                              "against model.vocab_size");
}

}  // namespace

template <class T>
void embedding_forward(const std::int32_t* tokens, const T* table, T* out, index n, index vocab,
                       index m) {
  check_tokens(tokens, n, vocab);
  parallel_rows(n, rows_per_item, [&](index begin, index end) {
    for (index r = begin; r < end; ++r)
      std::memcpy(out + r * m, table + index(tokens[r]) * m, sizeof(T) * static_cast<std::size_t>(m));
  });
}

template <class T>
void embedding_backward(const std::int32_t* tokens, const T* dout, T* dtable, index n, index vocab,
                        index m) {
  check_tokens(tokens, n, vocab);
  // Stable counting sort of the rows by token: rows of token v are order[start[v] .. start[v+1]),
  // n ascending.
  std::vector<index> start(static_cast<std::size_t>(vocab + 1), 0);
  for (index r = 0; r < n; ++r) ++start[tokens[r] + 1];
  for (index v = 0; v < vocab; ++v) start[v + 1] += start[v];
  std::vector<index> order(static_cast<std::size_t>(n));
  {
    std::vector<index> fill(start.begin(), start.end() - 1);
    for (index r = 0; r < n; ++r) order[fill[tokens[r]]++] = r;
  }
  parallel_rows(vocab, vocab_rows_per_item, [&](index begin, index end) {
    for (index v = begin; v < end; ++v) {
      T* dst = dtable + v * m;
      for (index p = start[v]; p < start[v + 1]; ++p) {
        const T* src = dout + order[p] * m;
        for (index j = 0; j < m; ++j) dst[j] += src[j];
      }
    }
  });
}

template void embedding_forward<float>(const std::int32_t*, const float*, float*, index, index, index);
template void embedding_forward<double>(const std::int32_t*, const double*, double*, index, index,
                                        index);
template void embedding_backward<float>(const std::int32_t*, const float*, float*, index, index, index);
template void embedding_backward<double>(const std::int32_t*, const double*, double*, index, index,
                                         index);

}  // namespace glam
