#pragma once
// What the serving tests share: a small model, a gate in front of a real backend (the test
// decides when each step runs, so batching is checked step by step instead of by timing),
// a glam-tiny checkpoint trained on real text once per test binary, and an HTTP client on a
// plain socket. Every wait is bounded.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "data/dataset.hpp"
#include "data/prepare.hpp"
#include "model/checkpoint.hpp"
#include "model/generate.hpp"
#include "model/train_step.hpp"
#include "serve/inference_backend.hpp"
#include "serve/reference_backend.hpp"
#include "tests/http_test_client.hpp"

namespace glam::serve_testing {

using testing::http_client;
using testing::http_reply;
using testing::lower;

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// Generous: these bound waits for things that take milliseconds.
constexpr auto wait_limit = 20s;

template <class Predicate>
bool wait_for(Predicate p, std::chrono::milliseconds limit = wait_limit) {
  const auto deadline = clock_type::now() + limit;
  while (clock_type::now() < deadline) {
    if (p()) return true;
    std::this_thread::sleep_for(2ms);
  }
  return p();
}

// A two-block model (block 0 MoE with 4 experts), long enough sequences for batching tests.
inline config small_model_config() {
  config c;
  c.name = "serve-test";
  c.model.vocab_size = 96;
  c.model.layers = 2;
  c.model.d_model = 16;
  c.model.d_ff = 32;
  c.model.heads = 2;
  c.model.d_head = 8;
  c.model.experts = 4;
  c.model.moe_every = 2;
  c.model.seq_len = 48;
  c.train.seed = 11;
  return c;
}

inline reference_inference make_model(const config& c) {
  std::vector<param_set> experts;
  for (index e = 0; e < c.model.experts; ++e) experts.push_back(init_expert_params(c.model, e, c.train.seed));
  return reference_inference(c, init_dense_params(c.model, c.train.seed), std::move(experts));
}

// A real backend behind a gate: a step runs only when the test has allowed it (or the gate
// is open), and every step request is recorded. `arrived` counts steps the scheduler has
// asked for: it asks for the next one only after it has handled the last one's tokens (its
// callbacks have returned), so "arrived == n" means "n - 1 steps are done and handled".
class gated_backend : public inference_backend {
 public:
  explicit gated_backend(inference_backend& inner) : inner_(inner) {}

  const config& cfg() const override { return inner_.cfg(); }
  index max_sequences() const override { return inner_.max_sequences(); }
  std::string describe() const override { return "gated " + inner_.describe(); }

  step_result run_step(const step_request& request) override {
    std::unique_lock<std::mutex> lock(mutex_);
    ++arrived_;
    changed_.notify_all();
    changed_.wait(lock, [&] { return open_ || permits_ > 0; });
    if (!open_) --permits_;
    requests_.push_back(request);
    lock.unlock();
    step_result r = inner_.run_step(request);
    lock.lock();
    ++done_;
    changed_.notify_all();
    return r;
  }

  // Lets n more steps run, then waits (bounded) until the scheduler has handled them and
  // asks for the next. False on timeout.
  bool advance(int n = 1) {
    std::unique_lock<std::mutex> lock(mutex_);
    const int target = arrived_ + n;
    permits_ += n;
    changed_.notify_all();
    return changed_.wait_for(lock, wait_limit, [&] { return arrived_ >= target; });
  }
  // Waits (bounded) until the scheduler has asked for `n` steps in all.
  bool wait_arrived(int n) {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, wait_limit, [&] { return arrived_ >= n; });
  }
  void open() {
    std::lock_guard<std::mutex> lock(mutex_);
    open_ = true;
    changed_.notify_all();
  }
  int arrived() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return arrived_;
  }
  std::vector<step_request> requests() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return requests_;
  }

 private:
  inference_backend& inner_;
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool open_ = false;
  int permits_ = 0, arrived_ = 0, done_ = 0;
  std::vector<step_request> requests_;
};

// ---------------------------------------------------------------------------------------
// glam-tiny trained for two steps on two fortune files, once per test binary: ctest runs each
// test in a process of its own, so the first process to get the lock trains it into a folder
// next to the binary (named after the binary's modification time) and the others reuse it.

struct trained_model {
  std::string checkpoint;  // a checkpoint root
  std::string tokenizer;   // its data's tokenizer.model
};

inline trained_model trained_glam_tiny() {
  namespace fs = std::filesystem;
  static const trained_model cached = [] {
    const fs::path binary = fs::read_symlink("/proc/self/exe");
    struct stat st {};
    ::stat(binary.c_str(), &st);
    const std::string key = std::to_string(static_cast<long long>(st.st_mtime)) + "-" + std::to_string(st.st_size);
    const fs::path base = binary.parent_path() / (binary.filename().string() + "-model");
    const fs::path dir = base / key;
    fs::create_directories(base);
    const int lock_fd = ::open((base / "lock").c_str(), O_CREAT | O_RDWR, 0600);
    ::flock(lock_fd, LOCK_EX);
    if (!fs::exists(dir / "ready")) {
      for (const auto& old : fs::directory_iterator(base))  // models of older builds
        if (old.is_directory()) fs::remove_all(old.path());
      prepare_options p;
      p.inputs = {"/usr/share/games/fortunes/computers", "/usr/share/games/fortunes/cookie"};
      p.out_dir = (dir / "data").string();
      p.vocab_size = 2048;
      p.progress = [](const std::string&) {};
      prepare_data(p);
      config c = load_config(std::string(GLAM_SOURCE_DIR) + "/configs/glam-tiny.toml");
      c.data.dir = (dir / "data").string();
      const dataset data = dataset::open(c.data.dir);
      dataset_source source(c, data);
      reference_trainer trainer(c, source);
      trainer.train_step(0);
      trainer.train_step(1);
      save_checkpoint(trainer, (dir / "checkpoints").string(), 2, 0);
      ::close(::open((dir / "ready").c_str(), O_CREAT | O_WRONLY, 0600));
    }
    ::flock(lock_fd, LOCK_UN);
    ::close(lock_fd);
    return trained_model{(dir / "checkpoints").string(), (dir / "data" / "tokenizer.model").string()};
  }();
  return cached;
}

// ---------------------------------------------------------------------------------------
// An HTTP/1.1 client on a plain socket, with a deadline on every read.

inline std::string post_request(const std::string& path, const std::string& body, const std::string& extra = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: " +
         std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
}
inline std::string get_request(const std::string& path, const std::string& extra = "") {
  return "GET " + path + " HTTP/1.1\r\nHost: test\r\n" + extra + "\r\n";
}

// One request on a fresh connection.
inline std::optional<http_reply> fetch(int port, const std::string& request) {
  http_client c(port);
  if (!c.connected() || !c.send(request)) return std::nullopt;
  return c.read_reply();
}

}  // namespace glam::serve_testing
