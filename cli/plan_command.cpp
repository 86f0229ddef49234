// glam plan CONFIG [--workers N] [--json]: parameters, FLOPs per token and memory of a job,
// without touching data or devices (docs/plan.md says how each figure is counted).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"

namespace glam::cli {

namespace {

struct plan_options {
  std::string config_path;
  std::int64_t workers = 1;
  bool json = false;
};

void run_plan(const plan_options& o) {
  const config c = load_config(o.config_path);
  const plan_figures p = make_plan(c, o.workers);
  const std::string out = o.json ? plan_to_json(c, p).dump(2) + "\n" : plan_to_text(c, p);
  std::fputs(out.c_str(), stdout);
}

}  // namespace

void add_plan_command(CLI::App& app) {
  auto options = std::make_shared<plan_options>();
  CLI::App* cmd = app.add_subcommand(
      "plan", "Print a job's parameters, FLOPs per token and memory per unit and per worker");
  cmd->add_option("config", options->config_path, "the job's TOML file (see configs/)")
      ->required();
  cmd->add_option("--workers", options->workers,
                  "workers the shards and experts are spread over, evenly (default 1)")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1} << 20));
  cmd->add_flag("--json", options->json,
                "print one JSON object (params_total, params_activated, params_embedding, "
                "flops_per_token_train, flops_per_token_infer, memory, ...)");
  cmd->callback([options] { run_plan(*options); });
}

}  // namespace glam::cli
