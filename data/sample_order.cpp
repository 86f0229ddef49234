#include "data/sample_order.hpp"

#include <limits>
#include <numeric>

#include "data/error.hpp"

namespace glam {

std::uint64_t splitmix64::below(std::uint64_t n) {
  // Accept r only below the largest multiple of n that fits, so every residue is equally
  // likely.
  const std::uint64_t limit =
      std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
  for (;;) {
    std::uint64_t r = next();
    if (r < limit) return r % n;
  }
}

std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b) {
  splitmix64 g(a ^ (b * 0xD6E8FEB86659FD93ull + 0x632BE59BD9B4E019ull));
  return g.next();
}

std::vector<std::int64_t> epoch_permutation(std::uint64_t seed, std::int64_t epoch,
                                            std::int64_t windows) {
  if (windows < 1)
    throw data_error("epoch_permutation: windows is " + std::to_string(windows) +
                     "; it must be at least 1");
  std::vector<std::int64_t> perm(static_cast<std::size_t>(windows));
  std::iota(perm.begin(), perm.end(), std::int64_t{0});
  splitmix64 g(mix_seed(seed, static_cast<std::uint64_t>(epoch)));
  for (std::int64_t i = windows - 1; i > 0; --i) {
    auto j = static_cast<std::int64_t>(g.below(static_cast<std::uint64_t>(i) + 1));
    std::swap(perm[static_cast<std::size_t>(i)], perm[static_cast<std::size_t>(j)]);
  }
  return perm;
}

std::int64_t sample_position(std::int64_t step, std::int64_t shard, std::int64_t shards,
                             std::int64_t batch, std::int64_t row) {
  constexpr std::int64_t max = std::numeric_limits<std::int64_t>::max();
  if (step < 0 || shards < 1 || shard < 0 || shard >= shards || batch < 1 || row < 0 ||
      row >= batch)
    throw data_error(
        "sample position: need step >= 0, 0 <= shard < shards, 0 <= row < batch; "
        "got step " +
        std::to_string(step) + ", shard " + std::to_string(shard) + ", shards " +
        std::to_string(shards) + ", row " + std::to_string(row) + ", batch " +
        std::to_string(batch));
  if (step > (max - shard) / shards || (step * shards + shard) > (max - row) / batch)
    throw data_error("sample position overflows 64 bits at step " + std::to_string(step) +
                     "; step, shards and batch are too large");
  return (step * shards + shard) * batch + row;
}

}  // namespace glam
