#pragma once
// `glam worker`: the daemon around the worker actor.
#include <chrono>
#include <string>

#include "actors/relay.hpp"

namespace glam {

struct worker_daemon_options {
  std::string coordinator;
  std::string listen = "127.0.0.1:0";
  std::string name;  // default: "worker-<pid>"
  std::string secret_file;
  // Where jobs' data and checkpoints may be (defaults: the current directory; the
  // coordinator's recorded checkpoint root when it runs on this machine).
  std::string data_root;
  std::string checkpoint_root;
  std::chrono::milliseconds heartbeat{500};
  // How long a worker looks for a lost coordinator (a restart) before it gives up.
  std::chrono::milliseconds coordinator_timeout{300000};
  int threads = 0;  // compute threads (0: all cores)
  std::int64_t memory_limit = 0;  // bytes offered for units (0: the machine's physical memory)
  relay_encryption encryption = relay_encryption::off_loopback;
  std::string fault_at;  // testing: PHASE:STEP:ACTION (needs GLAM_TESTING=1)
  // /metrics for Prometheus (empty: none), and who may read it (actors/http_access.hpp).
  std::string http;
  std::string http_auth = "auto";
  double slow_factor = 1;  // testing: kernel time stretched by this factor (needs GLAM_TESTING=1)
};

// Publishes the worker, registers with the coordinator, and runs until SIGTERM/SIGINT
// (returns 0 after leaving), until it is drained (prints "glam worker NAME drained", returns
// 0), or until the coordinator refuses it or stays away past coordinator_timeout (throws
// with the reason). Prints "glam worker NAME listening on HOST:PORT" on stdout once
// registered, then "glam worker NAME metrics on http://HOST:PORT/metrics" with --http.
int run_worker(const worker_daemon_options& o);

}  // namespace glam
