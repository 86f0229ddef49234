// glam train CONFIG: trains a job in this process and reports progress and metrics.
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/training_report.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"
#include "data/dataset.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "coordinator/embedded_cluster.hpp"
#include "model/checkpoint.hpp"
#include "model/metrics.hpp"
#include "model/step_schedule.hpp"
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
  std::string checkpoint_dir;
  bool resume = false;
  int workers = 0;  // 0: the single-threaded reference step; N: a coordinator and N workers (actors)
  std::string state_dir;
};

void print_checkpoint(const char* what, const std::string& root, const checkpoint_manifest& m) {
  // The step of a checkpoint is the number of steps done: the next step to run.
  std::printf("checkpoint %s: step %lld (next to run), %s, %.1f MiB, epoch %lld\n", what, (long long)m.step,
              checkpoint_dir_for(root, m.step).c_str(), double(checkpoint_bytes(m)) / (1024.0 * 1024.0),
              (long long)m.epoch);
  std::fflush(stdout);
}

// The step metrics of a metrics line (what the coordinator recorded), for the report.
step_metrics metrics_of(const nlohmann::json& line) {
  step_metrics m;
  m.step = line["step"].get<std::int64_t>();
  m.loss.loss = static_cast<float>(line["loss"].get<double>());
  m.loss.cross_entropy = static_cast<float>(line["cross_entropy"].get<double>());
  m.loss.aux = static_cast<float>(line["aux_loss"].get<double>());
  m.loss.z = static_cast<float>(line["z_loss"].get<double>());
  m.tokens = line["tokens"].get<index>();
  m.skipped = line["skipped"].get<bool>();
  m.dropped = line["dropped"].get<index>();
  m.tokens_per_expert = line["tokens_per_expert"].get<std::vector<index>>();
  return m;
}

// glam train --workers N: a coordinator and N workers in this process, the same actors and
// step protocol as a cluster of daemons. The coordinator's metrics lines go to --metrics.
int run_embedded(const config& c, const train_options& o, training_report& report) {
  namespace fs = std::filesystem;
  const bool own_state = o.state_dir.empty();
  const std::string state = own_state ? (fs::temp_directory_path() / ("glam-train-" + std::to_string(::getpid()))).string()
                                      : o.state_dir;
  if (own_state) fs::remove_all(state);
  std::unique_ptr<std::ofstream> metrics;
  if (!o.metrics_path.empty()) {
    metrics = std::make_unique<std::ofstream>(o.metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!*metrics) throw std::runtime_error("cannot write the metrics file '" + o.metrics_path + "'");
  }
  embedded_options eo;
  eo.workers = o.workers;
  eo.state_dir = state;
  eo.sgemm_flops = report.sgemm_flops();
  eo.inject_nonfinite_step = o.inject_nonfinite_step;
  eo.checkpoint_root = o.checkpoint_dir;
  eo.resume = o.resume;
  eo.on_step = [&](const job_record&, const nlohmann::json& line) {
    std::optional<double> val;
    if (line.contains("val_loss")) val = line["val_loss"].get<double>();
    report.record(metrics_of(line), line["seconds"].get<double>(), val);
    if (metrics) *metrics << line.dump() << "\n" << std::flush;
  };
  std::printf("%d embedded workers (actors), coordinator state in %s\n", o.workers, state.c_str());
  std::fflush(stdout);
  const auto job = run_embedded_job(to_toml(c), o.config_path, eo);
  if (own_state) fs::remove_all(state);
  if (job.state != job_state::finished) throw std::runtime_error("job " + job.id + " " + to_string(job.state) + ": " + job.error);
  report.print_summary();
  return 0;
}

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
  training_report report(c, measure_sgemm_flops());
  std::printf("sgemm baseline %.1f GFLOP/s on %d threads\n", report.sgemm_flops() / 1e9, compute_threads());

  std::optional<checkpoint_manifest> resume_from;
  if (o.resume) {
    resume_from = latest_valid_checkpoint(o.checkpoint_dir, c);
    if (!resume_from)
      throw std::runtime_error("--resume: no valid checkpoint in '" + o.checkpoint_dir +
                               "'; train without --resume first, or point --checkpoint-dir at the run's checkpoints");
    if (resume_from->step > c.train.steps)
      throw std::runtime_error("--resume: the checkpoint in '" + o.checkpoint_dir + "' is at step " +
                               std::to_string(resume_from->step) + ", past train.steps = " +
                               std::to_string(c.train.steps) + "; raise --steps");
    // The run being resumed may have gone past its last checkpoint: those steps are
    // replayed and recorded again.
    if (!o.metrics_path.empty()) keep_metrics_before(o.metrics_path, resume_from->step);
  }
  if (o.workers > 0) return run_embedded(c, o, report);

  reference_trainer trainer(c, source);
  if (o.inject_nonfinite_step >= 0) trainer.inject_nonfinite_gradient_at(o.inject_nonfinite_step);

  // The next step to run, and the epoch checkpoint files are written under: a resumed run is
  // a new epoch, so that it never overwrites the files of the run it resumed.
  std::int64_t first_step = 0, epoch = 0;
  if (resume_from) {
    restore_checkpoint(trainer, o.checkpoint_dir, *resume_from);
    print_checkpoint("loaded", o.checkpoint_dir, *resume_from);
    remove_checkpoints_after(o.checkpoint_dir, resume_from->step);
    first_step = resume_from->step;
    epoch = resume_from->epoch + 1;
  }

  std::unique_ptr<std::ofstream> metrics;
  if (!o.metrics_path.empty()) {
    // A resumed run continues the metrics of the run it resumed.
    metrics = std::make_unique<std::ofstream>(o.metrics_path, o.resume ? std::ios::app : std::ios::trunc);
    if (!*metrics) throw std::runtime_error("cannot write the metrics file '" + o.metrics_path + "'");
  }

  const step_schedule schedule(c);
  std::int64_t last_saved = o.resume ? first_step : -1;
  const auto checkpoint = [&](std::int64_t steps_done) {
    if (o.checkpoint_dir.empty() || steps_done == last_saved) return;
    print_checkpoint("written", o.checkpoint_dir, save_checkpoint(trainer, o.checkpoint_dir, steps_done, epoch));
    last_saved = steps_done;
  };
  for (std::int64_t k = first_step; k < c.train.steps; ++k) {
    auto start = std::chrono::steady_clock::now();
    step_metrics m = trainer.train_step(k);
    double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::optional<double> val;
    if (schedule.evaluates_after(k)) val = trainer.evaluate(c.train.eval_batches);
    nlohmann::json line = report.record(m, seconds, val);
    if (metrics) *metrics << line.dump() << "\n" << std::flush;
    if (schedule.checkpoints_at(k + 1)) checkpoint(k + 1);
  }
  checkpoint(c.train.steps);
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
  auto* dir = cmd->add_option("--checkpoint-dir", o->checkpoint_dir,
                              "Write a checkpoint every fault.checkpoint_every steps (0: at the end only) and at "
                              "the end, into this directory");
  cmd->add_flag("--resume", o->resume, "Continue from the newest valid checkpoint in --checkpoint-dir")->needs(dir);
  cmd->add_option("--workers", o->workers,
                  "Run a coordinator and this many workers in this process (the actor runtime) instead of the "
                  "single-threaded reference step")
      ->check(CLI::Range(1, 64));
  cmd->add_option("--state", o->state_dir, "With --workers: the coordinator's state directory (default: a temporary one)");
  cmd->callback([o] {
    int rc = run_train(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
