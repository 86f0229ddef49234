#pragma once
// Starting real glam daemons for the cluster tests: every process is started by us, bound
// to 127.0.0.1 on a free port (port 0, read back from its first stdout line), every wait
// is bounded, and every process is killed by its process id.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/tiny_job.hpp"

namespace glam::test {

namespace fs = std::filesystem;

inline std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class process {
 public:
  process(std::vector<std::string> args, const std::string& dir, const std::string& tag,
          std::vector<std::string> env = {})
      : out_(dir + "/" + tag + ".out"), err_(dir + "/" + tag + ".err") {
    pid_ = ::fork();
    if (pid_ == 0) {
      // Dies with the test, even when the test itself crashes: no daemon outlives it.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int o = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      int e = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(o, 1);
      ::dup2(e, 2);
      for (auto& kv : env) ::putenv(const_cast<char*>(kv.c_str()));
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      ::execv(argv[0], argv.data());
      ::_exit(127);
    }
  }
  ~process() { kill(SIGKILL); wait_exit(std::chrono::seconds(5)); }
  process(const process&) = delete;
  process& operator=(const process&) = delete;

  pid_t pid() const { return pid_; }
  std::string out() const { return slurp(out_); }
  std::string err() const { return slurp(err_); }

  // Waits until stdout holds `needle`; returns stdout ("" on timeout or early exit).
  std::string wait_stdout(const std::string& needle, std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < end) {
      auto s = out();
      if (s.find(needle) != std::string::npos) return s;
      if (exited()) return {};
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return {};
  }
  // The port from "... listening on 127.0.0.1:PORT" (0 when it did not start).
  int wait_port(std::chrono::milliseconds timeout = std::chrono::seconds(20)) {
    auto s = wait_stdout("listening on 127.0.0.1:", timeout);
    auto i = s.find("listening on 127.0.0.1:");
    return i == std::string::npos ? 0 : std::stoi(s.substr(i + 23));
  }
  void kill(int sig) {
    if (pid_ > 0 && !done_) ::kill(pid_, sig);
  }
  bool exited() {
    if (done_) return true;
    int st = 0;
    if (::waitpid(pid_, &st, WNOHANG) == pid_) {
      done_ = true;
      status_ = st;
    }
    return done_;
  }
  // Exit code, or -signal, or 1000 when it did not exit in time.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (!exited() && std::chrono::steady_clock::now() < end)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (!done_) return 1000;
    return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
  }
  // Resident memory in kB (from /proc).
  long rss_kb() const {
    std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
    std::string line;
    while (std::getline(in, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }

 private:
  std::string out_, err_;
  pid_t pid_ = -1;
  bool done_ = false;
  int status_ = 0;
};

// Runs a client command to completion (bounded) and returns (exit code, stdout + stderr).
inline std::pair<int, std::string> run(std::vector<std::string> args, const std::string& dir,
                                       std::chrono::milliseconds timeout = std::chrono::seconds(30),
                                       std::vector<std::string> env = {}) {
  static int n = 0;
  process p(std::move(args), dir, "client" + std::to_string(n++), std::move(env));
  int rc = p.wait_exit(timeout);
  return {rc, p.out() + p.err()};
}

inline std::string fresh_dir(const std::string& tag) {
  auto d = fs::temp_directory_path() / ("glam-cluster-" + tag + "-" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d.string();
}

inline void write_file(const std::string& path, const std::string& text, mode_t mode = 0600) {
  std::ofstream(path) << text;
  ::chmod(path.c_str(), mode);
}

using namespace std::chrono_literals;

inline const std::string glam_bin = GLAM_BINARY;

inline const std::string tiny_job = glam::testing::tiny_job_toml(2);

// A coordinator on a free loopback port with its own state directory, and the workers
// and clients started against it.
struct cluster {
  std::string dir;
  std::vector<std::string> env;
  std::unique_ptr<process> coordinator;
  std::vector<std::unique_ptr<process>> workers;
  int port = 0;

  // coordinator_args: more options for the coordinator (workers take theirs in add_worker).
  explicit cluster(const std::string& tag, int heartbeat_timeout_ms = 3000, std::uint64_t placement_seed = 0,
                   std::vector<std::string> coordinator_args = {})
      : dir(fresh_dir(tag)) {
    env = {"HOME=" + dir};  // the secret's locator goes under the test's own HOME
    std::vector<std::string> args{glam_bin, "coordinator", "--listen", "127.0.0.1:0", "--state", dir + "/state",
                                  "--heartbeat-timeout-ms", std::to_string(heartbeat_timeout_ms)};
    if (placement_seed != 0) {
      args.push_back("--random-placement");
      args.push_back(std::to_string(placement_seed));
    }
    args.insert(args.end(), coordinator_args.begin(), coordinator_args.end());
    coordinator = std::make_unique<process>(args, dir, "coordinator", env);
    port = coordinator->wait_port();
  }
  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port); }
  process& add_worker(const std::string& name, std::vector<std::string> extra_env = {},
                      std::vector<std::string> extra_args = {}) {
    auto e = env;
    e.insert(e.end(), extra_env.begin(), extra_env.end());
    std::vector<std::string> args{glam_bin, "worker", "--coordinator", endpoint(), "--name", name,
                                  "--listen", "127.0.0.1:0", "--heartbeat-ms", "200"};
    args.insert(args.end(), extra_args.begin(), extra_args.end());
    workers.push_back(std::make_unique<process>(args, dir, "worker-" + name, e));
    return *workers.back();
  }
  std::pair<int, std::string> client(std::vector<std::string> args) {
    std::vector<std::string> full{glam_bin};
    full.insert(full.end(), args.begin(), args.end());
    return run(full, dir, 30s, env);
  }
  nlohmann::json status() {
    auto [rc, out] = client({"status", "--coordinator", endpoint(), "--json"});
    if (rc != 0) return {};
    auto first = out.find('{');
    return first == std::string::npos ? nlohmann::json{} : nlohmann::json::parse(out.substr(first));
  }
  // Polls status until pred holds (bounded).
  template <class Pred>
  nlohmann::json wait_status(Pred pred, std::chrono::milliseconds timeout = 15s) {
    auto end = std::chrono::steady_clock::now() + timeout;
    nlohmann::json s;
    while (std::chrono::steady_clock::now() < end) {
      s = status();
      if (!s.empty() && pred(s)) return s;
      std::this_thread::sleep_for(200ms);
    }
    return s;
  }
  ~cluster() {
    workers.clear();
    coordinator.reset();
    fs::remove_all(dir);
  }
};

}  // namespace glam::test
