#include "actors/runtime_config.hpp"

#include <caf/io/middleman.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/handshake_protocol.hpp"
#include "actors/security.hpp"
#include "actors/tensor_chunk.hpp"

namespace glam {

void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<build_fingerprint>("glam_fingerprint");
  cfg.add_message_type<hello_msg>("glam_hello");
  cfg.add_message_type<challenge_msg>("glam_challenge");
  cfg.add_message_type<proof_msg>("glam_proof");
  cfg.add_message_type<result_msg>("glam_result");
  cfg.add_message_type<worker_stats>("glam_wstats");
  cfg.add_message_type<step_tag>("glam_steptag");
  cfg.add_message_type<unit_assignment>("glam_assign");
  cfg.add_message_type<job_plan>("glam_jobplan");
  cfg.add_message_type<tensor_chunk>("glam_chunk");
  cfg.add_message_type<loss_parts>("glam_lossparts");
  cfg.add_message_type<shard_loss>("glam_shardloss");
  cfg.add_message_type<step_report>("glam_report");
  cfg.add_message_type<unit_file_info>("glam_unitfile");
  cfg.add_message_type<checkpoint_report>("glam_ckptreport");
}

runtime_config::runtime_config(const runtime_options& o) {
  load<caf::io::middleman>();
  register_message_types(*this);
  set("scheduler.max-threads", static_cast<std::size_t>(o.scheduler_threads));
  // Idle scheduler threads poll before they sleep; on two shared cores the default (600
  // polls after every message) costs several percent of a core per idle daemon.
  set("work-stealing.aggressive-poll-attempts", std::size_t{10});
  set("work-stealing.moderate-poll-attempts", std::size_t{10});
  set("middleman.heartbeat-interval", caf::timespan{o.caf_heartbeat});
  set("middleman.connection-timeout", caf::timespan{o.caf_connection_timeout});
  // Workers connect to each other on the addresses the coordinator hands out, never
  // through CAF's automatic connections (which dial non-loopback addresses).
  set("middleman.enable-automatic-connections", false);
}

std::unique_ptr<front_door> publish_guarded(caf::actor_system& sys, const caf::actor& actor,
                                            const std::string& host, int port) {
  auto inner = sys.middleman().publish(actor, 0, "127.0.0.1", true);
  if (!inner) throw std::runtime_error("cannot publish on loopback: " + sys.render(inner.error()));
  return std::make_unique<front_door>(host, port, *inner);
}

caf::expected<caf::actor> connect_to(caf::actor_system& sys, const std::string& host, int port) {
  return sys.middleman().remote_actor(host, static_cast<std::uint16_t>(port));
}

std::string authenticate(caf::actor_system& sys, const caf::actor& server, const hello_msg& hello_in,
                         const std::string& secret, std::chrono::milliseconds timeout) {
  caf::scoped_actor self{sys};
  hello_msg hello = hello_in;
  hello.client_nonce = random_hex(32);
  std::string problem;
  challenge_msg ch;
  self->request(server, timeout, hello_atom::value, hello)
      .receive([&](const challenge_msg& c) { ch = c; },
               [&](const caf::error& e) { problem = "handshake failed: " + sys.render(e); });
  if (!problem.empty()) return problem;
  if (!ch.ok) return "refused by the server: " + ch.reason;
  // Our proof goes out even when the server's fails, so that both sides report the
  // mismatch (it is an HMAC: it reveals nothing of the secret).
  const bool server_ok = constant_time_equal(server_proof(secret, hello.client_nonce), ch.server_proof);
  result_msg r;
  self->request(server, timeout, auth_atom::value, proof_msg{ch.nonce, client_proof(secret, ch.nonce)})
      .receive([&](const result_msg& m) { r = m; },
               [&](const caf::error& e) { problem = "authentication failed: " + sys.render(e); });
  if (!server_ok) return "the server could not prove the cluster secret: wrong --secret-file on one side";
  if (!problem.empty()) return problem;
  if (!r.ok) return "refused by the server: " + r.message;
  return {};
}

std::pair<std::string, int> parse_endpoint(const std::string& s, const std::string& option) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    throw std::invalid_argument(option + " '" + s + "' is not HOST:PORT (for example 127.0.0.1:7070)");
  auto host = s.substr(0, colon);
  int port = 0;
  try {
    std::size_t used = 0;
    port = std::stoi(s.substr(colon + 1), &used);
    if (used != s.size() - colon - 1) port = -1;
  } catch (...) {
    port = -1;
  }
  if (port < 0 || port > 65535)
    throw std::invalid_argument(option + " '" + s + "': port must be a number in 0..65535");
  return {host, port};
}

}  // namespace glam
