#pragma once
// Seeded, counter-based random streams: every value is a pure function of (seed, counter),
// so a stream gives the same numbers on any worker, in any process, with any thread count,
// and a unit's randomness does not depend on where it runs (docs/architecture.md,
// "Determinism"). Used for parameter init (a stream per (parameter, unit)) and
// the `random` second-expert policy (a stream per (job seed, step, layer, shard)).
//
// Generator: the splitmix64 finaliser applied twice, to the counter (spread by the
// golden-ratio increment) and to that value plus the stream key. Streams of different
// keys are therefore unrelated sequences, not shifted copies of one another.
//
// Legend: N values to fill.
#include <cstdint>
#include <initializer_list>

#include "kernels/tensor.hpp"

namespace glam {

// The splitmix64 output function: a bijection on 64-bit words with full avalanche.
constexpr std::uint64_t splitmix64_mix(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A stream seed from a job seed and ids (step, layer, unit, a name hash …). Order matters:
// mix_seed(s, {1, 2}) != mix_seed(s, {2, 1}); different id lists give unrelated seeds.
std::uint64_t mix_seed(std::uint64_t seed, std::initializer_list<std::uint64_t> ids);

class random_stream {
 public:
  explicit random_stream(std::uint64_t seed);

  // The raw 64-bit value at a counter position: a pure function of (seed, counter).
  std::uint64_t bits_at(std::uint64_t counter) const;

  // Next raw value; advances the counter by one.
  std::uint64_t next_bits();
  // U[0, 1) with 53 random bits; one counter step.
  double uniform();
  // N(0, 1) by Box–Muller from two uniforms (the cosine branch only, so that every
  // value costs exactly two counter steps and any position can be computed directly).
  double normal();

  std::uint64_t seed() const { return seed_; }
  // Counter steps used so far.
  std::uint64_t position() const { return counter_; }
  // Moves to a counter position (skip ahead or rewind, in O(1)).
  void seek(std::uint64_t counter) { counter_ = counter; }

 private:
  std::uint64_t seed_;
  std::uint64_t key_;
  std::uint64_t counter_ = 0;
};

// The conversions uniform() and normal() use, for callers that index draws directly.
inline double uniform_from_bits(std::uint64_t b) { return double(b >> 11) * 0x1.0p-53; }
double normal_from_bits(std::uint64_t b1, std::uint64_t b2);

// Fill x[0..N) with N(0, stddev²) or U(−limit, limit) values (uniform as (2u − 1)·limit).
// The result equals N sequential calls of normal() / uniform() on the stream (in element
// order), and the stream advances past them; the elements are computed in parallel,
// which is possible because every draw is a pure function of its counter.
template <class T>
void fill_normal(T* x, index n, double stddev, random_stream& rng);
template <class T>
void fill_uniform(T* x, index n, double limit, random_stream& rng);

}  // namespace glam
