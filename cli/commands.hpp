#pragma once
// Each subcommand of `glam` lives in its own file under cli/ and registers itself here.
#include <CLI/CLI.hpp>

namespace glam::cli {

void add_plan_command(CLI::App& app);
void add_data_command(CLI::App& app);

}  // namespace glam::cli
