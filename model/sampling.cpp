#include "model/sampling.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "kernels/random.hpp"
#include "model/inference.hpp"

namespace glam {
namespace {

// Keeps the sampling stream apart from every other stream a seed may key.
constexpr std::uint64_t sampling_stream_tag = 0x73616d706c65ull;  // "sample"

}  // namespace

void validate_sampling(const sampling_options& o) {
  if (!std::isfinite(o.temperature) || o.temperature < 0)
    throw inference_error("temperature = " + std::to_string(o.temperature) +
                          " is not allowed; use 0 (greedy) or a positive number such as 0.8");
  if (!std::isfinite(o.top_p) || o.top_p <= 0 || o.top_p > 1)
    throw inference_error("top_p = " + std::to_string(o.top_p) + " is not allowed; use a number in (0, 1], such as 0.9");
}

std::int32_t sample_token(const float* logits, index vocab, const sampling_options& o, std::uint64_t draw) {
  validate_sampling(o);
  if (vocab < 1) throw inference_error("sampling needs at least one logit");
  for (index j = 0; j < vocab; ++j)
    if (!std::isfinite(logits[j]))
      throw inference_error("the model produced a non-finite logit (" + std::to_string(logits[j]) + ") for token " +
                            std::to_string(j) + "; the checkpoint is broken");
  if (o.temperature == 0) {
    index best = 0;
    for (index j = 1; j < vocab; ++j)
      if (logits[j] > logits[best]) best = j;
    return static_cast<std::int32_t>(best);
  }
  double mx = double(logits[0]);
  for (index j = 1; j < vocab; ++j) mx = std::max(mx, double(logits[j]));
  std::vector<double> p(static_cast<std::size_t>(vocab));
  double total = 0;
  for (index j = 0; j < vocab; ++j) {
    p[static_cast<std::size_t>(j)] = std::exp((double(logits[j]) - mx) / o.temperature);
    total += p[static_cast<std::size_t>(j)];
  }
  // The candidates in the order the draw walks them.
  std::vector<std::int32_t> order(static_cast<std::size_t>(vocab));
  std::iota(order.begin(), order.end(), 0);
  std::size_t kept = order.size();
  double mass = total;
  if (o.top_p < 1) {
    std::stable_sort(order.begin(), order.end(), [&](std::int32_t a, std::int32_t b) { return p[a] > p[b]; });
    double running = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      running += p[static_cast<std::size_t>(order[i])];
      if (running >= o.top_p * total) {
        kept = i + 1;
        break;
      }
    }
    mass = 0;
    for (std::size_t i = 0; i < kept; ++i) mass += p[static_cast<std::size_t>(order[i])];
  }
  const random_stream stream(mix_seed(o.seed, {sampling_stream_tag}));
  const double target = uniform_from_bits(stream.bits_at(draw)) * mass;
  double running = 0;
  for (std::size_t i = 0; i < kept; ++i) {
    running += p[static_cast<std::size_t>(order[i])];
    if (running > target) return order[i];
  }
  return order[kept - 1];  // rounding left the running mass just short of the target
}

}  // namespace glam
