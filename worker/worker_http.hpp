#pragma once
// A worker's HTTP port (glam worker --http HOST:PORT): GET /metrics in the Prometheus text
// format 0.0.4. The numbers come from the worker actor by its ping request, made by a
// short-lived actor per HTTP request, so no other thread touches the actor's state.
#include <memory>
#include <string>

#include <caf/actor_system.hpp>

#include "actors/http_access.hpp"
#include "actors/http_server.hpp"
#include "actors/messages.hpp"
#include "actors/worker_protocol.hpp"

namespace glam {

struct worker_http_options {
  std::string host = "127.0.0.1";
  int port = 0;
  http_access access;
  std::chrono::milliseconds request_timeout{5000};
};

class worker_http {
 public:
  // Binds and serves at once; throws std::runtime_error naming the address when it cannot.
  worker_http(caf::actor_system& sys, worker_actor worker, worker_http_options options);
  ~worker_http();
  worker_http(const worker_http&) = delete;
  worker_http& operator=(const worker_http&) = delete;

  int port() const { return server_->port(); }
  std::string host() const { return server_->host(); }
  void stop() { server_->stop(); }

 private:
  std::unique_ptr<http_server> server_;
};

// A worker's /metrics page from its counters and its HTTP server's.
std::string worker_metrics_text(const worker_stats& stats, const http_counters& http);

}  // namespace glam
