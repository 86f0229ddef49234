#pragma once
// Progress lines and per-step metrics of a training run, shared by `glam train` and the
// runtime's progress display.
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "configs/config.hpp"
#include "model/train_step.hpp"

namespace glam::cli {

class training_report {
 public:
  training_report(const config& c, double sgemm_flops);

  double sgemm_flops() const { return sgemm_flops_; }
  // Records one step: prints a progress line every few steps (and on evaluation) and
  // returns the step's metrics object.
  nlohmann::json record(const step_metrics& m, double seconds, std::optional<double> val_loss);
  void print_summary() const;

 private:
  config cfg_;
  double sgemm_flops_;
  double flops_per_token_;
  std::int64_t print_every_;
  std::chrono::steady_clock::time_point start_;
  double train_seconds_ = 0;
  std::int64_t tokens_ = 0, steps_ = 0, skipped_ = 0;
  std::optional<float> first_loss_, last_loss_;
  std::optional<double> last_val_;
};

}  // namespace glam::cli
