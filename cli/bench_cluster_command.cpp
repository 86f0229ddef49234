// `glam bench cluster CONFIG [--steps K] [--workers N]`: the throughput of a job on N
// worker processes (real daemons on loopback, started here) against the embedded single
// process, measured in the same run on synthetic tokens, and the share of the step the
// cluster spends outside the busiest worker's kernels (messaging and waiting).
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <caf/all.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "cli/commands.hpp"
#include "configs/config.hpp"
#include "coordinator/embedded_cluster.hpp"
#include "kernels/parallel.hpp"

extern char** environ;

namespace glam::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

// A child glam process with its output in files; killed by process id when dropped.
class child_process {
 public:
  child_process(const std::vector<std::string>& args, const std::string& log_prefix) : out_(log_prefix + ".out") {
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, (log_prefix + ".err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    const int rc = posix_spawn(&pid_, "/proc/self/exe", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) throw std::runtime_error("cannot start " + args.at(1) + ": " + std::strerror(rc));
  }
  ~child_process() {
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 100 && ::waitpid(pid_, nullptr, WNOHANG) == 0; ++i) std::this_thread::sleep_for(20ms);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;

  // The port from its "listening on 127.0.0.1:PORT" line (bounded wait).
  int wait_port() const {
    for (int i = 0; i < 1000; ++i) {
      std::ifstream in(out_);
      std::stringstream ss;
      ss << in.rdbuf();
      const auto text = ss.str();
      const auto at = text.find("listening on 127.0.0.1:");
      if (at != std::string::npos) return std::stoi(text.substr(at + 23));
      std::this_thread::sleep_for(20ms);
    }
    throw std::runtime_error("a child process did not start listening within 20 s (see " + out_ + ")");
  }

 private:
  std::string out_;
  pid_t pid_ = -1;
};

struct run_figures {
  double tokens_per_second = 0;  // median over the steps after the first
  double exchange_share = 0;     // median
};

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

run_figures figures(const std::vector<nlohmann::json>& lines) {
  std::vector<double> tps, share;
  for (std::size_t i = 1; i < lines.size(); ++i) {  // step 0 warms caches and allocators up
    tps.push_back(lines[i]["tokens_per_second"].get<double>());
    share.push_back(lines[i]["exchange_share"].get<double>());
  }
  return {median(tps), median(share)};
}

std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
  return out;
}

// encryption: "auto" (loopback: authenticated, not encrypted) or "always" (TLS on every
// connection, as between machines).
run_figures run_daemons(const std::string& toml, int workers, int threads, const std::string& dir,
                        const std::string& encryption) {
  fs::remove_all(dir);
  fs::create_directories(dir);
  child_process coordinator({"glam", "coordinator", "--listen", "127.0.0.1:0", "--state", dir + "/state",
                             "--encryption", encryption},
                            dir + "/coordinator");
  const auto endpoint = "127.0.0.1:" + std::to_string(coordinator.wait_port());
  std::vector<std::unique_ptr<child_process>> procs;
  for (int i = 0; i < workers; ++i) {
    std::vector<std::string> args{"glam", "worker", "--coordinator", endpoint, "--name", "bench-" + std::to_string(i),
                                  "--secret-file", dir + "/state/secret", "--encryption", encryption};
    if (threads > 0) {
      args.push_back("--threads");
      args.push_back(std::to_string(threads));
    }
    procs.push_back(std::make_unique<child_process>(args, dir + "/worker-" + std::to_string(i)));
    procs.back()->wait_port();
  }
  client_connection conn(endpoint, dir + "/state/secret");
  caf::scoped_actor self{conn.system()};
  std::string id, refused;
  self->request(conn.server(), conn.timeout(), submit_atom::value, toml, std::string("bench"))
      .receive([&](const std::string& r) { id = r; }, [&](const caf::error& e) { refused = error_text(e); });
  if (!refused.empty()) throw std::runtime_error("the bench job was refused: " + refused);
  for (int polls = 0;; ++polls) {
    std::string js;
    self->request(conn.server(), conn.timeout(), job_status_atom::value, id)
        .receive([&](const std::string& s) { js = s; }, [&](const caf::error&) {});
    auto j = js.empty() ? nlohmann::json{} : nlohmann::json::parse(js);
    if (!j.empty() && j["state"] == "finished") break;
    if (!j.empty() && (j["state"] == "failed" || j["state"] == "stopped"))
      throw std::runtime_error("the bench job " + j["state"].get<std::string>() + ": " + j["error"].get<std::string>());
    if (polls > 20 * 3600) throw std::runtime_error("the bench job did not finish within an hour");
    std::this_thread::sleep_for(50ms);
  }
  return figures(read_metrics(dir + "/state/jobs/" + id + "/metrics.jsonl"));
}

