#include "actors/cluster_discovery.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <optional>
#include <stdexcept>
#include <vector>

#include "actors/security.hpp"

namespace glam {

namespace {

// True while pid runs and is a glam coordinator (a pid the system gave to another program
// since does not count).
bool coordinator_runs(long pid) {
  if (pid <= 0) return true;  // the record does not say: assume it runs
  if (::kill(static_cast<pid_t>(pid), 0) != 0 && errno != EPERM) return false;
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  if (!in) return true;  // no /proc: the signal check is all there is
  // `glam coordinator ...`, or a program named after one.
  std::vector<std::string> args;
  for (std::string a; std::getline(in, a, '\0');) args.push_back(a);
  if (args.empty()) return false;
  const auto& program = args.front();
  if (program.size() >= 11 && program.compare(program.size() - 11, 11, "coordinator") == 0) return true;
  return std::find(args.begin(), args.end(), "coordinator") != args.end();
}

std::optional<recorded_cluster> read_record(const std::filesystem::path& file) {
  const std::string name = file.filename().string();
  const auto underscore = name.rfind('_');
  if (underscore == std::string::npos || underscore == 0 || underscore + 1 == name.size()) return std::nullopt;
  const std::string port = name.substr(underscore + 1);
  if (!std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; }) || port.size() > 5)
    return std::nullopt;
  recorded_cluster r;
  r.endpoint = name.substr(0, underscore) + ":" + port;
  r.record = file.string();
  std::ifstream in(file);
  std::string secret_path, checkpoint_root, pid;
  std::getline(in, secret_path);
  std::getline(in, checkpoint_root);
  std::getline(in, pid);
  std::getline(in, r.state_dir);
  try {
    r.pid = pid.empty() ? 0 : std::stol(pid);
  } catch (const std::exception&) {
    r.pid = 0;
  }
  return r;
}

}  // namespace

std::vector<recorded_cluster> recorded_clusters() {
  std::vector<recorded_cluster> out;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator(cluster_records_dir(), ec)) {
    if (!entry.is_regular_file(ec)) continue;
    auto r = read_record(entry.path());
    if (r && coordinator_runs(r->pid)) out.push_back(*r);
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.endpoint < b.endpoint; });
  return out;
}

void forget_cluster(const std::string& host, int port) {
  const auto path = cluster_record_path(host, port);
  auto r = read_record(path);
  if (r && r->pid == static_cast<long>(::getpid())) std::filesystem::remove(path);
}

std::string resolve_coordinator(const std::string& given, const char* environment,
                                const std::vector<recorded_cluster>& recorded) {
  if (!given.empty()) return given;
  if (environment && *environment) return environment;
  if (recorded.size() == 1) return recorded.front().endpoint;
  if (recorded.empty())
    throw std::runtime_error(
        "no coordinator given and none runs on this machine: give --coordinator HOST:PORT, set "
        "GLAM_COORDINATOR=HOST:PORT, or start one with glam coordinator (it records itself under " +
        cluster_records_dir() + ")");
  std::string list;
  for (const auto& r : recorded) {
    list += "\n  " + r.endpoint;
    if (!r.state_dir.empty()) list += "  (state " + r.state_dir + ")";
    if (r.pid > 0) list += "  pid " + std::to_string(r.pid);
  }
  throw std::runtime_error(std::to_string(recorded.size()) + " coordinators run on this machine:" + list +
                           "\npick one with --coordinator HOST:PORT (or set GLAM_COORDINATOR)");
}

std::string resolve_coordinator(const std::string& given) {
  if (!given.empty()) return given;
  return resolve_coordinator(given, std::getenv("GLAM_COORDINATOR"), recorded_clusters());
}

}  // namespace glam
