#include "worker/worker_http.hpp"

#include <caf/all.hpp>

#include "actors/errors.hpp"
#include "actors/prometheus.hpp"

namespace glam {

namespace {

void refusal_samples(prometheus_writer& w, const std::string& name, const std::string& help,
                     const std::vector<std::pair<const char*, std::int64_t>>& counts, const std::string& worker) {
  for (const auto& [reason, n] : counts) w.counter(name, help, double(n), {{"worker", worker}, {"reason", reason}});
}

}  // namespace

std::string worker_metrics_text(const worker_stats& s, const http_counters& http) {
  prometheus_writer w;
  const metric_labels l{{"worker", s.name}};
  w.counter("glam_worker_tokens_computed_total", "Tokens the worker's units computed.", double(s.tokens_computed), l);
  w.counter("glam_worker_bytes_sent_total", "Tensor bytes the worker sent to other workers.", double(s.bytes_sent), l);
  w.counter("glam_worker_bytes_received_total", "Tensor bytes the worker received from other workers.",
            double(s.bytes_received), l);
  w.gauge("glam_worker_resident_bytes", "Resident memory of the worker process.", double(s.memory_bytes), l);
  w.gauge("glam_worker_memory_limit_bytes", "Memory the worker offers for units and their snapshots.",
          double(s.memory_limit), l);
  w.gauge("glam_worker_gflops", "The worker's measured sgemm speed (GFLOP/s).", s.gflops, l);
  w.gauge("glam_worker_peers", "Workers connected to this one directly.", double(s.peers), l);
  const auto& r = s.refused;
  refusal_samples(w, "glam_worker_refused_messages_total", "Messages the worker dropped, by reason.",
                  {{"unauthenticated", r.unauthenticated},
                   {"not_allowed", r.not_allowed},
                   {"system_messages", r.system_messages},
                   {"stale", r.stale},
                   {"malformed", r.malformed},
                   {"unexpected", r.unexpected}},
                  s.name);
  const auto& x = s.relay;
  refusal_samples(w, "glam_worker_relay_refused_total", "Connections the worker's relay refused, by reason.",
                  {{"secret", x.secret},
                   {"handshake", x.handshake},
                   {"connections", x.connections},
                   {"evicted", x.evicted},
                   {"frames", x.frames},
                   {"idle", x.idle}},
                  s.name);
  write_http_metrics(w, http);
  return w.text();
}

worker_http::worker_http(caf::actor_system& sys, worker_actor worker, worker_http_options o) {
  http_server_options so;
  so.host = o.host;
  so.port = o.port;
  server_ = std::make_unique<http_server>(so);
  http_server* server = server_.get();
  caf::actor_system* system = &sys;
  const auto timeout = o.request_timeout;
  auto metrics = [system, worker, timeout, server](const http_request&, http_responder r) {
    // Read here, on a server thread, while the server certainly lives.
    const http_counters http = server->counters();
    system->spawn([worker, timeout, r, http](caf::event_based_actor* self) {
      self->request(worker, timeout, ping_atom::value)
          .then(
              [self, r, http](const worker_stats& s) {
                http_response ok;
                ok.content_type = prometheus_content_type;
                ok.body = worker_metrics_text(s, http);
                r.respond(std::move(ok));
                self->quit();
              },
              [self, r](const caf::error& e) {
                http_response failed;
                failed.status = 503;
                failed.body = "the worker did not answer: " + error_text(e) + "\n";
                r.respond(std::move(failed));
                self->quit();
              });
    });
  };
  server_->add_route("GET", "/metrics", guarded(o.access, metrics));
  server_->start();
}

worker_http::~worker_http() {
  if (server_) server_->stop();
}

}  // namespace glam
