// `glam coordinator --listen HOST:PORT --state DIR [--secret-file F] [--checkpoint-root DIR]`
#include <memory>

#include "cli/commands.hpp"
#include "coordinator/coordinator_daemon.hpp"

namespace glam::cli {

void add_coordinator_command(CLI::App& app) {
  auto o = std::make_shared<coordinator_daemon_options>();
  auto timeout_ms = std::make_shared<int>(3000);
  auto encryption = std::make_shared<std::string>("auto");
  auto* sub = app.add_subcommand("coordinator", "Run the cluster coordinator daemon");
  sub->add_option("--listen", o->listen, "HOST:PORT to accept workers and clients on")->capture_default_str();
  sub->add_option("--state", o->state_dir, "State directory (jobs, epoch, metrics, secret)")->required();
  sub->add_option("--secret-file", o->secret_file, "Cluster secret (default: STATE/secret, created)");
  sub->add_option("--checkpoint-root", o->checkpoint_root,
                  "Where jobs' checkpoints go, one folder per job name; every worker must reach it "
                  "(default: STATE/checkpoints)");
  sub->add_option("--heartbeat-timeout-ms", *timeout_ms, "A worker silent this long counts as dead")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  add_encryption_option(*sub, *encryption);
  sub->add_option("--random-placement", o->random_placement_seed,
                  "Testing: place units by a random draw from this seed instead of the planner")
      ->group("");
  sub->callback([o, timeout_ms, encryption] {
    o->heartbeat_timeout = std::chrono::milliseconds(*timeout_ms);
    o->encryption = parse_encryption(*encryption);
    int rc = run_coordinator(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
