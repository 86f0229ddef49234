// glam bench serve CONFIG_OR_CHECKPOINT: the completions server of `glam serve` (in this
// process, on 127.0.0.1) under real HTTP clients streaming completions at 1, 8 and 32
// concurrent streams (closed loop: each client sends its next request when the last one
// ends). For each: tokens/s, time to first token and inter-token latency (p50, p99), the
// batch the scheduler ran and its decode step. Baselines measured in the same run: the
// machine's memory read bandwidth (a stream read of a buffer far larger than the caches) and
// from it the time to read once the weights one token activates (the batch-1 bound);
// tokens/s at 1 stream for the batching gain.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/commands.hpp"
#include "data/tokenizer.hpp"
#include "kernels/parallel.hpp"
#include "model/generate.hpp"
#include "serve/completions_server.hpp"
#include "serve/reference_backend.hpp"

namespace glam::cli {
namespace {

using clock_type = std::chrono::steady_clock;

struct bench_serve_options {
  std::string path;
  std::string tokenizer;
  double seconds = 10;
  std::int64_t max_tokens = 64;
  std::vector<int> streams = {1, 8, 32};
  std::int64_t bandwidth_mib = 1024;
};

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// --- the machine's memory read bandwidth --------------------------------------------------

// Bytes per second of reading a buffer of `bytes` once with all compute threads, best of 5.
// XOR of 64-bit words: integer lanes the compiler vectorises, so the loop waits on memory,
// not on a chain of additions.
double measure_read_bandwidth(std::size_t bytes) {
  const std::size_t words = bytes / sizeof(std::uint64_t);
  std::vector<std::uint64_t> buffer(words);
  const index chunks = 256;
  const std::size_t per_chunk = (words + chunks - 1) / chunks;
  parallel_for(chunks, [&](index c) {  // touch every page (first use faults them in)
    const std::size_t begin = std::size_t(c) * per_chunk, end = std::min(words, begin + per_chunk);
    for (std::size_t i = begin; i < end; ++i) buffer[i] = i * 0x9E3779B97F4A7C15ull;
  });
  std::vector<std::uint64_t> partial(chunks);
  double best = 1e30;
  for (int rep = 0; rep < 5; ++rep) {
    const auto start = clock_type::now();
    parallel_for(chunks, [&](index c) {
      const std::size_t begin = std::size_t(c) * per_chunk, end = std::min(words, begin + per_chunk);
      std::uint64_t lanes[8] = {};
      std::size_t i = begin;
      for (; i + 8 <= end; i += 8)
        for (int l = 0; l < 8; ++l) lanes[l] ^= buffer[i + std::size_t(l)];
      for (; i < end; ++i) lanes[0] ^= buffer[i];
      std::uint64_t x = 0;
      for (auto v : lanes) x ^= v;
      partial[std::size_t(c)] = x;
    });
    best = std::min(best, seconds_between(start, clock_type::now()));
  }
  volatile std::uint64_t sink = 0;
  for (auto v : partial) sink = sink ^ v;
  (void)sink;
  return double(words * sizeof(std::uint64_t)) / best;
}

std::size_t param_bytes(const param_set& p) { return std::size_t(p.elements()) * sizeof(float); }

// --- an HTTP client that streams one completion -------------------------------------------

struct stream_timing {
  bool ok = false;
  std::string error;
  clock_type::time_point sent;
  std::vector<clock_type::time_point> tokens;  // arrival of each token's event
};

class sse_client {
 public:
  explicit sse_client(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    connected_ = fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~sse_client() {
    if (fd_ >= 0) ::close(fd_);
  }

  stream_timing run(const std::string& body, clock_type::time_point deadline) {
    stream_timing t;
    if (!connected_) return fail(t, "cannot connect");
    const std::string request = "POST /v1/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
                                "Connection: close\r\nContent-Length: " +
                                std::to_string(body.size()) + "\r\n\r\n" + body;
    t.sent = clock_type::now();
    if (::send(fd_, request.data(), request.size(), MSG_NOSIGNAL) != ssize_t(request.size())) return fail(t, "send");
    // Head.
    std::size_t head_end;
    while ((head_end = raw_.find("\r\n\r\n")) == std::string::npos)
      if (!fill(deadline)) return fail(t, "no response head");
    if (raw_.compare(0, 12, "HTTP/1.1 200") != 0) return fail(t, raw_.substr(0, raw_.find("\r\n")));
    raw_.erase(0, head_end + 4);
    // Chunked body of server-sent events.
    std::string events;
    for (;;) {
      std::size_t line_end;
      while ((line_end = raw_.find("\r\n")) == std::string::npos)
        if (!fill(deadline)) return fail(t, "stream cut");
      const std::size_t size = std::stoul(raw_.substr(0, line_end), nullptr, 16);
      while (raw_.size() < line_end + 2 + size + 2)
        if (!fill(deadline)) return fail(t, "stream cut");
      if (size == 0) break;
      events.append(raw_, line_end + 2, size);
      raw_.erase(0, line_end + 2 + size + 2);
      const auto now = clock_type::now();
      std::size_t end;
      while ((end = events.find("\n\n")) != std::string::npos) {
        const std::string event = events.substr(0, end);
        events.erase(0, end + 2);
        if (event == "data: [DONE]") {
          t.ok = true;
          return t;
        }
        if (event.find("\"error\"") != std::string::npos) return fail(t, event);
        if (event.find("\"finish_reason\":null") != std::string::npos) t.tokens.push_back(now);
      }
    }
    return fail(t, "stream ended without [DONE]");
  }

 private:
  stream_timing& fail(stream_timing& t, const std::string& why) {
    t.ok = false;
    t.error = why;
    return t;
  }
  bool fill(clock_type::time_point deadline) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock_type::now()).count();
    if (left <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, int(left)) <= 0) return false;
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) return false;
    raw_.append(buf, std::size_t(n));
    return true;
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string raw_;
};

