#include "cli/inference_backends.hpp"

#include "actors/cluster_discovery.hpp"
#include "cli/commands.hpp"
#include "serve/actor_backend.hpp"
#include "serve/reference_backend.hpp"

namespace glam::cli {

void add_backend_options(CLI::App* cmd, backend_choice& c) {
  auto* workers = cmd->add_option("--workers", c.workers,
                                  "Run the model on N workers started in this process (the actor runtime: an attention "
                                  "shard and the experts on workers)")
                      ->check(CLI::Range(1, 64));
  c.coordinator_option =
      cmd->add_option("--coordinator", c.coordinator,
                      "Run the model on a running cluster: HOST:PORT of its coordinator, or no value for "
                      "$GLAM_COORDINATOR, else the one running on this machine. Its workers must read the checkpoint "
                      "at the same path")
          ->expected(0, 1)
          ->excludes(workers);
  cmd->add_option("--secret-file", c.secret_file,
                  "With --coordinator: the cluster secret (default: the coordinator's, on this machine)");
}

running_backend start_backend(const backend_choice& c, const inference_checkpoint& ck, const std::string& config_path) {
  running_backend out;
  const bool cluster = c.coordinator_option && c.coordinator_option->count() > 0;
  if (c.workers == 0 && !cluster) {
    out.backend = reference_backend::from_checkpoint(ck);
    return out;
  }
  if (!config_path.empty())
    throw std::runtime_error("--config is for a checkpoint that does not record its config, which only the in-process "
                             "backend loads; drop --workers / --coordinator, or use a checkpoint of a newer glam");
  if (cluster) {
    const auto endpoint = resolve_coordinator(c.coordinator);
    out.connection = std::make_unique<client_connection>(endpoint, c.secret_file);
    out.backend = std::make_unique<actor_backend>(out.connection->system(), out.connection->server(), ck,
                                                  "the cluster at " + endpoint);
  } else {
    out.cluster = std::make_unique<embedded_cluster>(c.workers);
    out.backend = std::make_unique<actor_backend>(out.cluster->system(), out.cluster->coordinator(), ck,
                                                  std::to_string(c.workers) + " workers in this process");
  }
  return out;
}

}  // namespace glam::cli
