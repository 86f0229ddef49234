#pragma once
// The actor system configuration every glam process uses, and the client side of the
// handshake. Threads: 2 cores are shared by actor threads and compute threads, so the
// scheduler gets few threads; CAF's heartbeat and connection timeout are on so that a
// stopped (not killed) peer is noticed (caf-notes.md).
#include <chrono>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>

#include "actors/front_door.hpp"
#include "actors/messages.hpp"

namespace glam {

struct runtime_options {
  int scheduler_threads = 2;
  std::chrono::milliseconds caf_heartbeat{500};
  std::chrono::milliseconds caf_connection_timeout{3000};
};

class runtime_config : public caf::actor_system_config {
 public:
  explicit runtime_config(const runtime_options& o);
};

// Registers every message type of the runtime (same names on every node).
void register_message_types(caf::actor_system_config& cfg);

// Publishes actor behind a front door: CAF listens on an internal loopback port, and
// host:port (0: any free port) is the front door that checks every frame before CAF sees
// it (front_door.hpp). Throws std::runtime_error naming the address on failure.
std::unique_ptr<front_door> publish_guarded(caf::actor_system& sys, const caf::actor& actor,
                                            const std::string& host, int port);

// Connects to the actor published at host:port (blocking: for clients and daemon
// start-up, never inside an actor).
caf::expected<caf::actor> connect_to(caf::actor_system& sys, const std::string& host, int port);

// The client side of the handshake: hello, check the server's proof, send ours. Returns an
// empty string on success, else the reason (refusal, wrong secret on either side, timeout).
std::string authenticate(caf::actor_system& sys, const caf::actor& server, const hello_msg& hello,
                         const std::string& secret, std::chrono::milliseconds timeout);

// "HOST:PORT" -> (host, port); throws std::invalid_argument naming the value and the fix.
std::pair<std::string, int> parse_endpoint(const std::string& s, const std::string& option);

}  // namespace glam
