#pragma once
// The actor system configuration every glam process uses, and how a process publishes its
// actor and reaches others: always through its relay (relay.hpp), never by a CAF connection
// of its own. Threads: 2 cores are shared by actor threads and compute threads, so the
// scheduler gets few threads; CAF's heartbeat and connection timeout are on so that a
// stopped (not killed) peer is noticed.
#include <chrono>
#include <set>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/expected.hpp>
#include <caf/fwd.hpp>
#include <caf/typed_actor.hpp>

#include "actors/messages.hpp"
#include "actors/relay.hpp"

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

// Registers every message type of the runtime (same names on every node) and the glam
// error category.
void register_message_types(caf::actor_system_config& cfg);

// Publishes `whom` (with its interface, sys.message_types(handle)) on host:port (0: any
// free port) behind the relay's front door: each connection that proved the secret is
// handed to CAF's BASP broker as a connection to `whom`. CAF itself listens on no port.
// Returns the public port; throws std::runtime_error naming the address on failure.
int publish_behind_relay(caf::actor_system& sys, const caf::strong_actor_ptr& whom,
                         std::set<std::string> interface, relay& r, const std::string& host, int port);

// The actor through which a process connects to others (this process only): the relay
// dials and authenticates the connection, then CAF's BASP broker runs its own handshake on
// it and answers with the actor published there. Errors name the relay's reason (cannot
// connect, wrong cluster secret, not a glam daemon).
using connector_actor =
    caf::typed_actor<caf::replies_to<caf::connect_atom, std::string, std::uint16_t>::with<caf::strong_actor_ptr>>;
connector_actor spawn_connector(caf::actor_system& sys, relay& r, std::chrono::milliseconds timeout);

// Connects through the connector (blocking: for clients and daemon start-up, never inside
// an actor).
caf::expected<caf::strong_actor_ptr> connect_through(caf::actor_system& sys, const connector_actor& connector,
                                                     const std::string& host, int port,
                                                     std::chrono::milliseconds timeout);

// The relay's refusals as a message field.
relay_refusals relay_refusals_of(const relay_counters& c);

// "HOST:PORT" -> (host, port); throws std::invalid_argument naming the value and the fix.
std::pair<std::string, int> parse_endpoint(const std::string& s, const std::string& option);

}  // namespace glam
