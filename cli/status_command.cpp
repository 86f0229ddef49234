// `glam status [--coordinator HOST:PORT] [--json | --dashboard-url]`
#include <cstdio>
#include <map>
#include <memory>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/cluster_discovery.hpp"
#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "actors/http_access.hpp"
#include "actors/runtime_config.hpp"
#include "cli/commands.hpp"

namespace glam::cli {

namespace {

// "12 unauthenticated, 3 stale" (the counts that are not zero), or "none".
std::string refusals_text(const nlohmann::json& counts) {
  std::string out;
  for (const auto& [what, n] : counts.items())
    if (n.get<std::int64_t>() != 0) out += (out.empty() ? "" : ", ") + std::to_string(n.get<std::int64_t>()) + " " + what;
  return out.empty() ? "none" : out;
}

void print_human(const nlohmann::json& s) {
  const auto& c = s["coordinator"];
  std::printf("coordinator %s  epoch %lld  refused: %s%s\n", c["listen"].get<std::string>().c_str(),
              static_cast<long long>(c["epoch"].get<std::int64_t>()), refusals_text(c["refused"]).c_str(),
              c.contains("relay_refused") ? (", relay " + refusals_text(c["relay_refused"])).c_str() : "");
  if (c.contains("http"))
    std::printf("dashboard and /metrics on http://%s/ (glam status --dashboard-url gives the URL with its token)\n",
                c["http"].get<std::string>().c_str());
  std::printf("%-16s %-22s %12s %14s %14s %10s  %s\n", "WORKER", "ADDRESS", "TOKENS", "BYTES SENT", "BYTES RECV",
              "RSS MiB", "UNITS");
  for (const auto& w : s["workers"]) {
    std::string units;
    for (const auto& u : w["units"]) units += (units.empty() ? "" : " ") + u.get<std::string>();
    std::printf("%-16s %-22s %12lld %14lld %14lld %10.1f  %s\n", w["name"].get<std::string>().c_str(),
                w["address"].get<std::string>().c_str(),
                static_cast<long long>(w["tokens_computed"].get<std::int64_t>()),
                static_cast<long long>(w["bytes_sent"].get<std::int64_t>()),
                static_cast<long long>(w["bytes_received"].get<std::int64_t>()),
                static_cast<double>(w["memory_bytes"].get<std::int64_t>()) / (1 << 20), units.c_str());
  }
  for (const auto& w : s["workers"]) {
    const auto refused = refusals_text(w["refused"]), relay = refusals_text(w["relay_refused"]);
    if (refused != "none" || relay != "none")
      std::printf("worker %s refused: %s; relay %s\n", w["name"].get<std::string>().c_str(), refused.c_str(),
                  relay.c_str());
  }
  // Serving sessions (docs/serving.md, "The actor backend"): where their units are.
  if (s.contains("sessions"))
    for (const auto& x : s["sessions"]) {
      std::map<std::string, std::string> by_worker;
      for (const auto& [unit, worker] : x["units"].items())
        by_worker[worker.get<std::string>()] += (by_worker[worker.get<std::string>()].empty() ? "" : " ") + unit;
      std::string where;
      for (const auto& [worker, units] : by_worker) where += "  " + worker + " [" + units + "]";
      std::printf("session %s  %s%s%s\n", x["id"].get<std::string>().c_str(), x["checkpoint"].get<std::string>().c_str(),
                  where.c_str(), x["loading"].empty() ? "" : "  (loading)");
    }
  for (const auto& j : s["jobs"]) {
    const auto why = j["error"].get<std::string>() + j["waiting"].get<std::string>();
    // What a running job does now (computing, recovering, migrating, ...) and its epoch.
    std::string state = j["state"].get<std::string>();
    if (j.contains("activity") && !j["activity"].get<std::string>().empty())
      state += " (" + j["activity"].get<std::string>() + ")";
    if (j.contains("epoch")) state += "  epoch " + std::to_string(j["epoch"].get<std::int64_t>());
    std::printf("job %s  %s  step %lld/%lld  loss %.4f  %.0f tokens/s%s%s\n", j["id"].get<std::string>().c_str(),
                state.c_str(), static_cast<long long>(j["step"].get<std::int64_t>()),
                static_cast<long long>(j["steps"].get<std::int64_t>()), j["loss"].get<double>(),
                j["tokens_per_s"].get<double>(), why.empty() ? "" : "  ", why.c_str());
  }
}

// The dashboard's address with the access token, from the coordinator's status.
std::string dashboard_url(const nlohmann::json& s, const std::string& coordinator, const std::string& secret) {
  const auto http = s["coordinator"].value("http", std::string());
  if (http.empty())
    throw std::runtime_error("the coordinator at " + coordinator +
                             " serves no dashboard: start it with --http HOST:PORT (for example --http 127.0.0.1:8080)");
  auto [host, port] = parse_endpoint(http, "the coordinator's --http");
  // Bound to every address: reach it where this client reached the coordinator.
  if (host == "0.0.0.0" || host == "::" || host == "[::]") host = parse_endpoint(coordinator, "--coordinator").first;
  return "http://" + host + ":" + std::to_string(port) + "/?token=" + http_access_token(secret);
}

}  // namespace

void add_status_command(CLI::App& app) {
  auto coordinator = std::make_shared<std::string>();
  auto secret_file = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto url = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand("status", "Show the cluster's workers, their units and counters, and the jobs");
  sub->add_option("--coordinator", *coordinator, coordinator_option_help);
  auto* json_flag = sub->add_flag("--json", *json, "Print JSON");
  sub->add_flag("--dashboard-url", *url, "Print the dashboard's URL with its access token (glam coordinator --http)")
      ->excludes(json_flag);
  sub->add_option("--secret-file", *secret_file, "Cluster secret (default: the coordinator's, on this machine)");
  sub->callback([=] {
    const auto endpoint = resolve_coordinator(*coordinator);
    client_connection conn(endpoint, *secret_file);
    caf::scoped_actor self{conn.system()};
    std::string text, problem;
    self->request(conn.server(), conn.timeout(), status_atom::value)
        .receive([&](const std::string& s) { text = s; },
                 [&](const caf::error& e) { problem = error_text(e); });
    if (!problem.empty()) throw std::runtime_error("status: " + problem);
    if (*url)
      std::printf("%s\n", dashboard_url(nlohmann::json::parse(text), endpoint, conn.secret()).c_str());
    else if (*json)
      std::printf("%s\n", text.c_str());
    else
      print_human(nlohmann::json::parse(text));
  });
}

}  // namespace glam::cli
