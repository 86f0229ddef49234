#include "coordinator/coordinator_http.hpp"

#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <caf/all.hpp>
#include <cstdio>
#include <fstream>
#include <functional>
#include <optional>
#include <sstream>
#include <utility>

#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "actors/prometheus.hpp"
#include "coordinator/dashboard_assets.hpp"

namespace glam {

namespace {

http_response text_response(int status, std::string body, std::string content_type = "text/plain; charset=utf-8") {
  http_response r;
  r.status = status;
  r.content_type = std::move(content_type);
  r.body = std::move(body);
  return r;
}

http_response json_response(const nlohmann::json& body, int status = 200) {
  return text_response(status, body.dump(), json_content_type);
}

http_response json_error(int status, const std::string& message) { return json_response({{"error", message}}, status); }

std::int64_t int_of(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<std::int64_t>() : 0;
}

double number_of(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_number() ? it->get<double>() : 0.0;
}

std::string string_of(const nlohmann::json& o, const char* key) {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Counts by reason ({"stale": 3, ...}) as samples of one counter family.
void reasons(prometheus_writer& w, const std::string& name, const std::string& help, const nlohmann::json& counts,
             metric_labels labels) {
  if (!counts.is_object()) return;
  for (const auto& [reason, n] : counts.items()) {
    auto l = labels;
    l.emplace_back("reason", reason);
    w.counter(name, help, n.is_number() ? n.get<double>() : 0.0, l);
  }
}

}  // namespace

bool valid_job_id(const std::string& id) {
  if (id.empty() || id.size() > 128 || id == "." || id == "..") return false;
  for (char c : id)
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
  return true;
}

std::string coordinator_metrics_text(const nlohmann::json& status, const http_counters& http,
                                     std::int64_t resident_bytes) {
  prometheus_writer w;
  const auto& c = status.value("coordinator", nlohmann::json::object());
  const auto& workers = status.value("workers", nlohmann::json::array());
  const auto& jobs = status.value("jobs", nlohmann::json::array());
  w.gauge("glam_epoch", "The coordinator's epoch: bumped by every placement (start, recovery, join, drain).",
          double(int_of(c, "epoch")));
  w.gauge("glam_workers", "Workers registered and alive.", double(workers.size()));
  w.gauge("glam_coordinator_resident_bytes", "Resident memory of the coordinator process.", double(resident_bytes));
  w.counter("glam_coordinator_bytes_received_total", "Bytes the coordinator received (all through its relay).",
            double(int_of(c, "bytes_received")));
  w.counter("glam_coordinator_bytes_sent_total", "Bytes the coordinator sent (all through its relay).",
            double(int_of(c, "bytes_sent")));
  if (auto it = c.find("connections"); it != c.end() && it->is_object())
    for (const auto& [kind, n] : it->items())
      w.counter("glam_coordinator_connections_total", "Connections to the coordinator's relay, by how far they got.",
                n.is_number() ? n.get<double>() : 0.0, {{"kind", kind}});
  reasons(w, "glam_coordinator_refused_messages_total", "Messages the coordinator dropped, by reason.",
          c.value("refused", nlohmann::json::object()), {});
  reasons(w, "glam_coordinator_relay_refused_total", "Connections the coordinator's relay refused, by reason.",
          c.value("relay_refused", nlohmann::json::object()), {});

  for (const auto& wk : workers) {
    const metric_labels l{{"worker", string_of(wk, "name")}};
    w.gauge("glam_worker_units", "Units the worker hosts.", double(wk.value("units", nlohmann::json::array()).size()),
            l);
    w.gauge("glam_worker_last_heartbeat_seconds", "Seconds since the coordinator last heard from the worker.",
            double(int_of(wk, "last_heard_ms")) / 1000.0, l);
    w.counter("glam_worker_tokens_computed_total", "Tokens the worker's units computed.",
              double(int_of(wk, "tokens_computed")), l);
    w.counter("glam_worker_bytes_sent_total", "Tensor bytes the worker sent to other workers.",
              double(int_of(wk, "bytes_sent")), l);
    w.counter("glam_worker_bytes_received_total", "Tensor bytes the worker received from other workers.",
              double(int_of(wk, "bytes_received")), l);
    w.gauge("glam_worker_resident_bytes", "Resident memory of the worker process.", double(int_of(wk, "memory_bytes")),
            l);
    w.gauge("glam_worker_memory_limit_bytes", "Memory the worker offers for units and their snapshots.",
            double(int_of(wk, "memory_limit")), l);
    w.gauge("glam_worker_gflops", "The worker's measured sgemm speed (GFLOP/s).", number_of(wk, "gflops"), l);
    if (wk.contains("busy_seconds_per_step") && wk["busy_seconds_per_step"].is_number())
      w.gauge("glam_worker_busy_seconds_per_step",
              "Seconds the worker's units computed per step, over the placement's measuring window.",
              number_of(wk, "busy_seconds_per_step"), l);
    reasons(w, "glam_worker_refused_messages_total", "Messages the worker dropped, by reason.",
            wk.value("refused", nlohmann::json::object()), l);
    reasons(w, "glam_worker_relay_refused_total", "Connections the worker's relay refused, by reason.",
            wk.value("relay_refused", nlohmann::json::object()), l);
  }

  for (const auto& j : jobs) {
    const std::string id = string_of(j, "id");
    const metric_labels l{{"job", id}};
    const auto p = j.value("progress", nlohmann::json::object());
    for (const char* state : {"pending", "running", "finished", "failed", "stopped"})
      w.gauge("glam_job_state", "1 for the job's state, 0 for the others.", string_of(j, "state") == state ? 1.0 : 0.0,
              {{"job", id}, {"state", state}});
    w.gauge("glam_job_step", "The job's last committed step.", double(int_of(j, "step")), l);
    w.gauge("glam_job_steps", "The steps the job trains for.", double(int_of(j, "steps")), l);
    if (j.contains("epoch")) w.gauge("glam_job_epoch", "The running job's epoch.", double(int_of(j, "epoch")), l);
    w.counter("glam_job_steps_committed_total", "Steps committed since the coordinator started, replays included.",
              double(int_of(p, "steps_committed")), l);
    w.counter("glam_job_tokens_total", "Training tokens of the committed steps.", double(int_of(p, "tokens")), l);
    w.counter("glam_job_skipped_steps_total", "Steps skipped because gradients were not finite.",
              double(int_of(p, "skipped_steps")), l);
    w.counter("glam_job_dropped_choices_total", "Expert choices dropped over an expert's capacity.",
              double(int_of(p, "dropped_choices")), l);
    const auto events = p.value("events", nlohmann::json::object());
    for (const char* event : {"recovery", "join", "drain", "rebalance"})
      w.counter("glam_job_events_total",
                "Recoveries and migrations of the job (a join, a drain, or a rebalance from the measured load).",
                double(int_of(events, event)), {{"job", id}, {"event", event}});
    w.gauge("glam_job_loss", "Loss of the last committed step.", number_of(j, "loss"), l);
    if (p.contains("val_loss"))
      w.gauge("glam_job_validation_loss", "The newest validation loss.", number_of(p, "val_loss"), l);
    w.gauge("glam_job_tokens_per_second", "Training tokens per second of the last committed step.",
            number_of(j, "tokens_per_s"), l);
    if (p.contains("mfu"))
      w.gauge("glam_job_mfu", "Model FLOPs utilisation of the last step, against the measured sgemm rate.",
              number_of(p, "mfu"), l);
    if (j.contains("balancedness") && j["balancedness"].is_number())
      w.gauge("glam_job_balancedness",
              "The running placement's balancedness: the workers' mean busy time over the busiest's.",
              number_of(j, "balancedness"), l);
    if (auto it = j.find("experts"); it != j.end() && it->is_array())
      for (const auto& e : *it)
        w.gauge("glam_expert_load_share", "Share of the routed tokens each expert received over the measuring window.",
                number_of(e, "load_share"),
                {{"job", id}, {"expert", std::to_string(int_of(e, "expert"))}, {"worker", string_of(e, "worker")}});
    if (p.contains("exchange_share"))
      w.gauge("glam_job_exchange_share", "Share of the last step spent outside the busiest worker's kernels.",
              number_of(p, "exchange_share"), l);
  }
  write_http_metrics(w, http);
  return w.text();
}

nlohmann::json read_metrics_lines(const std::string& path, const std::string& job, std::uint64_t from,
                                  std::size_t max_bytes) {
  nlohmann::json out{{"job", job}, {"from", from}, {"reset", false}, {"lines", nlohmann::json::array()}};
  std::ifstream in(path, std::ios::binary);
  std::uint64_t size = 0;
  if (in) {
    in.seekg(0, std::ios::end);
    size = static_cast<std::uint64_t>(std::max<std::streamoff>(0, in.tellg()));
  }
  if (from > size) {
    from = 0;
    out["reset"] = true;
    out["from"] = 0;
  }
  std::string chunk(static_cast<std::size_t>(std::min<std::uint64_t>(size - from, max_bytes)), '\0');
  if (!chunk.empty()) {
    in.seekg(static_cast<std::streamoff>(from));
    in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
    chunk.resize(static_cast<std::size_t>(std::max<std::streamsize>(0, in.gcount())));
  }
  // Whole lines only: the last one may still be being written.
  std::size_t used = chunk.rfind('\n');
  used = used == std::string::npos ? 0 : used + 1;
  if (used == 0 && chunk.size() == max_bytes) used = chunk.size();  // one line over the limit: skipped
  std::size_t at = 0;
  while (at < used) {
    std::size_t end = chunk.find('\n', at);
    if (end == std::string::npos || end > used) end = used;
    auto line = nlohmann::json::parse(chunk.begin() + static_cast<std::ptrdiff_t>(at),
                                      chunk.begin() + static_cast<std::ptrdiff_t>(end), nullptr, false);
    if (!line.is_discarded() && line.is_object()) out["lines"].push_back(std::move(line));
    at = end + 1;
  }
  out["next"] = from + used;
  out["size"] = size;
  // More whole lines wait only when the limit cut this read short (a line still being
  // written at the end is no reason to ask again at once).
  out["more"] = used > 0 && size - from > max_bytes;
  return out;
}

// What the handlers share with the server threads: read-only after construction.
struct coordinator_http::shared {
  caf::actor_system* sys = nullptr;
  coordinator_actor coordinator;
  coordinator_http_options options;

