#include "cli/training_report.hpp"

#include <cmath>
#include <cstdio>

#include "configs/plan.hpp"
#include "model/metrics.hpp"

namespace glam::cli {

training_report::training_report(const config& c, double sgemm_flops)
    : cfg_(c),
      sgemm_flops_(sgemm_flops),
      flops_per_token_(double(make_plan(c, 1).flops_per_token_train)),
      print_every_(std::max<std::int64_t>(1, c.train.steps / 30)),
      start_(std::chrono::steady_clock::now()) {}

nlohmann::json training_report::record(const step_metrics& m, double seconds, std::optional<double> val_loss) {
  ++steps_;
  tokens_ += m.tokens;
  train_seconds_ += seconds;
  if (m.skipped) ++skipped_;
  if (!first_loss_) first_loss_ = m.loss.loss;
  last_loss_ = m.loss.loss;
  if (val_loss) last_val_ = *val_loss;

  const double tokens_per_second = seconds > 0 ? double(m.tokens) / seconds : 0;
  const double mfu = flops_per_token_ * tokens_per_second / sgemm_flops_;
  nlohmann::json j = step_metrics_json(m, seconds, flops_per_token_, sgemm_flops_, val_loss);

  if (m.skipped)
    std::printf("step %lld: gradients not finite, step skipped (%lld skipped so far)\n", (long long)m.step,
                (long long)skipped_);
  const bool last = m.step + 1 == cfg_.train.steps;
  if (m.step % print_every_ == 0 || last || val_loss) {
    const double avg = train_seconds_ / double(steps_);
    const double eta = avg * double(cfg_.train.steps - m.step - 1);
    std::printf("step %5lld  loss %.9g  aux %.9g  %.0f tok/s  MFU %.3f  ETA %.0fs", (long long)m.step,
                double(m.loss.loss), double(m.loss.aux), tokens_per_second, mfu, eta);
    if (val_loss) std::printf("  val_loss %.9g", *val_loss);
    std::printf("\n");
    std::fflush(stdout);
  }
  return j;
}

void training_report::print_summary() const {
  const double tps = train_seconds_ > 0 ? double(tokens_) / train_seconds_ : 0;
  std::printf("done: %lld steps (%lld skipped), %.0f tok/s, MFU %.3f", (long long)steps_, (long long)skipped_, tps,
              flops_per_token_ * tps / sgemm_flops_);
  if (first_loss_ && last_loss_) std::printf(", loss %.4f -> %.4f", double(*first_loss_), double(*last_loss_));
  if (last_val_) std::printf(", val_loss %.4f", *last_val_);
  std::printf("\n");
}

}  // namespace glam::cli
