#pragma once
// Each subcommand of `glam` lives in its own file under cli/ and registers itself here.
#include <CLI/CLI.hpp>

namespace glam::cli {

void add_plan_command(CLI::App& app);
void add_data_command(CLI::App& app);
void add_train_command(CLI::App& app);
void add_generate_command(CLI::App& app);
void add_bench_command(CLI::App& app);
// `glam bench cluster`, under the bench command.
void add_bench_cluster_command(CLI::App& bench);
void add_coordinator_command(CLI::App& app);
void add_worker_command(CLI::App& app);
void add_submit_command(CLI::App& app);
void add_status_command(CLI::App& app);
void add_stop_command(CLI::App& app);

}  // namespace glam::cli
