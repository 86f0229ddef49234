#include "kernels/random.hpp"

#include <algorithm>
#include <cmath>

#include "kernels/check.hpp"
#include "kernels/parallel.hpp"

namespace glam {
namespace {

constexpr std::uint64_t golden_gamma = 0x9E3779B97F4A7C15ull;
// Elements per parallel_for item in the fill helpers.
constexpr index fill_block = 4096;
constexpr double two_pi = 6.283185307179586476925286766559;

}  // namespace

std::uint64_t mix_seed(std::uint64_t seed, std::initializer_list<std::uint64_t> ids) {
  // A sponge: absorb each id into the state and mix, so the result depends on every id
  // and on their order. The length is absorbed too, so {a} and {a, 0} differ.
  std::uint64_t h = splitmix64_mix(seed + golden_gamma);
  for (std::uint64_t id : ids) h = splitmix64_mix(h ^ splitmix64_mix(id + golden_gamma)) + golden_gamma;
  return splitmix64_mix(h ^ std::uint64_t(ids.size()));
}

random_stream::random_stream(std::uint64_t seed) : seed_(seed), key_(splitmix64_mix(seed ^ 0x5EEDull)) {}

std::uint64_t random_stream::bits_at(std::uint64_t counter) const {
  return splitmix64_mix(splitmix64_mix((counter + 1) * golden_gamma) + key_);
}

std::uint64_t random_stream::next_bits() { return bits_at(counter_++); }

double random_stream::uniform() { return uniform_from_bits(next_bits()); }

double normal_from_bits(std::uint64_t b1, std::uint64_t b2) {
  // 1 − u lies in (0, 1], so the logarithm is finite.
  const double u1 = 1.0 - uniform_from_bits(b1);
  const double u2 = uniform_from_bits(b2);
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(two_pi * u2);
}

double random_stream::normal() {
  const std::uint64_t b1 = next_bits();
  const std::uint64_t b2 = next_bits();
  return normal_from_bits(b1, b2);
}

template <class T>
void fill_normal(T* x, index n, double stddev, random_stream& rng) {
  GLAM_CHECK(n >= 0, "fill_normal: negative count " + std::to_string(n));
  const std::uint64_t start = rng.position();
  const index blocks = (n + fill_block - 1) / fill_block;
  parallel_for(blocks, [&](index b) {
    const index end = std::min(n, (b + 1) * fill_block);
    for (index i = b * fill_block; i < end; ++i) {
      const std::uint64_t c = start + 2 * std::uint64_t(i);
      x[i] = static_cast<T>(normal_from_bits(rng.bits_at(c), rng.bits_at(c + 1)) * stddev);
    }
  });
  rng.seek(start + 2 * std::uint64_t(n));
}

template <class T>
void fill_uniform(T* x, index n, double limit, random_stream& rng) {
  GLAM_CHECK(n >= 0, "fill_uniform: negative count " + std::to_string(n));
  const std::uint64_t start = rng.position();
  const index blocks = (n + fill_block - 1) / fill_block;
  parallel_for(blocks, [&](index b) {
    const index end = std::min(n, (b + 1) * fill_block);
    for (index i = b * fill_block; i < end; ++i) {
      const double u = uniform_from_bits(rng.bits_at(start + std::uint64_t(i)));
      x[i] = static_cast<T>((2.0 * u - 1.0) * limit);
    }
  });
  rng.seek(start + std::uint64_t(n));
}

template void fill_normal<float>(float*, index, double, random_stream&);
template void fill_normal<double>(double*, index, double, random_stream&);
template void fill_uniform<float>(float*, index, double, random_stream&);
template void fill_uniform<double>(double*, index, double, random_stream&);

}  // namespace glam
