#pragma once
// Where `glam generate` and `glam serve` run the model: in this process (the reference
// backend), on N workers started in this process (--workers N: an embedded cluster and the
// actor backend), or on a running cluster (--coordinator [HOST:PORT], found and
// authenticated as glam status finds it). docs/serving.md, "The actor backend".
#include <memory>
#include <string>

#include <CLI/CLI.hpp>

#include "actors/daemon.hpp"
#include "coordinator/embedded_cluster.hpp"
#include "model/generate.hpp"
#include "serve/inference_backend.hpp"

namespace glam::cli {

struct backend_choice {
  int workers = 0;
  std::string coordinator;
  CLI::Option* coordinator_option = nullptr;  // given, with or without an address
  std::string secret_file;
};

// Adds --workers, --coordinator and --secret-file to cmd.
void add_backend_options(CLI::App* cmd, backend_choice& c);

// The backend and what it runs on (destroyed backend first).
struct running_backend {
  std::unique_ptr<embedded_cluster> cluster;
  std::unique_ptr<client_connection> connection;
  std::unique_ptr<inference_backend> backend;
};

// Starts the chosen backend for the checkpoint (config_path: --config, which only the
// in-process backend takes). Throws std::runtime_error naming the option and the fix.
running_backend start_backend(const backend_choice& c, const inference_checkpoint& ck, const std::string& config_path);

}  // namespace glam::cli
