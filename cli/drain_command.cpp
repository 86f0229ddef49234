// `glam drain [--coordinator HOST:PORT] WORKER`: moves the worker's units off at the next step
// boundary and releases it; prints "drained" once it is.
#include <cstdio>
#include <memory>

#include <caf/all.hpp>

#include "actors/cluster_discovery.hpp"
#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "cli/commands.hpp"

namespace glam::cli {

void add_drain_command(CLI::App& app) {
  auto coordinator = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  auto worker = std::make_shared<std::string>();
  auto timeout_s = std::make_shared<int>(600);
  auto* sub = app.add_subcommand("drain", "Move a worker's units off at the next step boundary and release it");
  sub->add_option("--coordinator", *coordinator, coordinator_option_help);
  sub->add_option("worker", *worker, "The worker's name (as glam status shows it)")->required();
  sub->add_option("--secret-file", *secret_file, "Cluster secret (default: the coordinator's, on this machine)");
  sub->add_option("--timeout", *timeout_s, "Give up waiting after this many seconds")->capture_default_str();
  sub->callback([=] {
    client_connection conn(resolve_coordinator(*coordinator), *secret_file);
    caf::scoped_actor self{conn.system()};
    std::string said, refused;
    self->request(conn.server(), std::chrono::seconds(*timeout_s), drain_atom::value, *worker)
        .receive([&](const std::string& m) { said = m; }, [&](const caf::error& e) { refused = error_text(e); });
    if (!refused.empty()) throw std::runtime_error("drain: " + refused);
    std::printf("%s\n", said.c_str());
  });
}

}  // namespace glam::cli
