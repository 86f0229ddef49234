// glam serve --checkpoint DIR --listen HOST:PORT: an OpenAI-compatible completions server
// with continuous batching (serve/), on the in-process backend (the whole model in this
// process, run by the batch scheduler's thread) or, with --workers N or --coordinator, on the
// actor backend (the units on workers).
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/inference_backends.hpp"
#include "data/tokenizer.hpp"
#include "kernels/parallel.hpp"
#include "model/generate.hpp"
#include "serve/completions_server.hpp"
#include "serve/reference_backend.hpp"

namespace glam::cli {
namespace {

struct serve_cli_options {
  std::string checkpoint;
  std::string listen = "127.0.0.1:8000";
  std::string api_key_file;
  std::string tokenizer;
  std::string config_path;
  std::string model_name;
  std::int64_t max_batch = 32;
  std::int64_t max_tokens_limit = 0;
  std::int64_t max_concurrent = 64;
  int threads = 0;
  backend_choice backend;
};

struct listen_address {
  std::string host;
  int port = 0;
};

listen_address parse_listen_address(const std::string& text, const std::string& option) {
  const auto colon = text.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size())
    throw std::runtime_error(option + " '" + text + "' is not HOST:PORT; e.g. 127.0.0.1:8000");
  listen_address a;
  a.host = text.substr(0, colon);
  if (a.host.size() > 2 && a.host.front() == '[' && a.host.back() == ']') a.host = a.host.substr(1, a.host.size() - 2);
  const std::string port = text.substr(colon + 1);
  if (port.find_first_not_of("0123456789") != std::string::npos || port.size() > 5 || std::stoi(port) > 65535)
    throw std::runtime_error(option + " '" + text + "': the port must be a number from 0 to 65535 (0: any free port)");
  a.port = std::stoi(port);
  return a;
}

bool is_loopback_host(const std::string& host) {
  return host == "localhost" || host == "::1" || host.rfind("127.", 0) == 0;
}

std::string format_host(const std::string& host) {
  return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

int run_serve(const serve_cli_options& o) {
  const listen_address listen = parse_listen_address(o.listen, "--listen");
  if (!is_loopback_host(listen.host) && o.api_key_file.empty())
    throw std::runtime_error("--listen " + o.listen +
                             " is reachable from other machines; a server that leaves loopback needs a key: pass "
                             "--api-key-file F (one key, mode 0600), or listen on 127.0.0.1");
  if (o.max_concurrent < o.max_batch)
    std::fprintf(stderr, "glam serve: note: --max-concurrent %lld is below --max-batch %lld; batches hold at most %lld\n",
                 (long long)o.max_concurrent, (long long)o.max_batch, (long long)o.max_concurrent);
  serve_options so;
  so.http.host = listen.host;
  so.http.port = listen.port;
  so.http.threads = 2;
  if (!o.api_key_file.empty()) so.api_key = read_api_key_file(o.api_key_file);
  so.model_name = o.model_name;
  so.max_tokens_limit = o.max_tokens_limit;
  so.scheduler.max_batch = o.max_batch;
  so.scheduler.max_admitted = o.max_concurrent;

  // Every thread started from here on inherits the mask: the signals wait for sigwait below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  if (o.threads > 0) set_compute_threads(o.threads);

  const inference_checkpoint ck = find_checkpoint(o.checkpoint, o.config_path);
  const std::string tokenizer_path = find_tokenizer_path(ck, o.tokenizer);
  const tokenizer tok = tokenizer::load(tokenizer_path);
  check_tokenizer(ck, tokenizer_path, tok.vocab_size());
  if (so.max_tokens_limit > ck.cfg.model.seq_len)
    throw std::runtime_error("--max-tokens-limit " + std::to_string(so.max_tokens_limit) +
                             " is more than the model's seq_len = " + std::to_string(ck.cfg.model.seq_len) +
                             ", which no completion can exceed; give at most " + std::to_string(ck.cfg.model.seq_len));
  std::fprintf(stderr, "glam serve: %s, step %lld (%s), tokenizer %s\n", ck.cfg.name.c_str(), (long long)ck.manifest.step,
               checkpoint_dir_for(ck.root, ck.manifest.step).c_str(), tokenizer_path.c_str());
  running_backend run = start_backend(o.backend, ck, o.config_path);
  auto& backend = run.backend;

  completions_server server(*backend, tok, so);
  server.start();
  const std::string base = "http://" + format_host(server.host()) + ":" + std::to_string(server.port());
  std::fprintf(stderr,
               "glam serve: model '%s' on %s; max batch %lld, max concurrent %lld, max_tokens up to %lld, %d compute "
               "threads%s\n",
               server.model_name().c_str(), backend->describe().c_str(), (long long)server.scheduler().options().max_batch,
               (long long)so.scheduler.max_admitted, (long long)server.limits().max_tokens, compute_threads(),
               so.api_key.empty() ? "" : ", API key required");
  std::fflush(stderr);
  // On stdout, the line scripts wait for (as the daemons print theirs).
  std::printf("glam serve listening on %s:%d (OpenAI base URL %s/v1)\n", server.host().c_str(), server.port(),
              base.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  std::fprintf(stderr, "glam serve: %s; stopping\n", signal_number == SIGINT ? "interrupted" : "terminated");
  server.stop();
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto o = std::make_shared<serve_cli_options>();
  auto* cmd = app.add_subcommand(
      "serve", "Serve a trained model over HTTP: an OpenAI-compatible completions API with continuous batching");
  cmd->add_option("--checkpoint", o->checkpoint,
                  "A checkpoint directory of `glam train` (the newest valid checkpoint in it), or one step-XXXXXXXX "
                  "directory")
      ->required();
  cmd->add_option("--listen", o->listen, "HOST:PORT to listen on (port 0: any free port)")->capture_default_str();
  cmd->add_option("--api-key-file", o->api_key_file,
                  "A file holding one API key (mode 0600): /v1/* then need 'Authorization: Bearer KEY'. Required "
                  "when --listen leaves loopback");
  cmd->add_option("--max-batch", o->max_batch, "Sequences in one decode step at most")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{256}));
  cmd->add_option("--max-tokens-limit", o->max_tokens_limit,
                  "The largest max_tokens a request may ask for (default: the model's seq_len)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--max-concurrent", o->max_concurrent,
                  "Sequences (prompts) admitted at once, running or waiting; more get 429 with Retry-After")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{4096}));
  cmd->add_option("--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::PositiveNumber);
  cmd->add_option("--tokenizer", o->tokenizer,
                  "Tokenizer model (default: the tokenizer.model of the data the checkpoint's job trained on)");
  cmd->add_option("--config", o->config_path,
                  "The job's config, for a checkpoint that does not record it (written by an older glam)");
  cmd->add_option("--model-name", o->model_name, "The model id clients send (default: the config's name)");
  add_backend_options(cmd, o->backend);
  cmd->callback([o] {
    int rc = run_serve(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
