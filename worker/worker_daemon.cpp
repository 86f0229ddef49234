#include "worker/worker_daemon.hpp"

#include <unistd.h>

#include <cstdio>

#include <caf/all.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/security.hpp"
#include "kernels/matmul.hpp"
#include "kernels/parallel.hpp"
#include "worker/worker_actor.hpp"

namespace glam {

int run_worker(const worker_daemon_options& o) {
  auto [chost, cport] = parse_endpoint(o.coordinator, "--coordinator");
  auto [host, port] = parse_endpoint(o.listen, "--listen");
  auto secret = find_client_secret(o.secret_file, chost, cport);
  // Logs go to stderr: stdout carries the one line scripts read.
  if (!spdlog::get("glam")) spdlog::set_default_logger(spdlog::stderr_color_mt("glam"));
  if (o.threads > 0) set_compute_threads(o.threads);
  block_termination_signals();
  runtime_options ro;
  runtime_config cfg(ro);
  caf::actor_system sys{cfg};
  worker_options wo;
  wo.name = o.name.empty() ? "worker-" + std::to_string(::getpid()) : o.name;
  wo.secret = secret;
  wo.listen_host = host;
  wo.heartbeat = o.heartbeat;
  wo.gflops = measure_sgemm_flops(1024, 0.3) / 1e9;
  // Publish first (the coordinator hands this address to peers), then register.
  auto self_actor = sys.spawn(worker_actor, wo);
  auto stop = [&] { caf::anon_send_exit(self_actor, caf::exit_reason::user_shutdown); };
  std::unique_ptr<front_door> door;
  try {
    door = publish_guarded(sys, self_actor, host, port);
  } catch (...) {
    stop();
    throw;
  }
  // The port is known only now (0 picks a free one): the actor learns it when it registers.
  wo.listen_port = static_cast<std::uint16_t>(door->port());
  auto coord = connect_to(sys, chost, cport);
  if (!coord) {
    stop();
    throw std::runtime_error("cannot connect to the coordinator at " + o.coordinator + ": " +
                             sys.render(coord.error()) +
                             " (is it running there?)");
  }
  result_msg r;
  {
    caf::scoped_actor self{sys};
    self->request(self_actor, std::chrono::seconds(15), register_atom::value, *coord, wo.listen_port)
        .receive([&](const result_msg& m) { r = m; },
                 [&](const caf::error& e) { r = {false, "no answer: " + sys.render(e)}; });
  }
  if (!r.ok) {
    stop();
    throw std::runtime_error("coordinator at " + o.coordinator + " refused worker " + wo.name + ": " + r.message);
  }
  std::printf("glam worker %s listening on %s:%u\n", wo.name.c_str(), host.c_str(),
              static_cast<unsigned>(wo.listen_port));
  std::fflush(stdout);
  if (wait_or_signal(sys, self_actor)) {
    spdlog::info("worker {}: termination signal; leaving", wo.name);
    caf::scoped_actor self{sys};
    self->request(self_actor, std::chrono::seconds(5), shutdown_atom::value)
        .receive([](const result_msg&) {}, [](const caf::error&) {});
    stop();
    return 0;
  }
  stop();
  throw std::runtime_error("worker " + wo.name + " lost the coordinator at " + o.coordinator);
}

}  // namespace glam
