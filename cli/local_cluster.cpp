#include "cli/local_cluster.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <caf/all.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "data/dataset.hpp"

extern char** environ;

namespace glam::cli {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// The children alive, for the signal handler (which may only call kill()): a fixed table
// of process ids, 0 for a free slot.
constexpr std::size_t max_children = 512;
std::array<std::atomic<pid_t>, max_children> children{};
std::atomic<bool> interrupted_flag{false};
std::atomic<int> guards{0};
struct sigaction previous_int {}, previous_term {};

void register_child(pid_t pid) {
  for (auto& slot : children) {
    pid_t free = 0;
    if (slot.compare_exchange_strong(free, pid)) return;
  }
  // More than max_children alive at once: still killed by its owner and by PR_SET_PDEATHSIG.
}

void unregister_child(pid_t pid) {
  for (auto& slot : children) {
    pid_t mine = pid;
    if (slot.compare_exchange_strong(mine, 0)) return;
  }
}

extern "C" void on_interrupt(int) {
  interrupted_flag.store(true);
  for (auto& slot : children)
    if (const pid_t pid = slot.load(); pid > 0) ::kill(pid, SIGKILL);
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The environment of this process with `over` ("KEY=VALUE") put over it.
std::vector<std::string> environment_with(const std::vector<std::string>& over) {
  std::vector<std::string> out;
  auto key = [](const std::string& kv) { return kv.substr(0, kv.find('=')); };
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    bool replaced = false;
    for (const auto& o : over) replaced = replaced || key(o) == key(kv);
    if (!replaced) out.push_back(kv);
  }
  out.insert(out.end(), over.begin(), over.end());
  return out;
}

}  // namespace

interrupt_guard::interrupt_guard() {
  if (guards++ > 0) return;
  interrupted_flag.store(false);
  struct sigaction sa {};
  sa.sa_handler = on_interrupt;
  sigemptyset(&sa.sa_mask);
  ::sigaction(SIGINT, &sa, &previous_int);
  ::sigaction(SIGTERM, &sa, &previous_term);
}

interrupt_guard::~interrupt_guard() {
  if (--guards > 0) return;
  ::sigaction(SIGINT, &previous_int, nullptr);
  ::sigaction(SIGTERM, &previous_term, nullptr);
}

bool interrupt_guard::interrupted() { return interrupted_flag.load(); }

void interrupt_guard::check() {
  if (interrupted()) throw interrupted_error();
}

void sleep_checked(std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  for (;;) {
    interrupt_guard::check();
    const auto left = end - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) return;
    std::this_thread::sleep_for(std::min<std::chrono::steady_clock::duration>(left, 20ms));
  }
}

std::int64_t unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

local_process::local_process(const std::vector<std::string>& args, const std::string& log_prefix,
                             const std::vector<std::string>& env)
    : out_path_(log_prefix + ".out"), err_path_(log_prefix + ".err") {
  interrupt_guard::check();
  what_ = "glam";
  for (const auto& a : args) what_ += " " + a;
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  std::vector<std::string> argv_text{"glam"};
  argv_text.insert(argv_text.end(), args.begin(), args.end());
  const auto env_text = environment_with(env);
  std::vector<char*> argv, envp;
  for (const auto& a : argv_text) argv.push_back(const_cast<char*>(a.c_str()));
  argv.push_back(nullptr);
  for (const auto& e : env_text) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("cannot start " + what_ + ": " + std::strerror(errno));
  if (pid_ == 0) {
    // Dies with this process, however it ends; its own process group, so that a terminal's
    // Ctrl-C reaches this process only, which then kills its children by id.
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    ::setpgid(0, 0);
    const int o = ::open(out_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    const int e = ::open(err_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (o < 0 || e < 0) ::_exit(126);
    ::dup2(o, 1);
    ::dup2(e, 2);
    // The very binary this process runs, even when its file was replaced meanwhile.
    ::execve("/proc/self/exe", argv.data(), envp.data());
    ::_exit(127);
  }
  register_child(pid_);
}

local_process::~local_process() {
  if (reaped_ || pid_ <= 0) return;
  ::kill(pid_, SIGKILL);  // a stopped process dies of it too
  for (int i = 0; i < 1000 && !exited(); ++i) std::this_thread::sleep_for(10ms);
  if (!reaped_) unregister_child(pid_);
}

void local_process::signal(int sig) {
  if (!exited()) ::kill(pid_, sig);
}

bool local_process::exited() {
  if (reaped_) return true;
  int st = 0;
  const pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_ || (r < 0 && errno == ECHILD)) {
    reaped_ = true;
    status_ = st;
    unregister_child(pid_);
  }
  return reaped_;
}

std::optional<int> local_process::wait_exit(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!exited()) {
    if (std::chrono::steady_clock::now() >= end) return std::nullopt;
    std::this_thread::sleep_for(10ms);
  }
  return WIFEXITED(status_) ? WEXITSTATUS(status_) : -WTERMSIG(status_);
}

