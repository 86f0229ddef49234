#pragma once
// The measured load of a running job (docs/placement.md): per committed step, each worker's
// busy seconds (the kernel seconds of its unit actors, summed: they take turns on its cores)
// and the tokens the router sent to each expert, averaged over the last `window` steps.
// Plain class: the coordinator feeds it every committed step of the current placement.
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

namespace glam {

struct step_load {
  std::map<std::string, double> worker_seconds;  // busy seconds of each worker hosting units
  std::vector<std::int64_t> routed;               // choices each expert kept (tokens_per_expert: at most its capacity)
};

class load_monitor {
 public:
  explicit load_monitor(std::int64_t window) : window_(window < 1 ? 1 : window) {}

  void add(step_load s);
  // Steps in the window (at most `window`).
  std::int64_t steps() const { return static_cast<std::int64_t>(steps_.size()); }
  bool full() const { return steps() == window_; }

  // Mean busy seconds per step of each worker over the window.
  std::map<std::string, double> worker_seconds() const;
  // The busiest worker's mean: what sets the pace of a step.
  double busiest_seconds() const;
  // Mean over max of the workers' busy seconds (1: perfectly even; 0 when nothing measured).
  double balancedness() const;
  // Each expert's share of the routed tokens over the window (they sum to 1).
  std::vector<double> routed_share() const;

 private:
  std::int64_t window_;
  std::deque<step_load> steps_;
};

}  // namespace glam
