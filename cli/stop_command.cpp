// `glam stop [--coordinator HOST:PORT] JOB`
#include <cstdio>
#include <memory>

#include <caf/all.hpp>

#include "actors/cluster_discovery.hpp"
#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "cli/commands.hpp"

namespace glam::cli {

void add_stop_command(CLI::App& app) {
  auto coordinator = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  auto job = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("stop", "Stop a job");
  sub->add_option("--coordinator", *coordinator, coordinator_option_help);
  sub->add_option("job", *job, "The job id (as submit printed it)")->required();
  sub->add_option("--secret-file", *secret_file, "Cluster secret (default: the coordinator's, on this machine)");
  sub->callback([=] {
    client_connection conn(resolve_coordinator(*coordinator), *secret_file);
    caf::scoped_actor self{conn.system()};
    std::string said, refused;
    self->request(conn.server(), conn.timeout(), stop_atom::value, *job)
        .receive([&](const std::string& m) { said = m; }, [&](const caf::error& e) { refused = error_text(e); });
    if (!refused.empty()) throw std::runtime_error("stop: " + refused);
    std::printf("%s\n", said.c_str());
  });
}

}  // namespace glam::cli
