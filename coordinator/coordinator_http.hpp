#pragma once
// The coordinator's HTTP port (glam coordinator --http HOST:PORT): the dashboard page, its
// JSON endpoints, and /metrics for Prometheus. Every answer about the cluster comes from the
// coordinator actor by its status request, made by a short-lived actor per HTTP request, so
// no thread but the actor's own ever touches its state; a job's metrics lines are read from
// the job's metrics.jsonl, which the actor only appends to. docs/dashboard.md lists the
// endpoints, the metrics and how access works.
//
//   GET /                          the dashboard page (sets the access cookie when ?token= is right)
//   GET /dashboard.js              its script
//   GET /static/chart.min.js       Chart.js, from Debian's libjs-chart.js
//   GET /api/status                the cluster, as `glam status --json` prints it
//   GET /api/metrics?job=ID&from=B the job's metrics lines from byte offset B, at most 1 MiB
//   GET /metrics                   Prometheus text format 0.0.4
#include <cstdint>
#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <nlohmann/json.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/http_access.hpp"
#include "actors/http_server.hpp"

namespace glam {

// Where Debian's libjs-chart.js installs Chart.js.
inline constexpr const char* chart_js_path = "/usr/share/javascript/chart.js/chart.min.js";

struct coordinator_http_options {
  std::string host = "127.0.0.1";
  int port = 0;
  http_access access;
  std::string state_dir;  // the coordinator's --state: jobs' metrics files are under it
  std::string chart_js = chart_js_path;
  std::chrono::milliseconds request_timeout{5000};  // for the coordinator's answer
};

class coordinator_http {
 public:
  // Binds and serves at once; throws std::runtime_error naming the address when it cannot.
  coordinator_http(caf::actor_system& sys, coordinator_actor coordinator, coordinator_http_options options);
  ~coordinator_http();
  coordinator_http(const coordinator_http&) = delete;
  coordinator_http& operator=(const coordinator_http&) = delete;

  int port() const { return server_->port(); }
  std::string host() const { return server_->host(); }
  http_counters counters() const { return server_->counters(); }
  void stop() { server_->stop(); }

 private:
  struct shared;
  std::shared_ptr<shared> shared_;
  std::unique_ptr<http_server> server_;
};

// The coordinator's /metrics page from its status (status_json) and its HTTP counters.
std::string coordinator_metrics_text(const nlohmann::json& status, const http_counters& http,
                                     std::int64_t resident_bytes);

// A job's metrics lines from byte offset `from` of its metrics file, at most max_bytes of
// whole lines: {"job", "from", "next", "size", "reset", "more", "lines": [...]}. A `from`
// past the end (the file was cut when the job rolled back to a checkpoint) reads from 0
// with "reset": true. Lines that do not parse (one being written) are left for the next read.
nlohmann::json read_metrics_lines(const std::string& path, const std::string& job, std::uint64_t from,
                                  std::size_t max_bytes = 1u << 20);

// A job id as the coordinator makes them (<name>-<n>): safe as one path segment.
bool valid_job_id(const std::string& id);

}  // namespace glam
