#pragma once
// `glam coordinator`: the daemon around the coordinator actor.
#include <chrono>
#include <string>

namespace glam {

struct coordinator_daemon_options {
  std::string listen = "127.0.0.1:7070";
  std::string state_dir;
  std::string secret_file;  // empty: STATE/secret, created (0600) when missing
  std::chrono::milliseconds heartbeat_timeout{3000};
  // Testing: place units by a seeded random draw instead of the planner (0: planner).
  std::uint64_t random_placement_seed = 0;
};

// Runs until SIGTERM/SIGINT; returns the exit code (0 on a clean stop). Prints
// "glam coordinator listening on HOST:PORT" on stdout once it accepts connections.
int run_coordinator(const coordinator_daemon_options& o);

}  // namespace glam
