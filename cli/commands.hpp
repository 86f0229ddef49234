#pragma once
// Each subcommand of `glam` lives in its own file under cli/ and registers itself here.
#include <string>

#include <CLI/CLI.hpp>

#include "actors/relay.hpp"

namespace glam::cli {

void add_plan_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_bench_command(CLI::App& app);
// `glam bench cluster`, under the bench command.
void add_bench_cluster_command(CLI::App& bench);
// `glam bench serve`, under the bench command.
void add_bench_serve_command(CLI::App& bench);
void add_coordinator_command(CLI::App& app);
void add_worker_command(CLI::App& app);
void add_submit_command(CLI::App& app);
void add_status_command(CLI::App& app);
void add_stop_command(CLI::App& app);
void add_drain_command(CLI::App& app);
// `glam chaos`: a local cluster under random faults against the undisturbed run.
void add_chaos_command(CLI::App& app);
// `glam bench recovery`, under the bench command.
void add_bench_recovery_command(CLI::App& bench);
// `glam bench placement`, under the bench command.
void add_bench_placement_command(CLI::App& bench);

// The clients' --coordinator: optional where actors/cluster_discovery.hpp finds the cluster.
inline constexpr const char* coordinator_option_help =
    "HOST:PORT of the coordinator (default: $GLAM_COORDINATOR, else the one running on this machine)";

// "load 1.23": the 1-minute load average, printed with every benchmark figure.
std::string load_average();

// The daemons' --encryption auto|always (auto: TLS on connections that leave loopback).
void add_encryption_option(CLI::App& sub, std::string& value);
relay_encryption parse_encryption(const std::string& value);
// The daemons' --http HOST:PORT and --http-auth auto|token (what: what the port serves).
void add_http_options(CLI::App& sub, std::string& http, std::string& auth, const std::string& what);

}  // namespace glam::cli
