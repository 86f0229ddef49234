#pragma once
// Adafactor over a unit's parameter set (kernels/adafactor.hpp does one matrix). A unit's
// optimizer state is one adafactor_state per parameter, in the parameter set's order, and
// the count of applied steps (a skipped step does not advance it).
#include <cstdint>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "kernels/adafactor.hpp"
#include "model/params.hpp"

namespace glam {

struct optimizer_state {
  std::int64_t applied_steps = 0;
  std::vector<adafactor_state> slots;  // one per parameter

  void init(const param_set& params);
  // The state as named tensors (for checkpoints and unit migration) and back.
  param_set to_tensors() const;
  void from_tensors(const param_set& params, const param_set& state);
};

// The factor on the learning rate of the parameter named `name`: moe.gate_lr_scale for a
// gate matrix (the router, "l<n>.gate"), 1 for every other parameter.
double lr_multiplier(const std::string& name, const config& c);

// One Adafactor step on every parameter, at lr = rsqrt schedule of the applied-step count
// (train.lr_scale, train.warmup) times the parameter's lr_multiplier.
void adafactor_apply(param_set& params, const param_set& grads, optimizer_state& opt, const config& c);

}  // namespace glam
