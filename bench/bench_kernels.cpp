// Dense-path kernels at the glam-small benchmark shapes (one attention shard):
// B=8, T=256 (N = 2048 rows), M=512, H=2048, heads=8 × d_head=64, V=8192; an expert's
// buffer is S=2 shards × capacity C=512 = 1024 rows. Counters: FLOP rate of the GEMM work
// (2·m·n·k per product), so each op reads against the machine's sgemm rate (the Gemm case).
// The CPU column is the process's CPU time (all threads): on a machine shared with other
// work it is steadier than wall time, and wall time on quiet cores is about CPU / threads.
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "kernels/attention.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/embedding.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gelu_ffn.hpp"
#include "kernels/matmul.hpp"
#include "kernels/rmsnorm.hpp"

namespace {

using glam::index;

constexpr index B = 8, T = 256, N = B * T, M = 512, H = 2048, heads = 8, d_head = 64, D = heads * d_head,
                V = 8192, expert_rows = 1024;

std::vector<float> random_floats(index n, std::uint32_t seed, float scale = 1.f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.f, scale);
  std::vector<float> v(static_cast<std::size_t>(n));
  for (auto& x : v) x = d(rng);
  return v;
}

void set_flops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] =
      benchmark::Counter(flops_per_iteration * double(state.iterations()), benchmark::Counter::kIsRate);
}