struct bench_cluster_options {
  std::string config_path;
  std::int64_t steps = 6;
  int workers = 2;
  int threads = 0;  // 0: the cores shared out among the worker processes
};

void run_bench_cluster(const bench_cluster_options& o) {
  config c = load_config(o.config_path);
  c.train.steps = o.steps;
  c.train.eval_every = 0;
  c.data.synthetic = true;  // throughput only: the shapes matter, not the text
  validate_config(c);
  const auto toml = to_toml(c);
  const auto dir = fs::temp_directory_path() / ("glam-bench-cluster-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);

  std::printf("glam bench cluster %s: %lld steps, %lld shards x %lld sequences x %lld tokens, %lld experts\n",
              c.name.c_str(), (long long)c.train.steps, (long long)c.cluster.shards,
              (long long)c.train.batch_per_shard, (long long)c.model.seq_len, (long long)c.model.experts);
  std::fflush(stdout);
  std::vector<nlohmann::json> lines;
  embedded_options eo;
  eo.workers = 1;
  eo.state_dir = (dir / "embedded").string();
  eo.on_step = [&](const job_record&, const nlohmann::json& line) { lines.push_back(line); };
  auto job = run_embedded_job(toml, "bench", eo);
  if (job.state != job_state::finished) throw std::runtime_error("the embedded bench job failed: " + job.error);
  const auto embedded = figures(lines);
  std::printf("embedded, 1 process, %d compute threads: %8.0f tokens/s  exchange share %.3f\n", compute_threads(),
              embedded.tokens_per_second, embedded.exchange_share);
  std::fflush(stdout);
  // Worker processes on one machine share its cores: each gets its part, so that their
  // kernel threads do not oversubscribe the cores (BLIS threads spin while they wait).
  const int threads = o.threads > 0 ? o.threads : std::max(1, compute_threads() / o.workers);
  const auto cluster = run_daemons(toml, o.workers, threads, (dir / "plain").string(), "auto");
  std::printf("%d worker processes, %d compute thread%s each: %8.0f tokens/s  exchange share %.3f\n", o.workers,
              threads, threads == 1 ? "" : "s", cluster.tokens_per_second, cluster.exchange_share);
  std::printf("ratio to embedded: %.3f (target >= 0.85)\n", cluster.tokens_per_second / embedded.tokens_per_second);
  std::fflush(stdout);
  // The same cluster with every connection under TLS, as between machines.
  const auto encrypted = run_daemons(toml, o.workers, threads, (dir / "tls").string(), "always");
  std::printf("the same, every connection encrypted (TLS 1.3): %8.0f tokens/s  exchange share %.3f\n",
              encrypted.tokens_per_second, encrypted.exchange_share);
  std::printf("encrypted / authenticated-only: %.3f\n", encrypted.tokens_per_second / cluster.tokens_per_second);
  std::printf("%s\n", load_average().c_str());
  fs::remove_all(dir);
}

}  // namespace

void add_bench_cluster_command(CLI::App& bench) {
  auto o = std::make_shared<bench_cluster_options>();
  auto* cmd = bench.add_subcommand(
      "cluster", "Tokens/s of a job on worker processes against the embedded single process, same run");
  cmd->add_option("config", o->config_path, "The job's TOML config")->required()->check(CLI::ExistingFile);
  cmd->add_option("--steps", o->steps, "Steps per run (the first is not counted)")->check(CLI::Range(2, 100000));
  cmd->add_option("--workers", o->workers, "Worker processes")->check(CLI::Range(1, 64));
  cmd->add_option("--threads", o->threads, "Compute threads per worker process (default: the cores divided among the workers)")
      ->check(CLI::PositiveNumber);
  cmd->callback([o] { run_bench_cluster(*o); });
}

}  // namespace glam::cli
