#pragma once
// Faults at named points, for the failure-injection suite (docs/fault-tolerance.md):
// `glam worker --fault-at PHASE:STEP:ACTION`, refused unless GLAM_TESTING=1. The first time
// the worker reaches PHASE of STEP it kills or stops its own process, or cuts itself off
// from its peers or from the coordinator for a while (a partition). Plain class, shared by
// the worker actor and its unit actors.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace glam {

// validation: STEP is the validation batch; migration: the step the units restore to;
// checkpoint: the checkpoint's step; the others: the training step. STEP * is any step.
enum class fault_phase { forward, backward, exchange, apply, snapshot, checkpoint, validation, migration };
enum class fault_action { kill, stop, cut_peers, cut_coordinator };

struct fault_plan {
  fault_phase phase = fault_phase::forward;
  std::int64_t step = 0;  // -1: any
  fault_action action = fault_action::kill;
};

// "forward:5:kill"; throws std::invalid_argument naming the part that is wrong and what is
// allowed.
fault_plan parse_fault(const std::string& spec);

class fault_injector {
 public:
  // How long a cut lasts.
  static constexpr std::chrono::milliseconds cut_for{4000};

  explicit fault_injector(std::optional<fault_plan> plan = std::nullopt, double slow_factor = 1)
      : plan_(plan), slow_factor_(slow_factor) {}
  // The worker reached `phase` of `step`: the fault strikes when it is the planned one (once).
  void at(fault_phase phase, std::int64_t step);
  bool peers_cut() const { return cut_now(fault_action::cut_peers); }
  bool coordinator_cut() const { return cut_now(fault_action::cut_coordinator); }
  // A slower machine: after kernels that took `took`, waits (slow_factor - 1) times as long.
  void stretch(std::chrono::duration<double> took) const;

 private:
  bool cut_now(fault_action a) const;
  std::optional<fault_plan> plan_;
  double slow_factor_ = 1;
  std::atomic<bool> struck_{false};
  std::atomic<std::int64_t> cut_until_ns_{0};
};

}  // namespace glam
