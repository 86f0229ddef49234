// Decode steps of the reference inference (model/generate.hpp) at glam-tiny's and
// glam-small's shapes (configs/), for a batch of 1, 8 and 32 sequences, each one decode pass
// over caches of 32 … seq_len tokens. Baseline, measured in the same case: reading the
// weights one token activates (the dense replica, whose tied embedding the logits read in
// full, and two experts of every MoE layer) once, with all compute threads, best of 5. The
// counter `x_read` is the decode step's time over that read: at batch 1 decoding is bound by
// memory, and x_read = 1 would be the bound.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "configs/config.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/parallel.hpp"
#include "kernels/random.hpp"
#include "model/generate.hpp"

namespace {

using glam::index;

glam::config shapes(bool small) {
  glam::config c;
  c.name = small ? "glam-small" : "glam-tiny";
  c.model.vocab_size = small ? 8192 : 2048;
  c.model.layers = small ? 8 : 2;
  c.model.d_model = small ? 512 : 128;
  c.model.d_ff = small ? 2048 : 512;
  c.model.heads = small ? 8 : 4;
  c.model.d_head = small ? 64 : 32;
  c.model.experts = small ? 8 : 4;
  c.model.moe_every = 2;
  c.model.seq_len = small ? 256 : 64;
  c.train.seed = 1;
  return c;
}

// Seconds to read every float of the sets once (best of 5), all compute threads.
double read_seconds(const std::vector<const glam::param_set*>& sets) {
  std::vector<const glam::tensor*> tensors;
  for (const auto* s : sets)
    for (const auto& t : s->items) tensors.push_back(&t.value);
  std::vector<float> sums(tensors.size());
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = std::chrono::steady_clock::now();
    glam::parallel_for(index(tensors.size()), [&](index i) {
      sums[std::size_t(i)] = glam::sum_fixed(tensors[std::size_t(i)]->ptr(), tensors[std::size_t(i)]->size());
    });
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
    benchmark::DoNotOptimize(sums.data());
  }
  return best;
}

void BM_DecodeStep(benchmark::State& state) {
  const glam::config c = shapes(state.range(0) != 0);
  const index batch = state.range(1), T = c.model.seq_len, V = c.model.vocab_size;
  std::vector<glam::param_set> experts;
  for (index e = 0; e < c.model.experts; ++e) experts.push_back(glam::init_expert_params(c.model, e, c.train.seed));
  glam::reference_inference model(c, glam::init_dense_params(c.model, c.train.seed), std::move(experts));
  const double read = read_seconds({&model.shard().params(), &model.experts()[0].params(), &model.experts()[1].params()});

  glam::random_stream rng(7);
  const auto token = [&] { return std::int32_t(rng.next_bits() % std::uint64_t(V)); };
  const auto refill = [&] {
    for (index s = 0; s < batch; ++s) {
      model.shard().close_sequence(s);
      model.shard().open_sequence(s);
      std::vector<std::int32_t> prompt(32);
      for (auto& t : prompt) t = token();
      model.run_pass({{s, prompt}});
    }
  };
  refill();
  std::vector<glam::pass_item> items(static_cast<std::size_t>(batch));
  double steps = 0;
  for (auto _ : state) {
    if (model.shard().length(0) == T) {
      state.PauseTiming();
      refill();
      state.ResumeTiming();
    }
    for (index s = 0; s < batch; ++s) items[std::size_t(s)] = {s, {token()}};
    benchmark::DoNotOptimize(model.run_pass(items).ptr());
    steps += 1;
  }
  state.counters["tokens/s"] = benchmark::Counter(steps * double(batch), benchmark::Counter::kIsRate);
  state.counters["read_ms"] = read * 1e3;
  // The time of a step over the time of the read.
  state.counters["x_read"] = benchmark::Counter(steps * read, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
}
BENCHMARK(BM_DecodeStep)
    ->ArgsProduct({{0, 1}, {1, 8, 32}})
    ->ArgNames({"small", "batch"})
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime()
    ->MinTime(2.0);

}  // namespace
