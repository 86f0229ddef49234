#pragma once
// `glam coordinator`: the daemon around the coordinator actor.
#include <chrono>
#include <string>

#include "actors/relay.hpp"

namespace glam {

struct coordinator_daemon_options {
  std::string listen = "127.0.0.1:7070";
  std::string state_dir;
  std::string secret_file;  // empty: STATE/secret, created (0600) when missing
  // Where jobs' checkpoints go (empty: STATE/checkpoints); every worker must reach it.
  std::string checkpoint_root;
  std::chrono::milliseconds heartbeat_timeout{3000};
  std::chrono::milliseconds step_timeout{300000};
  // Paces rounds: one starts at least this long after the previous one began (0: no pacing).
  std::chrono::milliseconds min_round{0};
  relay_encryption encryption = relay_encryption::off_loopback;
  // Testing: place units by a seeded random draw instead of the planner (0: planner).
  std::uint64_t random_placement_seed = 0;
  // The dashboard and /metrics (empty: none), and who may read them
  // (actors/http_access.hpp: auto = the token off loopback, token = always).
  std::string http;
  std::string http_auth = "auto";
};

// Runs until SIGTERM/SIGINT; returns the exit code (0 on a clean stop, 1 when the
// coordinator actor ended on its own, with the reason on stderr). Prints
// "glam coordinator listening on HOST:PORT" on stdout once it accepts connections, after
// "glam coordinator dashboard on http://HOST:PORT/" when it serves one (--http).
int run_coordinator(const coordinator_daemon_options& o);

}  // namespace glam
