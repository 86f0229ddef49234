#pragma once
// What every glam process that talks to a cluster shares: signal handling for daemons, the
// client connection (relay, connect, handshake), the resident memory of this process, and a
// shutdown that cannot hang.
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/error.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/relay.hpp"
#include "actors/runtime_config.hpp"

namespace glam {

// Blocks SIGTERM and SIGINT in the calling thread (call before any thread starts, so every
// thread inherits the mask); wait_or_signal then takes them synchronously.
void block_termination_signals();

// Waits until `watched` terminates or SIGTERM/SIGINT arrives. Returns true on a signal;
// on the actor's end, false with its exit reason in *reason.
bool wait_or_signal(caf::actor_system& sys, const caf::actor_addr& watched, caf::error* reason);

// From now on, the process ends with `code` after `grace` at the latest, whatever still
// runs (a detached thread stuck in a kernel, a peer that never answers): a daemon that
// decided to exit never hangs in ~actor_system.
void exit_within(std::chrono::seconds grace, int code);

// Resident set size of this process in bytes (0 when /proc is not there).
std::int64_t resident_bytes();

// The client side of the actor-level handshake: hello, check the server's proof, send
// ours. Returns an empty string on success, else the reason (refusal, wrong secret on
// either side, timeout).
std::string authenticate(caf::actor_system& sys, const caf::strong_actor_ptr& server, const hello_msg& hello,
                         const std::string& secret, std::chrono::milliseconds timeout);

// A client of the coordinator: its relay, the connection and the secret handshake, as role
// "client". Throws std::runtime_error with what failed and the fix.
class client_connection {
 public:
  client_connection(const std::string& endpoint, const std::string& secret_file,
                    std::chrono::milliseconds timeout = std::chrono::milliseconds(10000));
  ~client_connection();
  caf::actor_system& system() { return *sys_; }
  const coordinator_actor& server() const { return server_; }
  std::chrono::milliseconds timeout() const { return timeout_; }
  // The cluster secret this client proved (to derive the dashboard's token from).
  const std::string& secret() const { return secret_; }

 private:
  std::string secret_;
  std::unique_ptr<runtime_config> cfg_;
  std::unique_ptr<caf::actor_system> sys_;
  std::unique_ptr<relay> relay_;
  connector_actor connector_;
  coordinator_actor server_;
  std::chrono::milliseconds timeout_;
};

}  // namespace glam
