#include "serve/completions_server.hpp"

#include <chrono>
#include <random>
#include <utility>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/http_access.hpp"
#include "actors/prometheus.hpp"

namespace glam {

namespace {

std::int64_t unix_seconds() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

http_response json_response(std::string body, int status = 200) {
  http_response r;
  r.status = status;
  r.content_type = json_content_type;
  r.body = std::move(body);
  return r;
}

http_server_options http_options_for(const serve_options& o) {
  http_server_options h = o.http;
  // Every admitted request may hold a connection (a stream), and /health, /metrics and the
  // requests refused with 429 need a few more.
  h.limits.max_connections = std::max<int>(h.limits.max_connections, int(o.scheduler.max_admitted) + 16);
  return h;
}

}  // namespace

// One POST /v1/completions: its choices' text as it grows, and how it answers. Token and
// finish callbacks come from the scheduler thread, start() from an HTTP thread; `mutex`
// orders them (a stream's first events may be chosen before start() has sent the headers).
struct completions_server::call {
  struct choice {
    choice(const tokenizer& t, std::vector<std::string> stops) : text(t), stop(std::move(stops)) {}
    text_stream text;
    stop_matcher stop;
    std::string whole;  // the text given out
    index prompt_tokens = 0, completion_tokens = 0;
    std::string finish_reason;
    bool done = false;
  };

  call(completions_server& s, http_responder r, completion_request rq)
      : server(s), responder(std::move(r)), request(std::move(rq)), id(new_completion_id()), created(unix_seconds()) {}

  completions_server& server;
  http_responder responder;
  completion_request request;
  std::string id;
  std::int64_t created;

  std::mutex mutex;
  std::vector<choice> choices;
  std::vector<sequence_ticket> tickets;
  std::vector<std::string> pending;  // stream events chosen before start()
  bool started = false;
  bool answered = false;  // every choice is done, or one failed
  bool failed = false;    // failed before the stream began: answered with a 500
  index done = 0;

  // Under mutex.
  void send(std::string event) {
    if (!started)
      pending.push_back(std::move(event));
    else
      responder.send_event(event);
  }

  void start() {
    std::lock_guard<std::mutex> lock(mutex);
    started = true;
    if (!request.stream || failed) return;  // answered in full by complete() or fail()
    responder.begin_stream(200, event_stream_content_type);
    for (auto& e : pending) responder.send_event(e);
    pending.clear();
    if (answered) responder.end_stream();
  }

  token_verdict token(index i, std::int32_t t) {
    std::lock_guard<std::mutex> lock(mutex);
    choice& c = choices[std::size_t(i)];
    ++c.completion_tokens;
    const std::string out = c.stop.push(c.text.push(t));
    c.whole += out;
    // One event per token (its text may be empty while a character or a possible stop
    // string is held back): a client counts tokens by events.
    if (request.stream && !answered)
      send(completion_json(id, created, server.limits_.model, {{out, i, ""}}, std::nullopt));
    return c.stop.matched() ? token_verdict::stop : token_verdict::go_on;
  }

  void finished(index i, const sequence_outcome& o) {
    std::vector<sequence_ticket> cancel;
    {
      std::lock_guard<std::mutex> lock(mutex);
      if (answered) return;
      choice& c = choices[std::size_t(i)];
      if (!o.error.empty()) {
        fail(o.error);
        cancel = tickets;
      } else {
        std::string rest;
        if (!c.stop.matched()) rest = c.stop.push(c.text.finish());
        if (!c.stop.matched()) rest += c.stop.finish();
        c.whole += rest;
        c.done = true;
        c.finish_reason = to_string(o.reason);
        c.completion_tokens = static_cast<index>(o.tokens.size());
        server.count_finish(c.finish_reason);
        if (request.stream) send(completion_json(id, created, server.limits_.model, {{rest, i, c.finish_reason}}, std::nullopt));
        if (++done == static_cast<index>(choices.size())) complete();
      }
    }
    for (auto t : cancel) server.scheduler_->cancel(t);
  }

  // Under mutex: every choice is done.
  void complete() {
    answered = true;
    completion_usage usage;
    for (const auto& c : choices) {
      usage.prompt_tokens += c.prompt_tokens;
      usage.completion_tokens += c.completion_tokens;
    }
    if (request.stream) {
      if (request.include_usage) send(completion_json(id, created, server.limits_.model, {}, usage));
      send("[DONE]");
      if (started) responder.end_stream();
      server.count_response(200);
      return;
    }
    std::vector<completion_choice> out;
    for (std::size_t i = 0; i < choices.size(); ++i)
      out.push_back({choices[i].whole, static_cast<index>(i), choices[i].finish_reason});
    server.count_response(200);
    responder.respond(json_response(completion_json(id, created, server.limits_.model, out, usage)));
  }

