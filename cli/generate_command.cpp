// glam generate --checkpoint DIR --prompt TEXT: continues a prompt with a trained model,
// printing the text to stdout as the tokens are chosen. The model runs on an inference
// backend (in this process, on workers started here with --workers N, or on a cluster with
// --coordinator), decoded by the batch scheduler of glam serve with one sequence: one decode
// loop for both commands and every backend.
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/inference_backends.hpp"
#include "serve/batch_scheduler.hpp"
#include "data/tokenizer.hpp"
#include "kernels/parallel.hpp"
#include "model/generate.hpp"

namespace glam::cli {
namespace {

struct generate_options {
  std::string checkpoint;
  std::string prompt;
  bool prompt_given = false;
  std::int64_t max_tokens = 64;
  double temperature = 1.0;
  double top_p = 1.0;
  std::uint64_t seed = 0;
  std::string tokenizer;
  std::string config_path;
  int threads = 0;
  backend_choice backend;
};

double seconds_since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

int run_generate(const generate_options& o) {
  if (o.threads > 0) set_compute_threads(o.threads);
  if (o.prompt.empty())
    throw inference_error("--prompt is empty; give the text to continue, e.g. --prompt \"Once upon a time\"");
  const inference_checkpoint ck = find_checkpoint(o.checkpoint, o.config_path);
  const std::string tokenizer_path = find_tokenizer_path(ck, o.tokenizer);
  const tokenizer tok = tokenizer::load(tokenizer_path);
  check_tokenizer(ck, tokenizer_path, tok.vocab_size());

  generation_options g;
  g.max_tokens = o.max_tokens;
  g.sampling.temperature = o.temperature;
  g.sampling.top_p = o.top_p;
  g.sampling.seed = o.seed;
  g.stop_token = tok.eos_id();
  const std::vector<std::int32_t> prompt = tok.encode(o.prompt);
  // Checks the prompt and the options before the parameters are loaded.
  generation_state(prompt, g, ck.cfg.model);

  std::fprintf(stderr, "glam generate: %s, step %lld (%s), tokenizer %s, prompt %zu tokens\n", ck.cfg.name.c_str(),
               (long long)ck.manifest.step, checkpoint_dir_for(ck.root, ck.manifest.step).c_str(),
               tokenizer_path.c_str(), prompt.size());
  running_backend run = start_backend(o.backend, ck, o.config_path);
  std::fprintf(stderr, "glam generate: on %s\n", run.backend->describe().c_str());
  scheduler_options so;
  so.max_batch = 1;
  so.max_admitted = 1;
  batch_scheduler scheduler(*run.backend, so);

  text_stream text(tok);
  const auto start = std::chrono::steady_clock::now();
  double first_token_seconds = 0;
  std::size_t produced = 0;
  std::promise<sequence_outcome> ended;
  sequence_job job;
  job.prompt = prompt;
  job.options = g;
  job.on_token = [&](std::int32_t token) {
    if (produced++ == 0) first_token_seconds = seconds_since(start);
    const std::string piece = text.push(token);
    std::fwrite(piece.data(), 1, piece.size(), stdout);
    std::fflush(stdout);
    return token_verdict::go_on;
  };
  job.on_finish = [&](const sequence_outcome& outcome) { ended.set_value(outcome); };
  std::vector<sequence_job> jobs;
  jobs.push_back(std::move(job));
  if (!scheduler.admit(std::move(jobs))) throw std::runtime_error("the scheduler refused the prompt (a bug)");
  const sequence_outcome r = ended.get_future().get();
  scheduler.stop();
  if (!r.error.empty()) throw std::runtime_error("generation failed: " + r.error);
  const double total = seconds_since(start);
  const std::string rest = text.finish();
  std::fwrite(rest.data(), 1, rest.size(), stdout);
  std::fputc('\n', stdout);
  std::fflush(stdout);
  // Decode rate: the tokens after the first, each one decode pass.
  const double decode_seconds = total - first_token_seconds;
  std::fprintf(stderr, "glam generate: %zu tokens (finish: %s); prefill %.1f ms; decode %.1f tokens/s on %d threads\n",
               r.tokens.size(), to_string(r.reason), first_token_seconds * 1e3,
               r.tokens.size() > 1 ? double(r.tokens.size() - 1) / decode_seconds : 0.0, compute_threads());
  return 0;
}

}  // namespace

void add_generate_command(CLI::App& app) {
  auto o = std::make_shared<generate_options>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a trained model (a checkpoint)");
  cmd->add_option("--checkpoint", o->checkpoint,
                  "A checkpoint directory of `glam train` (the newest valid checkpoint in it), or one step-XXXXXXXX "
                  "directory")
      ->required();
  cmd->add_option("--prompt", o->prompt, "The text to continue")->required();
  cmd->add_option("--max-tokens", o->max_tokens, "Tokens to generate at most (default 64)")->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", o->temperature, "Sampling temperature; 0 is greedy (default 1)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", o->top_p, "Nucleus sampling: keep the most likely tokens whose mass reaches this (default 1)")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", o->seed, "Seed of the sampling stream: the same seed gives the same text (default 0)");
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer model (default: the tokenizer.model of the data the checkpoint's job trained on)");
  cmd->add_option("--config", o->config_path,
                  "The job's config, for a checkpoint that does not record it (written by an older glam)");
  cmd->add_option("--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::PositiveNumber);
  add_backend_options(cmd, o->backend);
  cmd->callback([o] {
    int rc = run_generate(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
