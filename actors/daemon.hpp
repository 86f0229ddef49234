#pragma once
// What every glam process that talks to a cluster shares: signal handling for daemons, the
// client connection (connect + handshake), and the resident memory of this process.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/runtime_config.hpp"

namespace glam {

// Blocks SIGTERM and SIGINT in the calling thread (call before any thread starts, so every
// thread inherits the mask); wait_or_signal then takes them synchronously.
void block_termination_signals();
// Waits until `watched` terminates (returns false) or SIGTERM/SIGINT arrives (returns true).
bool wait_or_signal(caf::actor_system& sys, const caf::actor& watched);

// Resident set size of this process in bytes (0 when /proc is not there).
std::int64_t resident_bytes();

// A client of the coordinator: connection plus the secret handshake, as role "client".
// Throws std::runtime_error with what failed and the fix.
class client_connection {
 public:
  client_connection(const std::string& endpoint, const std::string& secret_file,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  ~client_connection();
  caf::actor_system& system() { return *sys_; }
  const caf::actor& server() const { return server_; }
  std::chrono::milliseconds timeout() const { return timeout_; }

 private:
  std::unique_ptr<runtime_config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  caf::actor server_;
  std::chrono::milliseconds timeout_;
};

}  // namespace glam
