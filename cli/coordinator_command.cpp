// `glam coordinator --listen HOST:PORT --state DIR [--secret-file F] [--checkpoint-root DIR]
//                   [--http HOST:PORT [--http-auth auto|token]]`
#include <memory>

#include "cli/commands.hpp"
#include "coordinator/coordinator_daemon.hpp"

namespace glam::cli {

void add_coordinator_command(CLI::App& app) {
  auto o = std::make_shared<coordinator_daemon_options>();
  auto timeout_ms = std::make_shared<int>(3000);
  auto step_timeout_ms = std::make_shared<int>(300000);
  auto min_round_ms = std::make_shared<int>(0);
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
  sub->add_option("--step-timeout-ms", *step_timeout_ms,
                  "A round that takes longer is rolled back and tried again (a worker may be cut off)")
      ->capture_default_str()
      ->check(CLI::Range(200, 86400000));
  sub->add_option("--min-round-ms", *min_round_ms,
                  "Pace the job: a round starts at least this long after the previous one began (tests, glam chaos)")
      ->check(CLI::Range(0, 600000))
      ->group("");
  add_encryption_option(*sub, *encryption);
  add_http_options(*sub, o->http, o->http_auth, "the dashboard and /metrics");
  sub->add_option("--random-placement", o->random_placement_seed,
                  "Testing: place units by a random draw from this seed instead of the planner")
      ->group("");
  sub->callback([o, timeout_ms, step_timeout_ms, min_round_ms, encryption] {
    o->heartbeat_timeout = std::chrono::milliseconds(*timeout_ms);
    o->min_round = std::chrono::milliseconds(*min_round_ms);
    o->step_timeout = std::chrono::milliseconds(*step_timeout_ms);
    o->encryption = parse_encryption(*encryption);
    int rc = run_coordinator(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
