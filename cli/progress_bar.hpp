#pragma once
// What `glam submit --wait` prints while a job trains: on a terminal one line redrawn in
// place (a bar, step/steps, loss, tokens/s, ETA), elsewhere a plain line per change that
// logs and scripts can read. The ETA comes from the steps committed over the last
// `eta_window` seconds. Header-only and free of I/O, so its tests need no terminal.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <deque>
#include <optional>
#include <string>
#include <utility>

namespace glam::cli {

struct job_progress_view {
  std::string id;
  std::string state;     // pending, running, finished, failed, stopped
  std::string activity;  // what a running job does now (computing, recovering, ...), may be empty
  std::int64_t step = 0;
  std::int64_t steps = 0;
  double loss = 0;
  double tokens_per_second = 0;
  std::optional<double> eta_seconds;
};

// "45s", "3m05s", "2h03m", "--" when unknown; days above 99 h read ">99h".
inline std::string format_duration(std::optional<double> seconds) {
  if (!seconds || !std::isfinite(*seconds) || *seconds < 0) return "--";
  const auto s = static_cast<std::int64_t>(std::llround(*seconds));
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%llds", static_cast<long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof buf, "%lldm%02llds", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  else if (s < 100 * 3600)
    std::snprintf(buf, sizeof buf, "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  else
    return ">99h";
  return buf;
}

inline std::string state_text(const job_progress_view& v) {
  return v.activity.empty() || v.activity == v.state ? v.state : v.state + " (" + v.activity + ")";
}

// For a log: "job tiny-1: running, step 120/1000, loss 3.4567, 1234 tokens/s, ETA 3m05s".
inline std::string progress_plain_line(const job_progress_view& v) {
  char buf[512];
  std::snprintf(buf, sizeof buf, "job %s: %s, step %lld/%lld, loss %.4f, %.0f tokens/s, ETA %s", v.id.c_str(),
                state_text(v).c_str(), static_cast<long long>(v.step), static_cast<long long>(v.steps), v.loss,
                v.tokens_per_second, format_duration(v.eta_seconds).c_str());
  return buf;
}

// The bar's columns on a terminal `width` columns wide: what the text (64 columns kept for
// it) leaves, 10 to 40, so that the bar does not jump as the numbers grow; 0 when too narrow.
inline int progress_bar_columns(int width) {
  const int room = width - 64;
  return room < 10 ? 0 : std::min(room, 40);
}

// For a terminal `width` columns wide: "[#######.......]  120/1000  loss 3.4567  1234 tok/s
// ETA 3m05s  running", cut to the width; without the bar on a terminal too narrow for it.
inline std::string progress_bar_line(const job_progress_view& v, int width) {
  char text[512];
  std::snprintf(text, sizeof text, "  %lld/%lld  loss %.4f  %.0f tok/s  ETA %s  %s", static_cast<long long>(v.step),
                static_cast<long long>(v.steps), v.loss, v.tokens_per_second, format_duration(v.eta_seconds).c_str(),
                state_text(v).c_str());
  const std::string tail = text;
  const auto fit = [width](std::string line) {
    if (static_cast<int>(line.size()) > width) line.resize(static_cast<std::size_t>(std::max(0, width)));
    return line;
  };
  const int bar = progress_bar_columns(width);
  if (bar == 0) return fit(tail.substr(2));
  const double done = v.steps > 0 ? std::clamp(double(v.step) / double(v.steps), 0.0, 1.0) : 0.0;
  const int filled = static_cast<int>(std::floor(done * bar));
  return fit("[" + std::string(static_cast<std::size_t>(filled), '#') +
             std::string(static_cast<std::size_t>(bar - filled), '.') + "]" + tail);
}

// Seconds left at the pace of the steps committed in the last `window` seconds.
class eta_estimator {
 public:
  explicit eta_estimator(double window = 30) : window_(window) {}

  // A look at the job at time t (seconds, any origin, not decreasing).
  void observe(double t, std::int64_t step) {
    // A rollback replays steps: the pace is measured from there again.
    if (!samples_.empty() && step < samples_.back().second) samples_.clear();
    samples_.emplace_back(t, step);
    while (samples_.size() > 2 && samples_.front().first < t - window_) samples_.pop_front();
  }

  std::optional<double> eta(std::int64_t steps) const {
    if (samples_.size() < 2) return std::nullopt;
    const auto& [t0, s0] = samples_.front();
    const auto& [t1, s1] = samples_.back();
    if (s1 >= steps) return 0.0;
    if (s1 <= s0 || t1 <= t0) return std::nullopt;
    return double(steps - s1) * (t1 - t0) / double(s1 - s0);
  }

 private:
  double window_;
  std::deque<std::pair<double, std::int64_t>> samples_;
};

}  // namespace glam::cli
