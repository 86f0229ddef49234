// `glam submit [--coordinator HOST:PORT] JOB.toml [--wait]`: prints the job id; with --wait
// shows progress (a bar on a terminal, plain lines elsewhere) and exits 0 when the job
// finishes, non-zero with the reason otherwise.
#include <sys/ioctl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <thread>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster_discovery.hpp"
#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "cli/commands.hpp"
#include "cli/progress_bar.hpp"
#include "configs/config.hpp"

namespace glam::cli {

namespace {

struct submit_options {
  std::string coordinator;
  std::string job_file;
  std::string secret_file;
  bool wait = false;
  int timeout_s = 0;
};

void run_submit(const submit_options& o) {
  // Malformed job files are refused here, with the parser's message naming the key.
  auto c = load_config(o.job_file);
  std::ifstream in(o.job_file);
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().size() > max_job_file_bytes)
    throw std::runtime_error(o.job_file + " has " + std::to_string(text.str().size()) +
                             " bytes; a job file has at most " + std::to_string(max_job_file_bytes));
  client_connection conn(resolve_coordinator(o.coordinator), o.secret_file);
  caf::scoped_actor self{conn.system()};
  std::string id, refused;
  self->request(conn.server(), conn.timeout(), submit_atom::value, text.str(), o.job_file)
      .receive([&](const std::string& m) { id = m; }, [&](const caf::error& e) { refused = error_text(e); });
  if (!refused.empty()) throw std::runtime_error("submit refused: " + refused);
  std::printf("%s\n", id.c_str());
  std::fflush(stdout);
  if (!o.wait) return;
  // A terminal gets one line redrawn in place; a log or a pipe gets a line per change.
  const bool terminal = ::isatty(STDERR_FILENO) == 1;
  auto width = [] {
    winsize ws{};
    return ::ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0 ? int(ws.ws_col) : 80;
  };
  std::string last_plain;
  bool bar_shown = false;
  auto end_bar = [&] {
    if (bar_shown) std::fputc('\n', stderr);
    bar_shown = false;
  };
  eta_estimator eta;
  const auto start = std::chrono::steady_clock::now();
  for (;;) {
    std::string js;
    std::string problem;
    self->request(conn.server(), conn.timeout(), job_status_atom::value, id)
        .receive([&](const std::string& s) { js = s; },
                 [&](const caf::error& e) { problem = error_text(e); });
    if (!problem.empty()) {
      end_bar();
      throw std::runtime_error("lost the coordinator while waiting for job " + id + ": " + problem);
    }
    auto j = nlohmann::json::parse(js);
    if (j.empty()) {
      end_bar();
      throw std::runtime_error("the coordinator no longer knows job " + id);
    }
    job_progress_view v;
    v.id = id;
    v.state = j["state"].get<std::string>();
    v.step = j["step"].get<std::int64_t>();
    v.steps = j["steps"].get<std::int64_t>();
    v.loss = j["loss"].get<double>();
    v.tokens_per_second = j["tokens_per_s"].get<double>();
    const double now = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (v.state == "running") eta.observe(now, v.step);
    v.eta_seconds = v.state == "finished" ? std::optional<double>(0.0) : eta.eta(v.steps);
    if (terminal) {
      std::fprintf(stderr, "\r\x1b[2K%s", progress_bar_line(v, width() - 1).c_str());
      std::fflush(stderr);
      bar_shown = true;
    } else {
      // A line when the state or the step changes (not when only the ETA does).
      auto quiet = v;
      quiet.eta_seconds.reset();
      const auto key = progress_plain_line(quiet);
      if (key != last_plain) {
        std::fprintf(stderr, "%s\n", progress_plain_line(v).c_str());
        last_plain = key;
      }
    }
    if (v.state == "finished") {
      end_bar();
      return;
    }
    if (v.state == "failed" || v.state == "stopped") {
      end_bar();
      throw std::runtime_error("job " + id + " " + v.state + ": " + j["error"].get<std::string>());
    }
    if (o.timeout_s > 0 && std::chrono::steady_clock::now() - start > std::chrono::seconds(o.timeout_s)) {
      end_bar();
      throw std::runtime_error("job " + id + " not finished after --timeout " + std::to_string(o.timeout_s) + " s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
}

}  // namespace

void add_submit_command(CLI::App& app) {
  auto o = std::make_shared<submit_options>();
  auto* sub = app.add_subcommand("submit", "Submit a job (its config TOML) to a cluster");
  sub->add_option("--coordinator", o->coordinator, coordinator_option_help);
  sub->add_option("job", o->job_file, "The job's config TOML")->required();
  sub->add_flag("--wait", o->wait, "Show progress; exit 0 when the job finishes, non-zero when it fails");
  sub->add_option("--timeout", o->timeout_s, "With --wait: give up after this many seconds (0: never)");
  sub->add_option("--secret-file", o->secret_file, "Cluster secret (default: the coordinator's, on this machine)");
  sub->callback([o] { run_submit(*o); });
}

}  // namespace glam::cli
