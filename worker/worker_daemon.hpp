#pragma once
// `glam worker`: the daemon around the worker actor.
#include <chrono>
#include <string>

namespace glam {

struct worker_daemon_options {
  std::string coordinator;
  std::string listen = "127.0.0.1:0";
  std::string name;  // default: "worker-<pid>"
  std::string secret_file;
  std::chrono::milliseconds heartbeat{500};
  int threads = 0;  // compute threads (0: all cores)
};

// Publishes the worker, registers with the coordinator, and runs until SIGTERM/SIGINT
// (returns 0 after leaving) or until the coordinator is lost or refuses it (throws with
// the reason). Prints "glam worker NAME listening on HOST:PORT" on stdout once registered.
int run_worker(const worker_daemon_options& o);

}  // namespace glam