int local_process::wait_listening(std::chrono::milliseconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  const std::string mark = "listening on ";
  for (;;) {
    interrupt_guard::check();
    const auto text = out();
    if (auto at = text.find(mark); at != std::string::npos) {
      const auto line_end = text.find('\n', at);
      if (line_end != std::string::npos) {
        const auto address = text.substr(at + mark.size(), line_end - at - mark.size());
        const auto colon = address.rfind(':');
        if (colon != std::string::npos) return std::stoi(address.substr(colon + 1));
      }
    }
    if (exited())
      throw std::runtime_error("'" + what_ + "' exited before it served: " + err_tail());
    if (std::chrono::steady_clock::now() >= end)
      throw std::runtime_error("'" + what_ + "' did not report 'listening on' within " +
                               std::to_string(timeout.count() / 1000) + " s: " + err_tail());
    std::this_thread::sleep_for(20ms);
  }
}

std::string local_process::out() const { return slurp(out_path_); }

std::string local_process::err_tail(std::size_t bytes) const {
  auto text = slurp(err_path_);
  if (text.size() > bytes) text = "..." + text.substr(text.size() - bytes);
  return text.empty() ? "(nothing on stderr)" : text;
}

local_cluster::local_cluster(local_cluster_options o) : o_(std::move(o)) {
  fs::create_directories(o_.dir + "/home");
  fs::create_directories(o_.dir + "/logs");
  start_coordinator(0);
}

local_cluster::~local_cluster() {
  conn_.reset();
  workers_.clear();
  coordinator_.reset();
}

std::vector<std::string> local_cluster::env() const {
  // The coordinator records the cluster (secret, checkpoint root) under $HOME/.glam: ours.
  std::vector<std::string> out{"HOME=" + o_.dir + "/home"};
  out.insert(out.end(), o_.env.begin(), o_.env.end());
  return out;
}

void local_cluster::start_coordinator(int port) {
  std::vector<std::string> args{"coordinator", "--listen", "127.0.0.1:" + std::to_string(port), "--state",
                                state_dir(), "--heartbeat-timeout-ms", std::to_string(o_.heartbeat_timeout_ms)};
  if (o_.min_round_ms > 0) {
    args.push_back("--min-round-ms");
    args.push_back(std::to_string(o_.min_round_ms));
  }
  const auto log = o_.dir + "/logs/coordinator-" + std::to_string(++coordinator_starts_);
  coordinator_ = std::make_unique<local_process>(args, log, env());
  const int bound = coordinator_->wait_listening(o_.start_timeout);
  if (port != 0 && bound != port)
    throw std::runtime_error("the coordinator came back on port " + std::to_string(bound) + ", not " +
                             std::to_string(port));
  port_ = bound;
}

void local_cluster::restart_coordinator() {
  conn_.reset();
  coordinator_->signal(SIGKILL);
  if (!coordinator_->wait_exit(10s)) throw std::runtime_error("the coordinator did not die of SIGKILL within 10 s");
  start_coordinator(port_);
}

local_process& local_cluster::start_worker(const std::string& name, const std::vector<std::string>& extra_args) {
  if (auto* w = worker(name); w && !w->exited())
    throw std::logic_error("worker " + name + " is running already");
  std::vector<std::string> args{"worker",         "--coordinator", endpoint(),    "--name",
                                name,             "--listen",      "127.0.0.1:0", "--heartbeat-ms",
                                std::to_string(o_.heartbeat_ms),   "--secret-file", secret_file(),
                                "--checkpoint-root", checkpoint_root()};
  if (o_.worker_threads > 0) {
    args.push_back("--threads");
    args.push_back(std::to_string(o_.worker_threads));
  }
  if (!o_.data_root.empty()) {
    args.push_back("--data-root");
    args.push_back(o_.data_root);
  }
  args.insert(args.end(), extra_args.begin(), extra_args.end());
  const auto log = o_.dir + "/logs/worker-" + name + "-" + std::to_string(++worker_starts_[name]);
  auto& slot = workers_[name];
  slot = std::make_unique<local_process>(args, log, env());
  slot->wait_listening(o_.start_timeout);
  return *slot;
}

local_process* local_cluster::worker(const std::string& name) {
  auto i = workers_.find(name);
  return i == workers_.end() ? nullptr : i->second.get();
}

std::vector<std::string> local_cluster::worker_names() const {
  std::vector<std::string> out;
  for (const auto& [name, p] : workers_) out.push_back(name);
  return out;
}

client_connection& local_cluster::connection() {
  if (!conn_) conn_ = std::make_unique<client_connection>(endpoint(), secret_file(), 5000ms);
  return *conn_;
}