void BM_Gemm(benchmark::State& state) {
  const auto x = random_floats(N * M, 1), w = random_floats(M * H, 2);
  std::vector<float> y(N * H);
  for (auto _ : state) glam::linear_forward(x.data(), w.data(), y.data(), N, M, H);
  set_flops(state, 2.0 * N * M * H);
}
BENCHMARK(BM_Gemm)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_RmsnormForward(benchmark::State& state) {
  const auto x = random_floats(N * M, 1), s = random_floats(M, 2);
  std::vector<float> y(N * M), rstd(N);
  for (auto _ : state) glam::rmsnorm_forward(x.data(), s.data(), y.data(), rstd.data(), N, M);
}
BENCHMARK(BM_RmsnormForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_RmsnormBackward(benchmark::State& state) {
  const auto x = random_floats(N * M, 1), s = random_floats(M, 2), dy = random_floats(N * M, 3);
  std::vector<float> y(N * M), rstd(N), dx(N * M), ds(M);
  glam::rmsnorm_forward(x.data(), s.data(), y.data(), rstd.data(), N, M);
  for (auto _ : state)
    glam::rmsnorm_backward(x.data(), s.data(), rstd.data(), dy.data(), dx.data(), ds.data(), N, M);
}
BENCHMARK(BM_RmsnormBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// Causal attention still multiplies the full T×T blocks: FLOPs counted as computed.
constexpr double attention_forward_flops = 2.0 * 2.0 * B * heads * T * T * d_head;

void BM_AttentionForward(benchmark::State& state) {
  const auto q = random_floats(N * D, 1, 0.125f), k = random_floats(N * D, 2), v = random_floats(N * D, 3),
             bias = random_floats(32 * heads, 4, 0.06f);
  std::vector<float> out(N * D), probs(B * heads * T * T);
  for (auto _ : state)
    glam::attention_forward(q.data(), k.data(), v.data(), bias.data(), out.data(), probs.data(), B, T, heads, d_head);
  set_flops(state, attention_forward_flops);
}
BENCHMARK(BM_AttentionForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_AttentionBackward(benchmark::State& state) {
  const auto q = random_floats(N * D, 1, 0.125f), k = random_floats(N * D, 2), v = random_floats(N * D, 3),
             bias = random_floats(32 * heads, 4, 0.06f), dout = random_floats(N * D, 5);
  std::vector<float> out(N * D), probs(B * heads * T * T), dq(N * D), dk(N * D), dv(N * D), db(32 * heads);
  glam::attention_forward(q.data(), k.data(), v.data(), bias.data(), out.data(), probs.data(), B, T, heads, d_head);
  for (auto _ : state)
    glam::attention_backward(q.data(), k.data(), v.data(), probs.data(), dout.data(), dq.data(), dk.data(),
                             dv.data(), db.data(), B, T, heads, d_head);
  set_flops(state, 2 * attention_forward_flops);
}
BENCHMARK(BM_AttentionBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

struct ffn_buffers {
  std::vector<float> x, wg, w1, w2, a, u, h, y, dy, dx, dwg, dw1, dw2;
  explicit ffn_buffers(index rows)
      : x(random_floats(rows * M, 1)), wg(random_floats(M * H, 2, 0.044f)), w1(random_floats(M * H, 3, 0.044f)),
        w2(random_floats(H * M, 4, 0.022f)), a(rows * H), u(rows * H), h(rows * H), y(rows * M),
        dy(random_floats(rows * M, 5)), dx(rows * M), dwg(M * H), dw1(M * H), dw2(H * M) {}
};

void BM_GeluFfnForward(benchmark::State& state) {
  ffn_buffers f(N);
  for (auto _ : state)
    glam::gelu_ffn_forward(f.x.data(), f.wg.data(), f.w1.data(), f.w2.data(), f.a.data(), f.u.data(), f.h.data(),
                           f.y.data(), N, M, H);
  set_flops(state, 3 * 2.0 * N * M * H);
}
BENCHMARK(BM_GeluFfnForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_GeluFfnBackward(benchmark::State& state) {
  ffn_buffers f(N);
  glam::gelu_ffn_forward(f.x.data(), f.wg.data(), f.w1.data(), f.w2.data(), f.a.data(), f.u.data(), f.h.data(),
                         f.y.data(), N, M, H);
  for (auto _ : state)
    glam::gelu_ffn_backward(f.x.data(), f.wg.data(), f.w1.data(), f.w2.data(), f.a.data(), f.u.data(), f.h.data(),
                            f.dy.data(), f.dx.data(), f.dwg.data(), f.dw1.data(), f.dw2.data(), N, M, H);
  set_flops(state, 6 * 2.0 * N * M * H);
}
BENCHMARK(BM_GeluFfnBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// The elementwise part of the dense FFN alone (N·H gelu values), to show it does not dominate.
void BM_GeluTanh(benchmark::State& state) {
  const auto z = random_floats(N * H, 1, 2.f);
  std::vector<float> g(N * H);
  for (auto _ : state) glam::gelu_tanh(z.data(), g.data(), N * H);
}
BENCHMARK(BM_GeluTanh)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_ExpertReluForward(benchmark::State& state) {
  ffn_buffers f(expert_rows);
  for (auto _ : state)
    glam::relu_ffn_forward(f.x.data(), f.w1.data(), f.w2.data(), f.h.data(), f.y.data(), expert_rows, M, H);
  set_flops(state, 2 * 2.0 * expert_rows * M * H);
}
BENCHMARK(BM_ExpertReluForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_ExpertReluBackward(benchmark::State& state) {
  ffn_buffers f(expert_rows);
  glam::relu_ffn_forward(f.x.data(), f.w1.data(), f.w2.data(), f.h.data(), f.y.data(), expert_rows, M, H);
  for (auto _ : state)
    glam::relu_ffn_backward(f.x.data(), f.w1.data(), f.w2.data(), f.h.data(), f.dy.data(), f.dx.data(),
                            f.dw1.data(), f.dw2.data(), expert_rows, M, H);
  set_flops(state, 4 * 2.0 * expert_rows * M * H);
}
BENCHMARK(BM_ExpertReluBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// The split an expert unit runs: the rows part per shard (2 shards of C = 512 rows), then
// the weight gradients over all 1024 rows; the same 4 GEMMs as the one-call backward.
void BM_ExpertReluBackwardSplit(benchmark::State& state) {
  ffn_buffers f(expert_rows);
  std::vector<float> dpre(static_cast<std::size_t>(expert_rows * H));
  glam::relu_ffn_forward(f.x.data(), f.w1.data(), f.w2.data(), f.h.data(), f.y.data(), expert_rows, M, H);
  const index shard_rows = expert_rows / 2;
  for (auto _ : state) {
    for (index s = 0; s < 2; ++s)
      glam::relu_ffn_backward_rows(f.w1.data(), f.w2.data(), f.h.data() + s * shard_rows * H,
                                   f.dy.data() + s * shard_rows * M, f.dx.data() + s * shard_rows * M,
                                   dpre.data() + s * shard_rows * H, shard_rows, M, H);
    glam::relu_ffn_backward_weights(f.x.data(), f.h.data(), f.dy.data(), dpre.data(), f.dw1.data(), f.dw2.data(),
                                    expert_rows, M, H);
  }
  set_flops(state, 4 * 2.0 * expert_rows * M * H);
}
BENCHMARK(BM_ExpertReluBackwardSplit)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

std::vector<std::int32_t> random_tokens(index n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::int32_t> t(static_cast<std::size_t>(n));
  for (auto& v : t) v = static_cast<std::int32_t>(rng() % V);
  return t;
}

void BM_EmbeddingForward(benchmark::State& state) {
  const auto tokens = random_tokens(N, 1);
  const auto table = random_floats(V * M, 2);
  std::vector<float> out(N * M);
  for (auto _ : state) glam::embedding_forward(tokens.data(), table.data(), out.data(), N, V, M);
}
BENCHMARK(BM_EmbeddingForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_EmbeddingBackward(benchmark::State& state) {
  const auto tokens = random_tokens(N, 1);
  const auto dout = random_floats(N * M, 2);
  std::vector<float> dtable(V * M);
  for (auto _ : state) glam::embedding_backward(tokens.data(), dout.data(), dtable.data(), N, V, M);
}
BENCHMARK(BM_EmbeddingBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

// Logits, loss, and both gradients (the fused op of a training step).
void BM_CrossEntropyForwardBackward(benchmark::State& state) {
  const auto h = random_floats(N * M, 1), e = random_floats(V * M, 2);
  const auto targets = random_tokens(N, 3);
  std::vector<float> dh(N * M), de(V * M);
  for (auto _ : state)
    benchmark::DoNotOptimize(glam::cross_entropy(h.data(), e.data(), targets.data(), dh.data(), de.data(),
                                                 static_cast<float*>(nullptr), N, M, V, 1e-4, 1.0 / N));
  set_flops(state, 3 * 2.0 * N * M * V);
}
BENCHMARK(BM_CrossEntropyForwardBackward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

void BM_CrossEntropyForward(benchmark::State& state) {
  const auto h = random_floats(N * M, 1), e = random_floats(V * M, 2);
  const auto targets = random_tokens(N, 3);
  for (auto _ : state)
    benchmark::DoNotOptimize(glam::cross_entropy(h.data(), e.data(), targets.data(), static_cast<float*>(nullptr),
                                                 static_cast<float*>(nullptr), static_cast<float*>(nullptr), N, M, V,
                                                 1e-4, 1.0 / N));
  set_flops(state, 2.0 * N * M * V);
}
BENCHMARK(BM_CrossEntropyForward)->Unit(benchmark::kMillisecond)->UseRealTime()->MeasureProcessCPUTime();

}  // namespace
