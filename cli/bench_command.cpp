// glam bench train CONFIG: the machine's sgemm rate, then tokens/s and MFU of the training
// step, and the same step with every MoE FFN replaced by a dense ReLU FFN of width 2·d_ff
// (the same activated FLOPs): the ratio is what routing, dispatch and combine cost.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <string>

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
  double tokens_per_second = 0;       // over all timed steps
  double best_tokens_per_second = 0;  // of the fastest step
  double seconds_per_step = 0;
};

// Times `steps` training steps after one untimed warm-up step, on synthetic tokens (every
// expert computes its full capacity whatever the tokens, so the shapes are what matter).
throughput time_training(const config& c, std::int64_t steps) {
  synthetic_source data(c);
  reference_trainer trainer(c, data);
  trainer.train_step(0);
  double seconds = 0, best = 0;
  index tokens = 0;
  for (std::int64_t k = 1; k <= steps; ++k) {
    auto start = std::chrono::steady_clock::now();
    const index step_tokens = trainer.train_step(k).tokens;
    const double step_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    tokens += step_tokens;
    seconds += step_seconds;
    best = std::max(best, double(step_tokens) / step_seconds);
  }
  return {double(tokens) / seconds, best, seconds / double(steps)};
}

void print_throughput(const char* what, const throughput& t, double flops_per_token, double sgemm,
                      const std::string& load_before) {
  std::printf("%s: %.1f tokens/s (best step %.1f), %.2f s/step, MFU %.3f (best step %.3f)  [%s -> %s]\n", what,
              t.tokens_per_second, t.best_tokens_per_second, t.seconds_per_step,
              flops_per_token * t.tokens_per_second / sgemm, flops_per_token * t.best_tokens_per_second / sgemm,
              load_before.c_str(), load_average().c_str());
  std::fflush(stdout);
}

int run_bench_train(const bench_options& o) {
  const config c = load_config(o.config_path);
  std::printf("measuring the sgemm baseline (n = 2048, best of >= 5 products over >= 2 s, %d threads)...\n",
              compute_threads());
  std::fflush(stdout);
  std::string before = load_average();
  const double sgemm = measure_sgemm_flops(2048, 2.0);
  std::printf("sgemm: %.1f GFLOP/s  [%s -> %s]\n", sgemm / 1e9, before.c_str(), load_average().c_str());

  const double flops_per_token = double(make_plan(c, 1).flops_per_token_train);
  std::printf("%s: model FLOPs %.4g per token (glam plan's flops_per_token_train), %lld timed steps\n",
              c.name.c_str(), flops_per_token, (long long)o.steps);
  before = load_average();
  const throughput moe = time_training(c, o.steps);
  print_throughput(c.model.is_moe() ? "MoE" : "dense", moe, flops_per_token, sgemm, before);
  if (o.compare_dense && c.model.is_moe()) {
    config dense = c;
    dense.model.moe_as_dense_relu = true;
    before = load_average();
    const throughput base = time_training(dense, o.steps);
    print_throughput("dense baseline (each MoE FFN a ReLU FFN of width 2·d_ff)", base, flops_per_token, sgemm,
                     before);
    std::printf("MoE / dense-baseline throughput: %.3f (best steps: %.3f)\n",
                moe.tokens_per_second / base.tokens_per_second,
                moe.best_tokens_per_second / base.best_tokens_per_second);
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

// The 1-minute load average, so that every figure is printed with how busy the machine was
// (on a shared machine other processes take cores from the measurement).
std::string load_average() {
  std::ifstream in("/proc/loadavg");
  double one = 0;
  if (!(in >> one)) return "load unknown";
  char text[32];
  std::snprintf(text, sizeof text, "load %.2f", one);
  return text;
}

}  // namespace glam::cli
