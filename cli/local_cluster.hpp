#pragma once
// A cluster of real glam processes on this machine, for the commands that start one and
// disturb it (glam chaos, glam bench recovery): a coordinator and workers on 127.0.0.1 with
// free ports, their own state directory and HOME (nothing under the user's ~/.glam), every
// wait bounded, every process killed by its process id when the cluster is dropped, on
// SIGINT/SIGTERM (interrupt_guard) and when this process dies (PR_SET_PDEATHSIG).
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "configs/config.hpp"

namespace glam {
class client_connection;
}

namespace glam::cli {

// Thrown out of every wait once SIGINT or SIGTERM arrived under an interrupt_guard.
struct interrupted_error : std::runtime_error {
  interrupted_error() : std::runtime_error("interrupted") {}
};

// While alive, SIGINT and SIGTERM kill every child process started by local_process (by its
// process id, from the handler) and make the waits throw interrupted_error, so that the
// command cleans up and exits instead of leaving daemons behind.
class interrupt_guard {
 public:
  interrupt_guard();
  ~interrupt_guard();
  interrupt_guard(const interrupt_guard&) = delete;
  interrupt_guard& operator=(const interrupt_guard&) = delete;
  static bool interrupted();
  // Throws interrupted_error when a signal arrived.
  static void check();
};

// Sleeps `d`, waking early to throw interrupted_error.
void sleep_checked(std::chrono::milliseconds d);

// Milliseconds since the Unix epoch (the clock the coordinator's event lines use).
std::int64_t unix_ms();

// One child process running this glam binary with `args` (args[0] is the subcommand), the
// environment of this process with `env` ("KEY=VALUE") put over it, stdout and stderr in
// files LOG_PREFIX.out and LOG_PREFIX.err. Killed (SIGKILL) and reaped when dropped.
class local_process {
 public:
  local_process(const std::vector<std::string>& args, const std::string& log_prefix,
                const std::vector<std::string>& env);
  ~local_process();
  local_process(const local_process&) = delete;
  local_process& operator=(const local_process&) = delete;

  pid_t pid() const { return pid_; }
  // Sends a signal (nothing once the process was reaped).
  void signal(int sig);
  // Reaps the process if it ended; true once it has.
  bool exited();
  // Waits for the process to end: its exit code, -signal, or nullopt on timeout.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // The port of its "listening on HOST:PORT" line. Throws, with the end of its stderr, when
  // it exits first or does not print the line within `timeout`.
  int wait_listening(std::chrono::milliseconds timeout);
  std::string out() const;
  // The last `bytes` of its stderr, for error messages.
  std::string err_tail(std::size_t bytes = 2000) const;
  const std::string& describe() const { return what_; }

 private:
  std::string out_path_, err_path_, what_;
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
};

struct local_cluster_options {
  std::string dir;                    // everything goes here: state, logs, HOME
  int heartbeat_timeout_ms = 3000;    // coordinator --heartbeat-timeout-ms
  int heartbeat_ms = 200;             // worker --heartbeat-ms
  int min_round_ms = 0;               // coordinator --min-round-ms (pacing; 0: none)
  int worker_threads = 0;             // worker --threads (0: the worker's default)
  std::string data_root;              // worker --data-root (empty: the worker's default)
  std::vector<std::string> env;       // "KEY=VALUE" put over every daemon's environment
  std::chrono::milliseconds start_timeout{60000};  // for a daemon's "listening" line
};

// A coordinator and its workers, started here. Workers are known by name; a worker that
// was killed, drained or exited keeps its entry (with its process reaped) until it is
// started again under the same name.
class local_cluster {
 public:
  explicit local_cluster(local_cluster_options o);
  ~local_cluster();
  local_cluster(const local_cluster&) = delete;
  local_cluster& operator=(const local_cluster&) = delete;