  // Under mutex: a sequence failed; the request ends with the error.
  void fail(const std::string& error) {
    answered = true;
    server.count_response(500);
    if (request.stream && started) {
      // The stream's 200 is sent already: the error goes as its last event.
      send(openai_error_body(error, "server_error"));
      responder.end_stream();
      return;
    }
    failed = true;
    responder.respond(openai_error(500, error, "server_error"));
  }
};

completions_server::completions_server(inference_backend& backend, const tokenizer& tok, serve_options options)
    : backend_(backend),
      tokenizer_(tok),
      options_(std::move(options)),
      created_(unix_seconds()),
      http_(http_options_for(options_)) {
  const model_config& m = backend_.cfg().model;
  limits_.model = options_.model_name.empty() ? backend_.cfg().name : options_.model_name;
  if (limits_.model.empty()) limits_.model = "glam";
  limits_.max_tokens = options_.max_tokens_limit > 0 ? options_.max_tokens_limit : m.seq_len;
  limits_.max_prompts = options_.scheduler.max_admitted;
  scheduler_ = std::make_unique<batch_scheduler>(backend_, options_.scheduler);

  // /v1/* need the key when one is set; /health and /metrics are public (docs/http.md).
  auto guarded = [this](http_handler h) {
    return options_.api_key.empty() ? std::move(h) : require_bearer_token(options_.api_key, std::move(h));
  };
  http_.add_route("POST", "/v1/completions",
                  guarded([this](const http_request& rq, http_responder r) { handle_completion(rq, std::move(r)); }));
  http_.add_route("GET", "/v1/models", guarded([this](const http_request&, http_responder r) {
                    r.respond(json_response(model_list_json(limits_.model, created_)));
                  }));
  http_.add_route("GET", "/v1/models/" + limits_.model, guarded([this](const http_request&, http_responder r) {
                    r.respond(json_response(model_json(limits_.model, created_)));
                  }));
  http_.add_route("GET", "/health", [this](const http_request&, http_responder r) {
    const scheduler_stats s = scheduler_->stats();
    nlohmann::json j = {{"status", "ok"},
                        {"model", limits_.model},
                        {"backend", backend_.describe()},
                        {"running", s.running},
                        {"waiting", s.waiting},
                        {"free_slots", scheduler_->options().max_admitted - s.admitted_now}};
    r.respond(json_response(j.dump() + "\n"));
  });
  http_.add_route("GET", "/metrics", [this](const http_request&, http_responder r) {
    http_response m;
    m.content_type = prometheus_content_type;
    m.body = metrics_text();
    r.respond(std::move(m));
  });
}

completions_server::~completions_server() { stop(); }

void completions_server::start() { http_.start(); }

void completions_server::stop() {
  http_.stop();
  if (scheduler_) scheduler_->stop();
}

void completions_server::count_response(int status) {
  std::lock_guard<std::mutex> lock(counts_mutex_);
  ++responses_by_status_[status];
}

void completions_server::count_finish(const std::string& reason) {
  std::lock_guard<std::mutex> lock(counts_mutex_);
  ++choices_by_finish_[reason];
}

void completions_server::handle_completion(const http_request& rq, http_responder r) {
  auto refuse = [&](const api_error& e) {
    count_response(e.status);
    r.respond(openai_error(e.status, e.message, e.status >= 500 ? "server_error" : "invalid_request_error",
                           e.param.empty() ? std::nullopt : std::optional<std::string>(e.param),
                           e.code.empty() ? std::nullopt : std::optional<std::string>(e.code)));
  };
  auto parsed = parse_completion_request(rq.body, limits_);
  if (auto* e = std::get_if<api_error>(&parsed)) return refuse(*e);
  completion_request request = std::move(std::get<completion_request>(parsed));

  const model_config& m = backend_.cfg().model;
  generation_options g;
  g.max_tokens = request.max_tokens;
  g.sampling.temperature = request.temperature;
  g.sampling.top_p = request.top_p;
  g.sampling.seed = request.seed ? *request.seed : std::random_device{}();
  g.stop_token = tokenizer_.eos_id();

  auto c = std::make_shared<call>(*this, r, request);
  std::vector<sequence_job> jobs;
  for (std::size_t i = 0; i < request.prompts.size(); ++i) {
    std::vector<std::int32_t> tokens = tokenizer_.encode(request.prompts[i]);
    const std::string which = request.prompts.size() > 1 ? "prompt " + std::to_string(i) : "the prompt";
    if (tokens.empty()) return refuse({400, which + " is empty; give at least one character of text to continue", "prompt", "invalid_value"});
    if (static_cast<index>(tokens.size()) > m.seq_len)
      return refuse({400,
                     which + " is " + std::to_string(tokens.size()) + " tokens, longer than the model's seq_len = " +
                         std::to_string(m.seq_len) + "; shorten it to at most " + std::to_string(m.seq_len) + " tokens",
                     "prompt", "context_length_exceeded"});
    c->choices.emplace_back(tokenizer_, request.stop);
    c->choices.back().prompt_tokens = static_cast<index>(tokens.size());
    sequence_job job;
    job.prompt = std::move(tokens);
    job.options = g;
    const index at = static_cast<index>(i);
    job.on_token = [c, at](std::int32_t t) { return c->token(at, t); };
    job.on_finish = [c, at](const sequence_outcome& o) { c->finished(at, o); };
    jobs.push_back(std::move(job));
  }

  std::optional<std::vector<sequence_ticket>> tickets;
  try {
    tickets = scheduler_->admit(std::move(jobs));
  } catch (const inference_error& e) {
    return refuse({400, e.what(), "prompt", "invalid_value"});
  }
  if (!tickets) {
    count_response(429);
    http_response busy = openai_error(429,
                                      "the server is busy: " + std::to_string(scheduler_->options().max_admitted) +
                                          " sequences are admitted already; retry after a second",
                                      "rate_limit_error", std::nullopt, std::string("rate_limit_exceeded"));
    busy.headers.emplace_back("Retry-After", "1");
    r.respond(std::move(busy));
    return;
  }
  {
    std::lock_guard<std::mutex> lock(c->mutex);
    c->tickets = *tickets;
  }
  // A client that leaves frees its slots at once (runs now if it has gone already).
  batch_scheduler* scheduler = scheduler_.get();
  r.on_disconnect([scheduler, t = *tickets] {
    for (auto ticket : t) scheduler->cancel(ticket);
  });
  c->start();
}

std::string completions_server::metrics_text() const {
  const scheduler_stats s = scheduler_->stats();
  const http_counters h = http_.counters();
  prometheus_writer w;
  {
    std::lock_guard<std::mutex> lock(counts_mutex_);
    for (const auto& [status, n] : responses_by_status_)
      w.counter("glam_serve_requests_total", "Completion requests answered, by HTTP status.", double(n),
                {{"code", std::to_string(status)}});
    if (responses_by_status_.empty())
      w.counter("glam_serve_requests_total", "Completion requests answered, by HTTP status.", 0, {{"code", "200"}});
    for (const char* reason : {"stop", "length"}) {
      auto it = choices_by_finish_.find(reason);
      w.counter("glam_serve_completions_total", "Completions (choices) that finished, by finish_reason.",
                it == choices_by_finish_.end() ? 0.0 : double(it->second), {{"finish_reason", reason}});
    }
  }
  w.counter("glam_serve_sequences_admitted_total", "Sequences (prompts) admitted to the batch.", double(s.admitted));
  w.counter("glam_serve_sequences_refused_total", "Sequences refused for want of a free slot (429).", double(s.refused));
  w.counter("glam_serve_sequences_cancelled_total", "Sequences whose client went away before they finished.",
            double(s.cancelled));
  w.counter("glam_serve_sequences_failed_total", "Sequences whose inference failed.", double(s.failed));
  w.counter("glam_serve_sequences_replayed_total", "Sequences whose cache was rebuilt after the backend lost it.",
            double(s.replayed));
  w.counter("glam_serve_prompt_tokens_total", "Prompt tokens admitted.", double(s.prompt_tokens));
  w.counter("glam_serve_generated_tokens_total", "Tokens generated.", double(s.generated_tokens));
  w.counter("glam_serve_steps_total", "Passes run (one per decode step).", double(s.steps));
  w.gauge("glam_serve_sequences_running", "Sequences in the running batch.", double(s.running));
  w.gauge("glam_serve_sequences_waiting", "Sequences admitted and waiting for a place in the batch.", double(s.waiting));
  w.gauge("glam_serve_max_batch", "Sequences one pass may hold (--max-batch).", double(scheduler_->options().max_batch));
  w.gauge("glam_serve_max_concurrent", "Sequences that may be admitted at once (--max-concurrent).",
          double(scheduler_->options().max_admitted));
  w.histogram("glam_serve_time_to_first_token_seconds", "Seconds from admission to a sequence's first token.",
              s.time_to_first_token);
  w.histogram("glam_serve_inter_token_latency_seconds", "Seconds between two tokens of a sequence.", s.inter_token);
  w.histogram("glam_serve_batch_size", "Sequences in each pass.", s.batch_size);
  w.histogram("glam_serve_step_seconds", "Seconds of each pass.", s.step_seconds);
  write_http_metrics(w, h);
  return w.text();
}

}  // namespace glam
