#include "coordinator/coordinator_daemon.hpp"

#include <cstdio>
#include <filesystem>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/cluster_discovery.hpp"
#include "actors/daemon.hpp"
#include "actors/http_access.hpp"
#include "actors/security.hpp"
#include "coordinator/coordinator_actor.hpp"
#include "coordinator/coordinator_http.hpp"

namespace glam {

int run_coordinator(const coordinator_daemon_options& o) {
  if (o.state_dir.empty()) throw std::invalid_argument("--state is required: a directory for jobs and the secret");
  auto [host, port] = parse_endpoint(o.listen, "--listen");
  std::optional<std::pair<std::string, int>> http;
  if (!o.http.empty()) http = parse_endpoint(o.http, "--http");
  const auto auth = parse_http_auth(o.http_auth);
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (ec) throw std::runtime_error("cannot create --state " + o.state_dir + ": " + ec.message());
  auto secret_path = o.secret_file.empty() ? o.state_dir + "/secret" : o.secret_file;
  auto secret = o.secret_file.empty() ? create_or_read_secret(secret_path) : read_secret_file(secret_path);
  const auto checkpoint_root = std::filesystem::absolute(
      o.checkpoint_root.empty() ? o.state_dir + "/checkpoints" : o.checkpoint_root).lexically_normal().string();
  // Logs go to stderr: stdout carries the one line scripts read.
  if (!spdlog::get("glam")) spdlog::set_default_logger(spdlog::stderr_color_mt("glam"));
  block_termination_signals();
  runtime_options ro;
  runtime_config cfg(ro);
  caf::actor_system sys{cfg};
  auto the_relay = std::make_shared<relay>(secret, o.encryption);
  coordinator_options co;
  co.state_dir = o.state_dir;
  co.secret = secret;
  co.checkpoint_root = checkpoint_root;
  co.heartbeat_timeout = o.heartbeat_timeout;
  co.step_timeout = o.step_timeout;
  co.min_round = o.min_round;
  co.random_placement_seed = o.random_placement_seed;
  co.listen = host;
  co.daemon_relay = the_relay;
  co.listen_port = std::make_shared<std::atomic<int>>(0);
  co.http_port = std::make_shared<std::atomic<int>>(0);
  if (http) co.http_host = http->first;
  auto coord = sys.spawn(coordinator_behavior, co);
  auto stop = [&](int code) {
    exit_within(std::chrono::seconds(10), code);
    caf::scoped_actor self{sys};
    self->send_exit(coord, caf::exit_reason::user_shutdown);
  };
  int bound = 0;
  try {
    bound = publish_behind_relay(sys, caf::actor_cast<caf::strong_actor_ptr>(coord), sys.message_types(coord),
                                 *the_relay, host, port);
  } catch (...) {
    stop(1);
    throw;
  }
  co.listen_port->store(bound);
  // The dashboard and /metrics ask the coordinator actor for everything they show.
  std::unique_ptr<coordinator_http> dashboard;
  if (http) {
    coordinator_http_options ho;
    ho.host = http->first;
    ho.port = http->second;
    ho.access = http_access::for_bind(http->first, auth, secret);
    ho.state_dir = o.state_dir;
    try {
      dashboard = std::make_unique<coordinator_http>(sys, coord, ho);
    } catch (...) {
      stop(1);
      throw;
    }
    co.http_port->store(dashboard->port());
    spdlog::info("coordinator: dashboard and /metrics on http://{}:{}/ ({})", dashboard->host(), dashboard->port(),
                 ho.access.needs_token ? "the token needed: glam status --dashboard-url" : "loopback, no token");
    std::printf("glam coordinator dashboard on http://%s:%d/\n", dashboard->host().c_str(), dashboard->port());
  }
  record_cluster(host, bound, secret_path, checkpoint_root, std::filesystem::absolute(o.state_dir).string());
  spdlog::info("coordinator listening on {}:{}, state in {}", host, bound, o.state_dir);
  std::printf("glam coordinator listening on %s:%d\n", host.c_str(), bound);
  std::fflush(stdout);
  caf::error ended;
  const bool signalled = wait_or_signal(sys, coord.address(), &ended);
  // No more HTTP requests reach the actor once it stops; clients stop finding this cluster.
  if (dashboard) dashboard->stop();
  forget_cluster(host, bound);
  if (signalled) {
    spdlog::info("coordinator: termination signal; stopping");
    caf::scoped_actor self{sys};
    // A checkpoint being written is finished first, bounded by the round deadline.
    self->request(coord, co.step_timeout + std::chrono::seconds(5), shutdown_atom::value)
        .receive([](const std::string&) {}, [](const caf::error&) {});
    stop(0);
    return 0;
  }
  // The coordinator actor ended without being told to: say why and fail.
  spdlog::error("coordinator: the coordinator actor ended: {}", sys.render(ended));
  stop(1);
  return 1;
}

}  // namespace glam
