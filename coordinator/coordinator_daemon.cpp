#include "coordinator/coordinator_daemon.hpp"

#include <cstdio>
#include <filesystem>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/daemon.hpp"
#include "actors/security.hpp"
#include "coordinator/coordinator_actor.hpp"

namespace glam {

int run_coordinator(const coordinator_daemon_options& o) {
  if (o.state_dir.empty()) throw std::invalid_argument("--state is required: a directory for jobs and the secret");
  auto [host, port] = parse_endpoint(o.listen, "--listen");
  std::error_code ec;
  std::filesystem::create_directories(o.state_dir, ec);
  if (ec) throw std::runtime_error("cannot create --state " + o.state_dir + ": " + ec.message());
  auto secret_path = o.secret_file.empty() ? o.state_dir + "/secret" : o.secret_file;
  auto secret = o.secret_file.empty() ? create_or_read_secret(secret_path) : read_secret_file(secret_path);
  // Logs go to stderr: stdout carries the one line scripts read.
  if (!spdlog::get("glam")) spdlog::set_default_logger(spdlog::stderr_color_mt("glam"));
  block_termination_signals();
  runtime_options ro;
  runtime_config cfg(ro);
  caf::actor_system sys{cfg};
  coordinator_options co;
  co.state_dir = o.state_dir;
  co.secret = secret;
  co.heartbeat_timeout = o.heartbeat_timeout;
  co.random_placement_seed = o.random_placement_seed;
  co.listen = host;
  co.door = std::make_shared<std::unique_ptr<front_door>>();
  auto coord = sys.spawn(coordinator_actor, co);
  try {
    *co.door = publish_guarded(sys, coord, host, port);
  } catch (...) {
    caf::anon_send_exit(coord, caf::exit_reason::user_shutdown);
    throw;
  }
  auto bound = (*co.door)->port();
  record_secret_location(host, bound, secret_path);
  spdlog::info("coordinator listening on {}:{}, state in {}", host, bound, o.state_dir);
  std::printf("glam coordinator listening on %s:%u\n", host.c_str(), static_cast<unsigned>(bound));
  std::fflush(stdout);
  if (wait_or_signal(sys, coord)) {
    spdlog::info("coordinator: termination signal; stopping");
    caf::scoped_actor self{sys};
    self->request(coord, std::chrono::seconds(10), shutdown_atom::value)
        .receive([](const result_msg&) {}, [](const caf::error&) {});
  }
  caf::anon_send_exit(coord, caf::exit_reason::user_shutdown);
  return 0;
}

}  // namespace glam
