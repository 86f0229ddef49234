// `glam worker [--coordinator HOST:PORT] [--listen HOST:PORT] [--name NAME] [--secret-file F]
//              [--data-root DIR] [--checkpoint-root DIR] [--http HOST:PORT [--http-auth auto|token]]`
#include <memory>

#include "cli/commands.hpp"
#include "worker/worker_daemon.hpp"

namespace glam::cli {

void add_worker_command(CLI::App& app) {
  auto o = std::make_shared<worker_daemon_options>();
  auto heartbeat_ms = std::make_shared<int>(500);
  auto coordinator_timeout_s = std::make_shared<int>(300);
  auto encryption = std::make_shared<std::string>("auto");
  auto* sub = app.add_subcommand("worker", "Run a worker daemon that hosts units for the coordinator");
  sub->add_option("--coordinator", o->coordinator, coordinator_option_help);
  sub->add_option("--listen", o->listen, "HOST:PORT peers reach this worker on (port 0: any free)")
      ->capture_default_str();
  sub->add_option("--name", o->name, "Name to register with, of [A-Za-z0-9._-] (default worker-<pid>)");
  sub->add_option("--secret-file", o->secret_file, "Cluster secret (default: the coordinator's, on this machine)");
  sub->add_option("--data-root", o->data_root,
                  "Jobs may read data only under this directory (default: the current directory)");
  sub->add_option("--checkpoint-root", o->checkpoint_root,
                  "Jobs may write checkpoints only under this directory (default: the coordinator's "
                  "checkpoint root when it runs on this machine; else none)");
  sub->add_option("--heartbeat-ms", *heartbeat_ms, "Heartbeat interval")->capture_default_str()->check(
      CLI::Range(50, 60000));
  sub->add_option("--threads", o->threads, "Compute threads (default: all cores)")->check(CLI::PositiveNumber);
  sub->add_option("--memory-limit", o->memory_limit,
                  "Memory this worker offers for units and their snapshots, e.g. 512MiB, 8GiB (default: all "
                  "physical memory)")
      ->transform(CLI::AsSizeValue(false))
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 50));
  sub->add_option("--coordinator-timeout", *coordinator_timeout_s,
                  "Seconds to look for a lost coordinator (a restart) before giving up")
      ->capture_default_str()
      ->check(CLI::Range(1, 86400));
  add_encryption_option(*sub, *encryption);
  add_http_options(*sub, o->http, o->http_auth, "/metrics");
  sub->add_option("--slow-factor", o->slow_factor,
                  "Testing (GLAM_TESTING=1): stretch this worker's kernel time by this factor (a slower machine)")
      ->check(CLI::Range(1.0, 100.0))
      ->group("");
  sub->add_option("--fault-at", o->fault_at,
                  "Testing (GLAM_TESTING=1): kill, stop or cut off this worker at PHASE:STEP:ACTION")
      ->group("");
  sub->callback([o, heartbeat_ms, coordinator_timeout_s, encryption] {
    o->heartbeat = std::chrono::milliseconds(*heartbeat_ms);
    o->coordinator_timeout = std::chrono::seconds(*coordinator_timeout_s);
    o->encryption = parse_encryption(*encryption);
    run_worker(*o);
  });
}

}  // namespace glam::cli
