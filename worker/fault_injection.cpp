#include "worker/fault_injection.hpp"

#include <thread>

#include <signal.h>

#include <stdexcept>

#include <spdlog/spdlog.h>

namespace glam {

namespace {

const char* phase_names[] = {"forward", "backward", "exchange", "apply", "snapshot", "checkpoint", "validation", "migration"};
const char* action_names[] = {"kill", "stop", "cut-peers", "cut-coordinator"};

template <std::size_t N>
int index_of(const char* (&names)[N], const std::string& word) {
  for (std::size_t i = 0; i < N; ++i)
    if (word == names[i]) return static_cast<int>(i);
  return -1;
}

template <std::size_t N>
std::string listed(const char* (&names)[N]) {
  std::string out;
  for (auto* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
  return out;
}

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace

fault_plan parse_fault(const std::string& spec) {
  const auto a = spec.find(':'), b = spec.rfind(':');
  if (a == std::string::npos || a == b)
    throw std::invalid_argument("--fault-at '" + spec + "' is not PHASE:STEP:ACTION (for example forward:5:kill)");
  fault_plan p;
  const int phase = index_of(phase_names, spec.substr(0, a));
  if (phase < 0) throw std::invalid_argument("--fault-at: phase '" + spec.substr(0, a) + "' is not one of " + listed(phase_names));
  const int action = index_of(action_names, spec.substr(b + 1));
  if (action < 0)
    throw std::invalid_argument("--fault-at: action '" + spec.substr(b + 1) + "' is not one of " + listed(action_names));
  const auto step = spec.substr(a + 1, b - a - 1);
  if (step == "*") {
    p.step = -1;
  } else {
    try {
      std::size_t used = 0;
      p.step = std::stoll(step, &used);
      if (used != step.size() || p.step < 0) throw std::invalid_argument("");
    } catch (...) {
      throw std::invalid_argument("--fault-at: step '" + step + "' is not a number >= 0 or *");
    }
  }
  p.phase = static_cast<fault_phase>(phase);
  p.action = static_cast<fault_action>(action);
  return p;
}

void fault_injector::at(fault_phase phase, std::int64_t step) {
  if (!plan_ || plan_->phase != phase || (plan_->step >= 0 && plan_->step != step) || struck_.exchange(true)) return;
  spdlog::warn("fault injection: {} at {} of step {}", action_names[static_cast<int>(plan_->action)],
               phase_names[static_cast<int>(phase)], step);
  switch (plan_->action) {
    case fault_action::kill: ::raise(SIGKILL); break;
    case fault_action::stop: ::raise(SIGSTOP); break;
    case fault_action::cut_peers:
    case fault_action::cut_coordinator:
      cut_until_ns_ = now_ns() + std::chrono::duration_cast<std::chrono::nanoseconds>(cut_for).count();
      break;
  }
}

void fault_injector::stretch(std::chrono::duration<double> took) const {
  if (slow_factor_ > 1) std::this_thread::sleep_for((slow_factor_ - 1) * took);
}

bool fault_injector::cut_now(fault_action a) const {
  return plan_ && plan_->action == a && now_ns() < cut_until_ns_.load();
}

}  // namespace glam
