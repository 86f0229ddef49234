#pragma once
// The training sample order: which window of the train stream goes to which (step, shard,
// row), as pure functions of their arguments (section 4 of the design). Written out here
// rather than left to <random>, whose distributions and std::shuffle are
// implementation-defined: the order must be the same on every worker and every build.
//
// Windows: window w holds train tokens [w·T, w·T + T + 1) (T = seq_len), so there are
// W = (train_tokens - 1) / T of them. Global position of (step k, shard s, row b) with S
// shards and B rows per shard: p = (k·S + s)·B + b. Epoch e = p / W; the window is
// perm_{seed,e}(p mod W), perm_{seed,e} a Fisher-Yates permutation of [0, W) driven by
// splitmix64 seeded from (seed, e). Every window is drawn exactly once per epoch.
#include <cstdint>
#include <vector>

namespace glam {

// splitmix64: a tiny generator whose output sequence is fixed by its seed.
class splitmix64 {
 public:
  explicit splitmix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next() {
    std::uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, n) without modulo bias (rejection of the incomplete top range).
  std::uint64_t below(std::uint64_t n);

 private:
  std::uint64_t state_;
};

// Mixes two words into one seed (for streams keyed by several integers).
std::uint64_t mix_seed(std::uint64_t a, std::uint64_t b);

// perm_{seed,epoch} over [0, windows).
std::vector<std::int64_t> epoch_permutation(std::uint64_t seed, std::int64_t epoch,
                                            std::int64_t windows);

// p = (step·shards + shard)·batch + row, checked for overflow (throws data_error).
std::int64_t sample_position(std::int64_t step, std::int64_t shard, std::int64_t shards,
                             std::int64_t batch, std::int64_t row);

}  // namespace glam
