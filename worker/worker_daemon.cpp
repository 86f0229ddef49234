#include "worker/worker_daemon.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/cluster_discovery.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "actors/http_access.hpp"
#include "actors/security.hpp"
#include "configs/config.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "worker/worker_actor.hpp"
#include "worker/worker_http.hpp"

namespace glam {

int run_worker(const worker_daemon_options& o) {
  // Without --coordinator: $GLAM_COORDINATOR, else the one coordinator running on this machine.
  const auto coordinator = resolve_coordinator(o.coordinator);
  auto [chost, cport] = parse_endpoint(coordinator, "--coordinator");
  auto [host, port] = parse_endpoint(o.listen, "--listen");
  std::optional<std::pair<std::string, int>> http;
  if (!o.http.empty()) http = parse_endpoint(o.http, "--http");
  const auto auth = parse_http_auth(o.http_auth);
  auto secret = find_client_secret(o.secret_file, chost, cport);
  const auto name = o.name.empty() ? "worker-" + std::to_string(::getpid()) : o.name;
  std::optional<fault_plan> fault;
  const char* testing = std::getenv("GLAM_TESTING");
  const bool testing_allowed = testing && std::string(testing) == "1";
  if (!o.fault_at.empty()) {
    if (!testing_allowed) throw std::invalid_argument("--fault-at is a testing option: set GLAM_TESTING=1 to use it");
    fault = parse_fault(o.fault_at);
  }
  if (o.slow_factor != 1.0 && !testing_allowed)
    throw std::invalid_argument("--slow-factor is a testing option: set GLAM_TESTING=1 to use it");
  if (auto why = name_problem(name); !why.empty()) throw std::invalid_argument("--name '" + name + "': " + why);
  namespace fs = std::filesystem;
  const auto data_root = fs::absolute(o.data_root.empty() ? fs::current_path() : fs::path(o.data_root)).lexically_normal();
  const auto checkpoint_root = o.checkpoint_root.empty() ? recorded_checkpoint_root(chost, cport) : o.checkpoint_root;
  // Logs go to stderr: stdout carries the one line scripts read.
  if (!spdlog::get("glam")) spdlog::set_default_logger(spdlog::stderr_color_mt("glam"));
  if (o.threads > 0) set_compute_threads(o.threads);
  block_termination_signals();
  runtime_options ro;
  runtime_config cfg(ro);
  caf::actor_system sys{cfg};
  auto the_relay = std::make_shared<relay>(secret, o.encryption);
  worker_options wo;
  wo.name = name;
  wo.secret = secret;
  wo.listen_host = host;
  wo.heartbeat = o.heartbeat;
  wo.gflops = measure_sgemm_flops(1024, 0.3) / 1e9;
  wo.memory_limit = o.memory_limit > 0 ? o.memory_limit : std::int64_t{::sysconf(_SC_PHYS_PAGES)} * ::sysconf(_SC_PAGESIZE);
  wo.data_root = data_root.string();
  wo.checkpoint_root = checkpoint_root.empty() ? std::string() : fs::absolute(checkpoint_root).lexically_normal().string();
  wo.connector = spawn_connector(sys, *the_relay, wo.request_timeout);
  wo.coordinator_host = chost;
  wo.coordinator_port = cport;
  wo.coordinator_timeout = o.coordinator_timeout;
  wo.faults = std::make_shared<fault_injector>(fault, o.slow_factor);
  wo.relay = &the_relay->counters();
  // Publish first (the coordinator hands this address to peers), then register.
  auto self_actor = sys.spawn(worker_behavior, wo);
  auto stop = [&](int code) {
    exit_within(std::chrono::seconds(10), code);
    caf::scoped_actor self{sys};
    self->send_exit(self_actor, caf::exit_reason::user_shutdown);
    self->send_exit(wo.connector, caf::exit_reason::user_shutdown);
  };
  int bound = 0;
  try {
    bound = publish_behind_relay(sys, caf::actor_cast<caf::strong_actor_ptr>(self_actor), sys.message_types(self_actor),
                                 *the_relay, host, port);
  } catch (...) {
    stop(1);
    throw;
  }
  auto coord = connect_through(sys, wo.connector, chost, cport, wo.request_timeout);
  if (!coord) {
    stop(1);
    throw std::runtime_error("cannot connect to the coordinator at " + coordinator + ": " + error_text(coord.error()) +
                             (coord.error().category() == glam_error_category ? "" : " (is it running there?)"));
  }
  std::string refused;
  {
    caf::scoped_actor self{sys};
    self->request(self_actor, std::chrono::seconds(15), register_atom::value, caf::actor_cast<coordinator_actor>(*coord),
                  static_cast<std::uint16_t>(bound))
        .receive([&](const std::string&) {}, [&](const caf::error& e) { refused = error_text(e); });
  }
  if (!refused.empty()) {
    stop(1);
    throw std::runtime_error("coordinator at " + coordinator + " refused worker " + name + ": " + refused);
  }
  std::printf("glam worker %s listening on %s:%d\n", name.c_str(), host.c_str(), bound);
  std::unique_ptr<worker_http> metrics;
  if (http) {
    worker_http_options ho;
    ho.host = http->first;
    ho.port = http->second;
    ho.access = http_access::for_bind(http->first, auth, secret);
    try {
      metrics = std::make_unique<worker_http>(sys, self_actor, ho);
    } catch (...) {
      stop(1);
      throw;
    }
    std::printf("glam worker %s metrics on http://%s:%d/metrics\n", name.c_str(), metrics->host().c_str(),
                metrics->port());
  }
  std::fflush(stdout);
  caf::error ended;
  const bool signalled = wait_or_signal(sys, self_actor.address(), &ended);
  if (metrics) metrics->stop();
  if (signalled) {
    spdlog::info("worker {}: termination signal; leaving", name);
    caf::scoped_actor self{sys};
    self->request(self_actor, std::chrono::seconds(5), shutdown_atom::value)
        .receive([](const std::string&) {}, [](const caf::error&) {});
    stop(0);
    return 0;
  }
  if (!ended) {
    std::printf("glam worker %s drained\n", name.c_str());
    std::fflush(stdout);
    stop(0);
    return 0;
  }
  stop(1);
  throw std::runtime_error("worker " + name + " ended: " + error_text(ended) + " (coordinator " + coordinator + ")");
}

}  // namespace glam
