#pragma once
// `glam serve`'s HTTP side: the OpenAI completions API, /v1/models, /health and /metrics on
// the shared HTTP server (actors/http_server.hpp), in front of a batch scheduler
// (serve/batch_scheduler.hpp) that drives any inference backend. Handlers only parse,
// tokenize and queue: the model runs on the scheduler's thread, and tokens go out from it
// as they are chosen. docs/serving.md describes the API, the limits and the metrics.
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "actors/http_server.hpp"
#include "data/tokenizer.hpp"
#include "serve/batch_scheduler.hpp"
#include "serve/completions_api.hpp"

namespace glam {

struct serve_options {
  http_server_options http;   // host (loopback by default) and port; limits
  std::string api_key;        // not empty: /v1/* need "Authorization: Bearer <key>"
  std::string model_name;     // the id clients send as `model`; empty: the config's name
  index max_tokens_limit = 0; // the largest max_tokens a request may ask; 0: the model's seq_len
  scheduler_options scheduler;
};

class completions_server {
 public:
  // The backend and the tokenizer must outlive the server; the tokenizer must belong to
  // the backend's model (the caller checks it: check_tokenizer). Starts the scheduler.
  completions_server(inference_backend& backend, const tokenizer& tok, serve_options options);
  ~completions_server();  // stop()
  completions_server(const completions_server&) = delete;
  completions_server& operator=(const completions_server&) = delete;

  // Listens (throws std::runtime_error naming the address when it cannot).
  void start();
  // Stops listening, disconnects every client (their sequences are cancelled), then stops
  // the scheduler. Idempotent.
  void stop();

  int port() const { return http_.port(); }
  std::string host() const { return http_.host(); }
  const std::string& model_name() const { return limits_.model; }
  const completion_limits& limits() const { return limits_; }
  batch_scheduler& scheduler() { return *scheduler_; }
  // The /metrics page.
  std::string metrics_text() const;

 private:
  struct call;
  void handle_completion(const http_request& request, http_responder responder);
  void count_response(int status);
  void count_finish(const std::string& reason);

  inference_backend& backend_;
  const tokenizer& tokenizer_;
  serve_options options_;
  completion_limits limits_;
  std::int64_t created_;  // when the server started (unix seconds): the model's `created`
  std::unique_ptr<batch_scheduler> scheduler_;
  http_server http_;

  mutable std::mutex counts_mutex_;
  std::map<int, std::int64_t> responses_by_status_;       // POST /v1/completions
  std::map<std::string, std::int64_t> choices_by_finish_;  // stop, length
};

}  // namespace glam
