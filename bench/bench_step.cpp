// One whole training step of the reference trainer at glam-small's shapes (configs/
// glam-small.toml: 8 blocks, M = 512, H = 2048, 8 relu experts on blocks 0, 2, 4, 6,
// 2 shards × 8 sequences × 256 tokens), the MoE model against the same config with every MoE
// FFN a dense ReLU FFN of width 2·H (dense:1): the gap is what routing, dispatch and
// combine cost. `glam bench train` prints the same figures with MFU; this case exists to
// run under a profiler (perf record glam_bench --benchmark_filter=BM_TrainStep).
#include <benchmark/benchmark.h>

#include "configs/config.hpp"
#include "model/train_step.hpp"

namespace {

glam::config glam_small(bool dense) {
  glam::config c;
  c.name = "glam-small";
  c.model.vocab_size = 8192;
  c.model.layers = 8;
  c.model.d_model = 512;
  c.model.d_ff = 2048;
  c.model.heads = 8;
  c.model.d_head = 64;
  c.model.experts = 8;
  c.model.moe_every = 2;
  c.model.seq_len = 256;
  c.model.moe_as_dense_relu = dense;
  c.moe.capacity_factor = 2.0;
  c.moe.aux_weight = 0.01;
  c.train.batch_per_shard = 8;
  c.train.warmup = 100;
  c.train.seed = 1;
  c.cluster.shards = 2;
  return c;
}

void BM_TrainStep(benchmark::State& state) {
  const glam::config c = glam_small(state.range(0) != 0);
  glam::synthetic_source data(c);
  glam::reference_trainer trainer(c, data);
  std::int64_t step = 0;
  trainer.train_step(step++);  // warm-up: first-touch allocation of every buffer
  double tokens = 0;
  for (auto _ : state) tokens += double(trainer.train_step(step++).tokens);
  state.counters["tokens/s"] = benchmark::Counter(tokens, benchmark::Counter::kIsRate);
}
BENCHMARK(BM_TrainStep)->Arg(0)->Arg(1)->ArgName("dense")->Iterations(2)->Unit(benchmark::kSecond)->UseRealTime();

}  // namespace
