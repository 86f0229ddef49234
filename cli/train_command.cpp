// glam train CONFIG: trains a job in this process and reports progress and metrics.
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "cli/commands.hpp"
#include "cli/training_report.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"
#include "data/dataset.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "model/train_step.hpp"

namespace glam::cli {
namespace {

struct train_options {
  std::string config_path;
  std::string data_dir;
  std::string metrics_path;
  std::int64_t steps = -1;
  int threads = 0;
  std::int64_t inject_nonfinite_step = -1;
};

int run_train(const train_options& o) {
  config c = load_config(o.config_path);
  if (o.steps >= 0) c.train.steps = o.steps;
  if (!o.data_dir.empty()) c.data.dir = o.data_dir;
  if (o.threads > 0) set_compute_threads(o.threads);

  dataset data = dataset::open(c.data.dir);
  validate_against_data(c, data.vocab_size(), data.longest_trainable_sequence());
  dataset_source source(c, data);

  std::printf("glam train %s: %lld steps, %lld shards × %lld sequences × %lld tokens, %lld experts\n", c.name.c_str(),
              (long long)c.train.steps, (long long)c.cluster.shards, (long long)c.train.batch_per_shard,
              (long long)c.model.seq_len, (long long)c.model.experts);
  std::printf("data %s: %lld train tokens, unigram entropy %.4f nats\n", c.data.dir.c_str(),
              (long long)data.train_tokens(), data.unigram_entropy());
  training_report report(c, measure_sgemm_flops(1024, 0.3));
  std::printf("sgemm baseline %.1f GFLOP/s on %d threads\n", report.sgemm_flops() / 1e9, compute_threads());

  std::unique_ptr<std::ofstream> metrics;
  if (!o.metrics_path.empty()) {
    metrics = std::make_unique<std::ofstream>(o.metrics_path, std::ios::trunc);
    if (!*metrics) throw std::runtime_error("cannot write the metrics file '" + o.metrics_path + "'");
  }

  reference_trainer trainer(c, source);
  if (o.inject_nonfinite_step >= 0) trainer.inject_nonfinite_gradient_at(o.inject_nonfinite_step);
  for (std::int64_t k = 0; k < c.train.steps; ++k) {
    auto start = std::chrono::steady_clock::now();
    step_metrics m = trainer.train_step(k);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::optional<double> val;
    if (c.train.eval_every > 0 && ((k + 1) % c.train.eval_every == 0 || k + 1 == c.train.steps))
      val = trainer.evaluate(c.train.eval_batches);
    nlohmann::json line = report.record(m, seconds, val);
    if (metrics) *metrics << line.dump() << "\n" << std::flush;
  }
  report.print_summary();
  return 0;
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto o = std::make_shared<train_options>();
  auto* cmd = app.add_subcommand("train", "Train a job on prepared data in this process");
  cmd->add_option("config", o->config_path, "The job's TOML config")->required()->check(CLI::ExistingFile);
  cmd->add_option("--steps", o->steps, "Steps to train (default: the config's train.steps)")->check(CLI::NonNegativeNumber);
  cmd->add_option("--data", o->data_dir, "Prepared data directory (default: the config's data.dir)");
  cmd->add_option("--metrics", o->metrics_path, "Write one JSON object per step to this file");
  cmd->add_option("--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::PositiveNumber);
  cmd->add_option("--inject-nonfinite-step", o->inject_nonfinite_step,
                  "Fault injection: poison one gradient at this step (it must be skipped)")
      ->group("");
  cmd->callback([o] {
    int rc = run_train(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
