#include "actors/runtime_config.hpp"

#include <caf/all.hpp>
#include <caf/io/basp_broker.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/network/multiplexer.hpp>
#include <caf/scoped_actor.hpp>

#include "actors/errors.hpp"
#include "actors/inference_messages.hpp"
#include "actors/tensor_chunk.hpp"

namespace glam {

void register_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<build_fingerprint>("glam_fingerprint");
  cfg.add_message_type<hello_msg>("glam_hello");
  cfg.add_message_type<challenge_msg>("glam_challenge");
  cfg.add_message_type<proof_msg>("glam_proof");
  cfg.add_message_type<refusal_counts>("glam_refusals");
  cfg.add_message_type<relay_refusals>("glam_relayrefusals");
  cfg.add_message_type<worker_stats>("glam_wstats");
  cfg.add_message_type<job_tag>("glam_jobtag");
  cfg.add_message_type<round_id>("glam_round");
  cfg.add_message_type<worker_assignment>("glam_assign");
  cfg.add_message_type<std::vector<worker_assignment>>("glam_placement");
  cfg.add_message_type<job_plan>("glam_jobplan");
  cfg.add_message_type<tensor_chunk>("glam_chunk");
  cfg.add_message_type<loss_parts>("glam_lossparts");
  cfg.add_message_type<shard_loss>("glam_shardloss");
  cfg.add_message_type<step_report>("glam_report");
  cfg.add_message_type<unit_file_info>("glam_unitfile");
  cfg.add_message_type<checkpoint_report>("glam_ckptreport");
  cfg.add_message_type<unit_source>("glam_source");
  cfg.add_message_type<snapshot_held>("glam_held");
  cfg.add_message_type<unit_snapshot>("glam_snapshot");
  cfg.add_message_type<blob_chunk>("glam_blob");
  cfg.add_message_type<infer_assignment>("glam_inferassign");
  cfg.add_message_type<infer_request>("glam_inferreq");
  cfg.add_message_type<infer_reply>("glam_inferreply");
  register_error_category(cfg);
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
  // Workers connect to each other on the addresses the coordinator hands out, through
  // their relays, never through CAF's automatic connections (which dial non-loopback
  // addresses and open ports on every interface).
  set("middleman.enable-automatic-connections", false);
}

namespace {

caf::actor basp_broker(caf::actor_system& sys) {
  return sys.middleman().named_broker<caf::io::basp_broker>(caf::atom("BASP"));
}

}  // namespace

int publish_behind_relay(caf::actor_system& sys, const caf::strong_actor_ptr& whom,
                         std::set<std::string> interface, relay& r, const std::string& host, int port) {
  auto basp = basp_broker(sys);
  // The BASP broker serves a connection handed to it with its published actor (the same
  // path CAF takes for a connection its own port accepted, without the port).
  return r.listen(host, port, [&sys, basp, whom, interface](int fd, const std::string&) {
    auto scribe = sys.middleman().backend().new_scribe(fd);
    caf::anon_send(basp, caf::publish_atom::value, std::move(scribe), std::uint16_t{0}, whom, interface);
  });
}

connector_actor spawn_connector(caf::actor_system& sys, relay& r, std::chrono::milliseconds timeout) {
  auto basp = basp_broker(sys);
  // Detached: opening blocks this actor's own thread (bounded by the relay's handshake
  // deadline), never a scheduler thread.
  return sys.spawn<caf::detached>([&r, basp, timeout](connector_actor::pointer self) -> connector_actor::behavior_type {
    return {
        [self, &r, basp, timeout](caf::connect_atom, const std::string& host,
                                  std::uint16_t port) -> caf::result<caf::strong_actor_ptr> {
          auto& sender = self->current_sender();
          if (!sender || sender->node() != self->node())
            return make_error(glam_errc::not_allowed, "the connector is for this process only");
          int fd = -1;
          try {
            fd = r.open_blocking(host, port);
          } catch (const std::exception& e) {
            return make_error(glam_errc::refused, e.what());
          }
          auto scribe = self->system().middleman().backend().new_scribe(fd);
          auto rp = self->make_response_promise<caf::strong_actor_ptr>();
          const auto where = host + ":" + std::to_string(port);
          self->request(basp, timeout, caf::connect_atom::value, std::move(scribe), port)
              .then(
                  [rp, where](const caf::node_id&, caf::strong_actor_ptr& found, const std::set<std::string>&) mutable {
                    if (found)
                      rp.deliver(std::move(found));
                    else
                      rp.deliver(make_error(glam_errc::refused, where + " publishes no actor"));
                  },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
          return rp;
        },
    };
  });
}

caf::expected<caf::strong_actor_ptr> connect_through(caf::actor_system& sys, const connector_actor& connector,
                                                     const std::string& host, int port,
                                                     std::chrono::milliseconds timeout) {
  caf::scoped_actor self{sys};
  caf::expected<caf::strong_actor_ptr> out{caf::sec::request_timeout};
  self->request(connector, timeout, caf::connect_atom::value, host, static_cast<std::uint16_t>(port))
      .receive([&](caf::strong_actor_ptr& found) { out = std::move(found); }, [&](caf::error& e) { out = std::move(e); });
  return out;
}

relay_refusals relay_refusals_of(const relay_counters& c) {
  return {c.refused_secret, c.refused_handshake, c.refused_connections, c.evicted_pending, c.refused_frames,
          c.closed_idle};
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