  std::string endpoint() const { return "127.0.0.1:" + std::to_string(port_); }
  std::string state_dir() const { return o_.dir + "/state"; }
  std::string secret_file() const { return state_dir() + "/secret"; }
  std::string checkpoint_root() const { return state_dir() + "/checkpoints"; }
  std::string metrics_path(const std::string& job) const { return state_dir() + "/jobs/" + job + "/metrics.jsonl"; }
  const local_cluster_options& options() const { return o_; }

  // Starts (or starts again) the worker `name`, with `extra_args` after the usual ones,
  // and waits until it registered.
  local_process& start_worker(const std::string& name, const std::vector<std::string>& extra_args = {});
  local_process* worker(const std::string& name);
  std::vector<std::string> worker_names() const;
  local_process& coordinator() { return *coordinator_; }
  // SIGKILL the coordinator and start it again on the same port and state directory.
  void restart_coordinator();

  // Client requests, each bounded; a lost connection is made again on the next request.
  // Returns the job id; throws with the coordinator's reason when it refuses the job.
  std::string submit(const std::string& toml, const std::string& source);
  // The status JSON (glam status --json), or nullopt when the coordinator does not answer.
  std::optional<nlohmann::json> status();
  // glam drain: waits (at most `timeout`) for the answer, which it returns.
  std::string drain(const std::string& worker, std::chrono::milliseconds timeout);
  std::string stop(const std::string& job);

  // Polls until job `id` is finished, failed or stopped (at most `timeout`): its entry of
  // the status, or null when it did not end in time.
  nlohmann::json wait_job_end(const std::string& id, std::chrono::milliseconds timeout);

  // Polls status until `pred` holds (every 100 ms, at most `timeout`); the last status.
  template <class Pred>
  std::optional<nlohmann::json> wait_status(Pred pred, std::chrono::milliseconds timeout) {
    const auto end = std::chrono::steady_clock::now() + timeout;
    std::optional<nlohmann::json> s;
    for (;;) {
      s = status();
      if (s && pred(*s)) return s;
      if (std::chrono::steady_clock::now() >= end) return s;
      sleep_checked(std::chrono::milliseconds(100));
    }
  }

 private:
  void start_coordinator(int port);
  client_connection& connection();
  std::vector<std::string> env() const;

  local_cluster_options o_;
  int port_ = 0;
  int coordinator_starts_ = 0;
  std::unique_ptr<local_process> coordinator_;
  std::map<std::string, std::unique_ptr<local_process>> workers_;
  std::map<std::string, int> worker_starts_;
  std::unique_ptr<client_connection> conn_;
};

// CONFIG loaded for a cluster started here: with `synthetic`, on synthetic tokens; else its
// data.dir made absolute (the workers' --data-root) and checked now, with the fix named.
config load_cluster_job(const std::string& path, bool synthetic);

// The state of job `id` in a status JSON (null when it is not listed).
nlohmann::json job_in(const nlohmann::json& status, const std::string& id);

// The lines of a metrics.jsonl file (step lines and event lines), in order; a torn last
// line is left out.
std::vector<nlohmann::json> read_metrics_lines(const std::string& path);

// Follows a metrics.jsonl file as the coordinator appends to it, with the time (unix_ms)
// each line was first seen. A job that rolls back drops the step lines from the restore
// point on and rewrites the file (event lines stay, in order): the follower then reads it
// again, keeping the first-seen time of every line it had seen already.
class metrics_follower {
 public:
  explicit metrics_follower(std::string path) : path_(std::move(path)) {}
  struct line {
    nlohmann::json json;
    std::int64_t seen_ms = 0;
  };
  // Reads what changed; the file's complete lines, in order.
  const std::vector<line>& poll();
  const std::vector<line>& lines() const { return lines_; }

 private:
  std::string path_;
  std::uint64_t offset_ = 0;
  std::string partial_;
  std::vector<line> lines_;
  std::map<std::string, std::int64_t> first_seen_;  // by the line's text
};

}  // namespace glam::cli
