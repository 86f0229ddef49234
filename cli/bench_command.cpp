// glam bench train CONFIG: the machine's sgemm rate, then tokens/s and MFU of the training
// step, and the same step with every MoE FFN replaced by a dense ReLU FFN of width 2·d_ff
// (the same activated FLOPs): the ratio is what routing, dispatch and combine cost.
#include <chrono>
#include <cstdio>
#include <memory>

#include "cli/commands.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "model/train_step.hpp"

namespace glam::cli {
namespace {

struct bench_options {
  std::string config_path;
  std::int64_t steps = 3;
  bool compare_dense = true;
};

struct throughput {
  double tokens_per_second = 0;
  double seconds_per_step = 0;
};

// Times `steps` training steps after one untimed warm-up step, on synthetic tokens (every
// expert computes its full capacity whatever the tokens, so the shapes are what matter).
throughput time_training(const config& c, std::int64_t steps) {
  synthetic_source data(c);
  reference_trainer trainer(c, data);
  trainer.train_step(0);
  double seconds = 0;
  index tokens = 0;
  for (std::int64_t k = 1; k <= steps; ++k) {
    auto start = std::chrono::steady_clock::now();
    tokens += trainer.train_step(k).tokens;
    seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  }
  return {double(tokens) / seconds, seconds / double(steps)};
}

int run_bench_train(const bench_options& o) {
  const config c = load_config(o.config_path);
  std::printf("measuring the sgemm baseline (n = 2048, %d threads)...\n", compute_threads());
  const double sgemm = measure_sgemm_flops(2048, 2.0);
  std::printf("sgemm: %.1f GFLOP/s\n", sgemm / 1e9);

  const double flops_per_token = double(make_plan(c, 1).flops_per_token_train);
  const throughput moe = time_training(c, o.steps);
  std::printf("%s: %.1f tokens/s, %.2f s/step, model FLOPs %.3g per token, MFU %.3f\n", c.name.c_str(),
              moe.tokens_per_second, moe.seconds_per_step, flops_per_token,
              flops_per_token * moe.tokens_per_second / sgemm);
  if (o.compare_dense && c.model.is_moe()) {
    config dense = c;
    dense.model.moe_as_dense_relu = true;
    const throughput base = time_training(dense, o.steps);
    std::printf("dense baseline (each MoE FFN a ReLU FFN of width 2·d_ff): %.1f tokens/s, MFU %.3f\n",
                base.tokens_per_second, flops_per_token * base.tokens_per_second / sgemm);
    std::printf("MoE / dense-baseline throughput: %.3f\n", moe.tokens_per_second / base.tokens_per_second);
  }
  return 0;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Benchmarks measured against this machine's own baselines");
  bench->require_subcommand(1);
  auto o = std::make_shared<bench_options>();
  auto* train = bench->add_subcommand("train", "Training step throughput and MFU against the measured sgemm rate");
  train->add_option("config", o->config_path, "The job's TOML config")->required()->check(CLI::ExistingFile);
  train->add_option("--steps", o->steps, "Timed steps (after one warm-up step)")->check(CLI::PositiveNumber);
  train->add_flag("!--no-dense-baseline", o->compare_dense, "Skip the dense-baseline comparison");
  train->callback([o] { run_bench_train(*o); });
}

}  // namespace glam::cli