// --- one load level --------------------------------------------------------------------------

struct level_result {
  int streams = 0;
  std::int64_t requests = 0, failures = 0, tokens = 0;
  double seconds = 0;
  std::vector<double> ttft, inter_token;
  double mean_batch = 0, decode_step = 0;
  std::int64_t decode_steps = 0;
  std::string first_error;
  std::string load_before, load_after;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  const std::size_t k = std::size_t(std::ceil(p * double(v.size())));
  return v[std::min(v.size() - 1, k == 0 ? 0 : k - 1)];
}

const char* const prompts[] = {
    "The meaning of life is",  "Q: Why did the chicken cross the road?\nA:", "A computer is",
    "Once upon a time",        "The best way to learn a language is",        "It was a dark and stormy night;",
    "Never trust a man who",   "In the beginning",
};

level_result run_level(completions_server& server, int streams, double seconds, std::int64_t max_tokens) {
  level_result r;
  r.streams = streams;
  const scheduler_stats before = server.scheduler().stats();
  r.load_before = load_average();
  std::mutex m;
  const auto start = clock_type::now();
  const auto stop_sending = start + std::chrono::duration<double>(seconds);
  std::vector<std::thread> clients;
  for (int c = 0; c < streams; ++c)
    clients.emplace_back([&, c] {
      for (std::int64_t k = 0; clock_type::now() < stop_sending; ++k) {
        nlohmann::json body = {{"model", server.model_name()},
                               {"prompt", prompts[std::size_t(c + k) % std::size(prompts)]},
                               {"max_tokens", max_tokens},
                               {"temperature", 1.0},
                               {"seed", std::uint64_t(c) * 1000003u + std::uint64_t(k)},
                               {"stream", true}};
        sse_client client(server.port());
        const stream_timing t = client.run(body.dump(), clock_type::now() + std::chrono::seconds(120));
        std::lock_guard<std::mutex> lock(m);
        ++r.requests;
        if (!t.ok) {
          ++r.failures;
          if (r.first_error.empty()) r.first_error = t.error;
          continue;
        }
        r.tokens += std::int64_t(t.tokens.size());
        if (!t.tokens.empty()) r.ttft.push_back(seconds_between(t.sent, t.tokens.front()));
        for (std::size_t i = 1; i < t.tokens.size(); ++i) r.inter_token.push_back(seconds_between(t.tokens[i - 1], t.tokens[i]));
      }
    });
  for (auto& t : clients) t.join();
  r.seconds = seconds_between(start, clock_type::now());
  r.load_after = load_average();
  const scheduler_stats after = server.scheduler().stats();
  const double batch_rows = after.batch_size.sum - before.batch_size.sum;
  const double steps = double(after.batch_size.count() - before.batch_size.count());
  r.mean_batch = steps > 0 ? batch_rows / steps : 0;
  r.decode_steps = after.decode_steps - before.decode_steps;
  r.decode_step = r.decode_steps > 0 ? (after.decode_step_seconds - before.decode_step_seconds) / double(r.decode_steps) : NAN;
  return r;
}