  // Asks the coordinator for its status (from a short-lived actor, so that no server thread
  // waits) and calls done with it, or with nullopt and the reason.
  void with_status(std::function<void(std::optional<std::string>, std::string)> done) const {
    auto target = coordinator;
    auto timeout = options.request_timeout;
    sys->spawn([target, timeout, done](caf::event_based_actor* self) {
      self->request(target, timeout, status_atom::value)
          .then(
              [self, done](const std::string& s) {
                done(s, {});
                self->quit();
              },
              [self, done](const caf::error& e) {
                done(std::nullopt, error_text(e));
                self->quit();
              });
    });
  }
};

coordinator_http::coordinator_http(caf::actor_system& sys, coordinator_actor coordinator,
                                   coordinator_http_options options)
    : shared_(std::make_shared<shared>()) {
  shared_->sys = &sys;
  shared_->coordinator = std::move(coordinator);
  shared_->options = std::move(options);
  const auto& o = shared_->options;
  http_server_options so;
  so.host = o.host;
  so.port = o.port;
  server_ = std::make_unique<http_server>(so);
  http_server* server = server_.get();
  // Handlers hold the shared part weakly: a request that outlives this object gets 503.
  std::weak_ptr<shared> weak = shared_;
  const http_access access = o.access;

  auto page = [access](const http_request& rq, http_responder r) {
    auto p = text_response(200, dashboard_html, "text/html; charset=utf-8");
    p.headers.emplace_back("Cache-Control", "no-cache");
    // The page may load nothing but what this server serves.
    p.headers.emplace_back("Content-Security-Policy",
                           "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'");
    if (access.needs_token && access.sent_token_in_query(rq))
      p.headers.emplace_back("Set-Cookie", access.set_cookie_header());
    r.respond(std::move(p));
  };
  auto script = [](const http_request&, http_responder r) {
    auto js = text_response(200, dashboard_js, "text/javascript; charset=utf-8");
    js.headers.emplace_back("Cache-Control", "no-cache");
    r.respond(std::move(js));
  };
  auto chart_js = [weak](const http_request&, http_responder r) {
    auto s = weak.lock();
    std::ifstream in(s ? s->options.chart_js : std::string(), std::ios::binary);
    if (!s || !in) {
      r.respond(text_response(404, "Chart.js is not installed (" + std::string(chart_js_path) +
                                       "): install Debian's libjs-chart.js (scripts/install-deps.sh)\n"));
      return;
    }
    std::stringstream text;
    text << in.rdbuf();
    auto js = text_response(200, text.str(), "text/javascript; charset=utf-8");
    js.headers.emplace_back("X-Content-Type-Options", "nosniff");
    r.respond(std::move(js));
  };
  auto status = [weak](const http_request&, http_responder r) {
    auto s = weak.lock();
    if (!s) {
      r.respond(json_error(503, "stopping"));
      return;
    }
    s->with_status([r](std::optional<std::string> text, std::string why) {
      if (!text)
        r.respond(json_error(503, "the coordinator did not answer: " + why));
      else
        r.respond(text_response(200, std::move(*text), json_content_type));
    });
  };
  auto metrics_lines = [weak](const http_request& rq, http_responder r) {
    auto s = weak.lock();
    auto job = rq.query_parameter("job");
    if (!s || !job || !valid_job_id(*job)) {
      r.respond(json_error(400, "give ?job=ID with a job id as glam status shows it"));
      return;
    }
    std::uint64_t from = 0;
    if (auto f = rq.query_parameter("from")) {
      std::size_t used = 0;
      try {
        from = std::stoull(*f, &used);
      } catch (const std::exception&) {
        used = 0;
      }
      if (used == 0 || used != f->size() || (*f)[0] == '-') {
        r.respond(json_error(400, "?from= must be a byte offset (the 'next' of the previous answer)"));
        return;
      }
    }
    const std::string dir = s->options.state_dir + "/jobs/" + *job;
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
      r.respond(json_error(404, "no job '" + *job + "' on this coordinator"));
      return;
    }
    r.respond(json_response(read_metrics_lines(dir + "/metrics.jsonl", *job, from)));
  };
  auto prometheus = [weak, server](const http_request&, http_responder r) {
    auto s = weak.lock();
    if (!s) {
      r.respond(text_response(503, "stopping\n"));
      return;
    }
    // Read here, on a server thread, while the server certainly lives.
    const http_counters http = server->counters();
    s->with_status([r, http](std::optional<std::string> text, std::string why) {
      auto parsed = text ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
      if (!text || !parsed.is_object())
        r.respond(text_response(503, "the coordinator did not answer: " + (text ? "not JSON" : why) + "\n"));
      else
        r.respond(
            text_response(200, coordinator_metrics_text(parsed, http, resident_bytes()), prometheus_content_type));
    });
  };
  server_->add_route("GET", "/", guarded(access, page));
  server_->add_route("GET", "/dashboard.js", guarded(access, script));
  server_->add_route("GET", "/static/chart.min.js", guarded(access, chart_js));
  server_->add_route("GET", "/api/status", guarded(access, status));
  server_->add_route("GET", "/api/metrics", guarded(access, metrics_lines));
  server_->add_route("GET", "/metrics", guarded(access, prometheus));
  server_->start();
}

coordinator_http::~coordinator_http() {
  if (server_) server_->stop();
}

}  // namespace glam