std::string local_cluster::submit(const std::string& toml, const std::string& source) {
  auto& c = connection();
  caf::scoped_actor self{c.system()};
  std::string id, refused;
  self->request(c.server(), c.timeout(), submit_atom::value, toml, source)
      .receive([&](const std::string& r) { id = r; }, [&](const caf::error& e) { refused = error_text(e); });
  if (!refused.empty()) throw std::runtime_error("the coordinator refused the job: " + refused);
  return id;
}

std::optional<nlohmann::json> local_cluster::status() {
  interrupt_guard::check();
  try {
    auto& c = connection();
    std::string text;
    {
      caf::scoped_actor self{c.system()};
      self->request(c.server(), c.timeout(), status_atom::value)
          .receive([&](const std::string& s) { text = s; }, [&](const caf::error&) {});
    }
    if (text.empty()) {
      conn_.reset();
      return std::nullopt;
    }
    return nlohmann::json::parse(text);
  } catch (const std::runtime_error&) {  // cannot connect (restarting): the next poll tries again
    conn_.reset();
    return std::nullopt;
  }
}

std::string local_cluster::drain(const std::string& worker, std::chrono::milliseconds timeout) {
  auto& c = connection();
  caf::scoped_actor self{c.system()};
  std::string said, refused;
  self->request(c.server(), timeout, drain_atom::value, worker)
      .receive([&](const std::string& m) { said = m; }, [&](const caf::error& e) { refused = error_text(e); });
  if (!refused.empty()) throw std::runtime_error("drain " + worker + ": " + refused);
  return said;
}

std::string local_cluster::stop(const std::string& job) {
  auto& c = connection();
  caf::scoped_actor self{c.system()};
  std::string said, refused;
  self->request(c.server(), c.timeout(), stop_atom::value, job)
      .receive([&](const std::string& m) { said = m; }, [&](const caf::error& e) { refused = error_text(e); });
  if (!refused.empty()) throw std::runtime_error("stop " + job + ": " + refused);
  return said;
}

nlohmann::json local_cluster::wait_job_end(const std::string& id, std::chrono::milliseconds timeout) {
  auto ended = [&](const nlohmann::json& s) {
    const auto j = job_in(s, id);
    if (j.is_null()) return false;
    const auto state = j.value("state", "");
    return state == "finished" || state == "failed" || state == "stopped";
  };
  auto s = wait_status(ended, timeout);
  return s && ended(*s) ? job_in(*s, id) : nlohmann::json(nullptr);
}

config load_cluster_job(const std::string& path, bool synthetic) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec))
    throw std::invalid_argument("config '" + path + "' is not a file: give a job's TOML config, such as configs/glam-tiny.toml");
  config c = load_config(path);
  if (synthetic) c.data.synthetic = true;
  if (c.data.synthetic) return c;
  c.data.dir = fs::absolute(c.data.dir).lexically_normal().string();
  try {
    auto d = dataset::open(c.data.dir);
    validate_against_data(c, d.vocab_size(), d.longest_trainable_sequence());
  } catch (const std::exception& e) {
    throw std::invalid_argument(path + ": data.dir '" + c.data.dir + "' cannot be used (" + e.what() +
                                "): prepare it with glam data prepare, or pass --synthetic to train on synthetic tokens");
  }
  return c;
}

nlohmann::json job_in(const nlohmann::json& status, const std::string& id) {
  if (status.contains("jobs"))
    for (const auto& j : status["jobs"])
      if (j.value("id", "") == id) return j;
  return nullptr;
}

std::vector<nlohmann::json> read_metrics_lines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded()) out.push_back(std::move(j));
  }
  return out;
}

const std::vector<metrics_follower::line>& metrics_follower::poll() {
  struct stat st {};
  if (::stat(path_.c_str(), &st) != 0) return lines_;
  const auto size = static_cast<std::uint64_t>(st.st_size);
  if (size < offset_) {  // rewritten after a rollback: read it again
    offset_ = 0;
    partial_.clear();
    lines_.clear();
  }
  if (size == offset_) return lines_;
  const auto now = unix_ms();
  std::ifstream in(path_, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset_));
  std::string chunk(size - offset_, '\0');
  in.read(chunk.data(), static_cast<std::streamsize>(chunk.size()));
  chunk.resize(static_cast<std::size_t>(in.gcount()));
  offset_ += chunk.size();
  partial_ += chunk;
  for (std::size_t nl; (nl = partial_.find('\n')) != std::string::npos;) {
    const auto text = partial_.substr(0, nl);
    partial_.erase(0, nl + 1);
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded()) continue;
    const auto seen = first_seen_.emplace(text, now).first->second;
    lines_.push_back({std::move(j), seen});
  }
  return lines_;
}

}  // namespace glam::cli