int run_bench_serve(const bench_serve_options& o) {
  namespace fs = std::filesystem;
  // The model: a checkpoint's weights, or a config's initial weights (the time of a step
  // does not depend on the values).
  inference_checkpoint ck;
  std::unique_ptr<reference_backend> backend;
  std::string source;
  if (fs::is_directory(o.path)) {
    ck = find_checkpoint(o.path);
    backend = reference_backend::from_checkpoint(ck);
    source = "checkpoint " + checkpoint_dir_for(ck.root, ck.manifest.step);
  } else {
    ck.cfg = load_config(o.path);
    std::vector<param_set> experts;
    for (index e = 0; e < ck.cfg.model.experts; ++e) experts.push_back(init_expert_params(ck.cfg.model, e, ck.cfg.train.seed));
    backend = std::make_unique<reference_backend>(
        reference_inference(ck.cfg, init_dense_params(ck.cfg.model, ck.cfg.train.seed), std::move(experts)));
    source = "initial weights of " + o.path;
  }
  const std::string tokenizer_path = find_tokenizer_path(ck, o.tokenizer);
  const tokenizer tok = tokenizer::load(tokenizer_path);
  check_tokenizer(ck, tokenizer_path, tok.vocab_size());
  const model_config& m = ck.cfg.model;

  std::printf("glam bench serve: %s (%s), tokenizer %s; %d compute threads; HTTP clients in this process\n",
              ck.cfg.name.c_str(), source.c_str(), tokenizer_path.c_str(), compute_threads());

  // Baseline: the memory read bandwidth, and the batch-1 bound from it.
  std::string load_before = load_average();
  const double bandwidth = measure_read_bandwidth(std::size_t(o.bandwidth_mib) << 20);
  std::printf("memory read bandwidth: %.2f GB/s (a %lld MiB buffer read once, all compute threads, best of 5)  [%s -> "
              "%s]\n",
              bandwidth / 1e9, (long long)o.bandwidth_mib, load_before.c_str(), load_average().c_str());
  const std::size_t dense_bytes = param_bytes(backend->model().shard().params());
  const index activated_experts = std::min<index>(2, index(backend->model().experts().size()));
  std::size_t expert_bytes = 0;
  for (index e = 0; e < activated_experts; ++e) expert_bytes += param_bytes(backend->model().experts()[std::size_t(e)].params());
  const double bound = double(dense_bytes + expert_bytes) / bandwidth;
  std::printf("weights one token activates: %.1f MB (the dense replica %.1f MB, whose tied embedding the logits read "
              "in full; %lld experts of every MoE layer %.1f MB): %.3f ms at that bandwidth, the batch-1 bound\n",
              double(dense_bytes + expert_bytes) / 1e6, double(dense_bytes) / 1e6, (long long)activated_experts,
              double(expert_bytes) / 1e6, bound * 1e3);

  serve_options so;
  so.scheduler.max_batch = 32;
  so.scheduler.max_admitted = 64;
  completions_server server(*backend, tok, so);
  server.start();
  // Prompts are a few tokens; a completion holds at most seq_len tokens.
  index longest_prompt = 0;
  for (const char* p : prompts) longest_prompt = std::max<index>(longest_prompt, index(tok.encode(p).size()));
  const std::int64_t max_tokens = std::max<std::int64_t>(1, std::min<std::int64_t>(o.max_tokens, m.seq_len - longest_prompt));
  std::printf("server on 127.0.0.1:%d (max batch 32); streams of max_tokens %lld (temperature 1, seeded), %.0f s per "
              "level after a warm-up\n",
              server.port(), (long long)max_tokens, o.seconds);
  std::fflush(stdout);
  run_level(server, 1, std::min(1.0, o.seconds), max_tokens);  // warm-up: caches, pages, the thread pool

  std::printf("%7s %8s %8s %10s %10s %10s %11s %11s %10s %12s  %s\n", "streams", "requests", "tokens", "tokens/s",
              "TTFT p50", "TTFT p99", "token p50", "token p99", "mean batch", "decode step", "load");
  std::vector<level_result> results;
  for (int streams : o.streams) {
    level_result r = run_level(server, streams, o.seconds, max_tokens);
    std::printf("%7d %8lld %8lld %10.1f %8.1fms %8.1fms %9.2fms %9.2fms %10.2f %10.2fms  %s -> %s\n", r.streams,
                (long long)r.requests, (long long)r.tokens, double(r.tokens) / r.seconds, percentile(r.ttft, 0.5) * 1e3,
                percentile(r.ttft, 0.99) * 1e3, percentile(r.inter_token, 0.5) * 1e3,
                percentile(r.inter_token, 0.99) * 1e3, r.mean_batch, r.decode_step * 1e3, r.load_before.c_str(),
                r.load_after.c_str());
    if (r.failures > 0)
      std::printf("        %lld requests failed; the first: %s\n", (long long)r.failures, r.first_error.c_str());
    std::fflush(stdout);
    results.push_back(std::move(r));
  }
  server.stop();

  const level_result* one = nullptr;
  const level_result* most = nullptr;
  for (const auto& r : results) {
    if (r.streams == 1) one = &r;
    if (!most || r.streams > most->streams) most = &r;
  }
  if (one && most && most != one && one->tokens > 0) {
    const double gain = (double(most->tokens) / most->seconds) / (double(one->tokens) / one->seconds);
    std::printf("batching gain (tokens/s at %d streams over 1): %.2fx (target >= 8x at 32: %s)\n", most->streams, gain,
                most->streams == 32 ? (gain >= 8 ? "met" : "not met") : "needs 32 streams");
  }
  if (one && one->decode_steps > 0) {
    const double ratio = one->decode_step / bound;
    std::printf("batch-1 decode step: %.3f ms = %.2fx the memory bound of %.3f ms (target <= 2x: %s)\n",
                one->decode_step * 1e3, ratio, bound * 1e3, ratio <= 2 ? "met" : "not met");
  }
  return 0;
}

}  // namespace

void add_bench_serve_command(CLI::App& bench) {
  auto o = std::make_shared<bench_serve_options>();
  auto* cmd = bench.add_subcommand(
      "serve", "The completions server under 1, 8 and 32 streaming HTTP clients: tokens/s, latencies, batching gain, "
               "decode step against the memory bound");
  cmd->add_option("config_or_checkpoint", o->path,
                  "A checkpoint directory of `glam train` (its weights), or a config (its initial weights; the "
                  "tokenizer of its data.dir, or --tokenizer)")
      ->required()
      ->check(CLI::ExistingPath);
  cmd->add_option("--tokenizer", o->tokenizer, "Tokenizer model (default: the one of the data the job names)");
  cmd->add_option("--seconds", o->seconds, "Seconds of load per level")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-tokens", o->max_tokens, "max_tokens of each request (at most what seq_len leaves)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--streams", o->streams, "Concurrent streams of each level")->capture_default_str();
  cmd->add_option("--bandwidth-mib", o->bandwidth_mib, "Size of the buffer the bandwidth read goes over")
      ->capture_default_str()
      ->check(CLI::Range(std::int64_t{64}, std::int64_t{65536}));
  cmd->callback([o] { run_bench_serve(*o); });
}

}  // namespace glam::cli
