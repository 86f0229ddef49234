// glam: train and serve GLaM-style Mixture-of-Experts models on actors.
#include <cstdio>
#include <exception>

#include "cli/commands.hpp"
#include "kernels/matmul.hpp"

int main(int argc, char** argv) {
  // BLIS picks its kernel set once, from the environment: do it before any thread starts.
  glam::blis_configuration();
  CLI::App app{"glam: train and serve GLaM-style Mixture-of-Experts language models on actors"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "glam 0.1.0");
  glam::cli::add_plan_command(app);
  glam::cli::add_data_command(app);
  glam::cli::add_train_command(app);
  glam::cli::add_generate_command(app);
  glam::cli::add_serve_command(app);
  glam::cli::add_bench_command(app);
  glam::cli::add_bench_cluster_command(*app.get_subcommand("bench"));
  glam::cli::add_bench_serve_command(*app.get_subcommand("bench"));
  glam::cli::add_bench_recovery_command(*app.get_subcommand("bench"));
  glam::cli::add_bench_placement_command(*app.get_subcommand("bench"));
  glam::cli::add_coordinator_command(app);
  glam::cli::add_worker_command(app);
  glam::cli::add_submit_command(app);
  glam::cli::add_status_command(app);
  glam::cli::add_stop_command(app);
  glam::cli::add_drain_command(app);
  glam::cli::add_chaos_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "glam: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
