// MoE and optimizer kernels at glam-small's shapes: one group of N = 2048 tokens,
// M = 512, E = 8 experts, C = 512 (capacity factor 2); Adafactor on a 512×2048 matrix
// (factored) and a 512×1 vector (unfactored). Bytes processed count the rows moved.
#include <benchmark/benchmark.h>

#include <cmath>
#include <vector>

#include "kernels/adafactor.hpp"
#include "kernels/dispatch_combine.hpp"
#include "kernels/gating.hpp"
#include "kernels/random.hpp"

namespace glam {
namespace {

constexpr index bench_n = 2048, bench_m = 512, bench_e = 8;

std::vector<float> random_values(index n, std::uint64_t id, double stddev) {
  std::vector<float> v(static_cast<std::size_t>(n));
  random_stream rng(mix_seed(2024, {id}));
  fill_normal(v.data(), n, stddev, rng);
  return v;
}

// One routed group, shared by the dispatch and combine cases.
struct moe_group {
  std::vector<float> x = random_values(bench_n * bench_m, 1, 1.0);
  std::vector<float> wg = random_values(bench_m * bench_e, 2, std::sqrt(1.0 / bench_m));
  std::vector<float> probs = std::vector<float>(bench_n * bench_e);
  gating_options options;
  routing route;
  explicit moe_group(gate_policy policy = gate_policy::all) {
    options.capacity = gating_capacity(bench_n, bench_e, 2.0);
    options.policy = policy;
    options.random_seed = mix_seed(1, {0, 0, 0});
    gating_forward(x.data(), wg.data(), bench_n, bench_m, bench_e, options, route, probs.data());
  }
  index rows() const { return bench_e * route.capacity; }
};

void BM_gating_forward(benchmark::State& state) {
  moe_group g(state.range(0) ? gate_policy::random : gate_policy::all);
  for (auto _ : state) {
    gating_forward(g.x.data(), g.wg.data(), bench_n, bench_m, bench_e, g.options, g.route, g.probs.data());
    benchmark::DoNotOptimize(g.route.aux);
  }
  state.SetItemsProcessed(state.iterations() * bench_n);
  state.counters["dropped"] = double(g.route.dropped_choices);
}
BENCHMARK(BM_gating_forward)->Arg(0)->Arg(1)->ArgName("random")->Unit(benchmark::kMicrosecond);

void BM_gating_backward(benchmark::State& state) {
  moe_group g;
  const auto dw1 = random_values(bench_n, 3, 1.0), dw2 = random_values(bench_n, 4, 1.0);
  std::vector<float> dx(g.x.size()), dwg(g.wg.size());
  for (auto _ : state) {
    gating_backward(g.x.data(), g.wg.data(), g.probs.data(), g.route, dw1.data(), dw2.data(), 0.01f, dx.data(),
                    dwg.data(), bench_n, bench_m, bench_e);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetItemsProcessed(state.iterations() * bench_n);
}
BENCHMARK(BM_gating_backward)->Unit(benchmark::kMicrosecond);

void BM_dispatch_forward(benchmark::State& state) {
  moe_group g;
  std::vector<float> buffer(static_cast<std::size_t>(g.rows() * bench_m));
  for (auto _ : state) {
    dispatch_forward(g.x.data(), g.route, buffer.data(), bench_m);
    benchmark::DoNotOptimize(buffer.data());
  }
  state.SetBytesProcessed(state.iterations() * g.rows() * bench_m * index(sizeof(float)));
}
BENCHMARK(BM_dispatch_forward)->Unit(benchmark::kMicrosecond);

void BM_dispatch_backward(benchmark::State& state) {
  moe_group g;
  const auto d_buffer = random_values(g.rows() * bench_m, 5, 1.0);
  std::vector<float> dx(g.x.size());
  for (auto _ : state) {
    dispatch_backward(d_buffer.data(), g.route, dx.data(), bench_m);
    benchmark::DoNotOptimize(dx.data());
  }
  state.SetBytesProcessed(state.iterations() * g.rows() * bench_m * index(sizeof(float)));
}
BENCHMARK(BM_dispatch_backward)->Unit(benchmark::kMicrosecond);

void BM_combine_forward(benchmark::State& state) {
  moe_group g;
  const auto out = random_values(g.rows() * bench_m, 6, 1.0);
  std::vector<float> y(g.x.size());
  for (auto _ : state) {
    combine_forward(out.data(), g.route, y.data(), bench_m);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetBytesProcessed(state.iterations() * g.rows() * bench_m * index(sizeof(float)));
}
BENCHMARK(BM_combine_forward)->Unit(benchmark::kMicrosecond);

void BM_combine_backward(benchmark::State& state) {
  moe_group g;
  const auto out = random_values(g.rows() * bench_m, 7, 1.0), dy = random_values(bench_n * bench_m, 8, 1.0);
  std::vector<float> d_out(out.size()), dw1(bench_n), dw2(bench_n);
  for (auto _ : state) {
    combine_backward(out.data(), dy.data(), g.route, d_out.data(), dw1.data(), dw2.data(), bench_m);
    benchmark::DoNotOptimize(d_out.data());
  }
  state.SetBytesProcessed(state.iterations() * g.rows() * bench_m * index(sizeof(float)));
}
BENCHMARK(BM_combine_backward)->Unit(benchmark::kMicrosecond);

void BM_adafactor(benchmark::State& state) {
  const index rows = state.range(0), cols = state.range(1);
  auto param = random_values(rows * cols, 9, 0.05);
  const auto grad = random_values(rows * cols, 10, 1e-3);
  adafactor_state st;
  for (auto _ : state) {
    adafactor_update(param.data(), grad.data(), rows, cols, st, 1e-3);
    benchmark::DoNotOptimize(param.data());
  }
  state.SetItemsProcessed(state.iterations() * rows * cols);
  state.counters["factored"] = st.factored() ? 1 : 0;
}
BENCHMARK(BM_adafactor)->Args({512, 2048})->Args({512, 1})->ArgNames({"rows", "cols"})->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace glam
