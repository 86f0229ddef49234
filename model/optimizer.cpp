#include "model/optimizer.hpp"

#include <stdexcept>

#include "kernels/check.hpp"

namespace glam {

void optimizer_state::init(const param_set& params) {
  applied_steps = 0;
  slots.clear();
  for (const auto& p : params.items) {
    GLAM_CHECK(p.value.rank() == 2, "every parameter is a 2-D matrix: " + p.name);
    slots.emplace_back(p.value.dim(0), p.value.dim(1));
  }
}

param_set optimizer_state::to_tensors() const {
  param_set out;
  auto& self = const_cast<optimizer_state&>(*this);
  for (std::size_t i = 0; i < slots.size(); ++i)
    for (const auto& b : self.slots[i].buffers()) {
      out.add(std::to_string(i) + "." + b.name, {1, b.size});
      std::copy(b.data, b.data + b.size, out.items.back().value.ptr());
    }
  return out;
}

void optimizer_state::from_tensors(const param_set& params, const param_set& state) {
  init(params);
  std::size_t next = 0;
  for (auto& slot : slots)
    for (const auto& b : slot.buffers()) {
      if (next >= state.items.size() || state.items[next].value.size() != b.size)
        throw std::runtime_error("optimizer state does not match the parameters (buffer " + std::to_string(next) + ")");
      const tensor& t = state.items[next++].value;
      std::copy(t.data.begin(), t.data.end(), b.data);
    }
  if (next != state.items.size()) throw std::runtime_error("optimizer state has more buffers than the parameters need");
}

double lr_multiplier(const std::string& name, const config& c) {
  static const std::string gate_suffix = ".gate";
  const bool gate = name.size() > gate_suffix.size() &&
                    name.compare(name.size() - gate_suffix.size(), gate_suffix.size(), gate_suffix) == 0;
  return gate ? c.moe.gate_lr_scale : 1.0;
}

void adafactor_apply(param_set& params, const param_set& grads, optimizer_state& opt, const config& c) {
  GLAM_CHECK(params.items.size() == grads.items.size() && params.items.size() == opt.slots.size(),
             "parameters, gradients and optimizer state have the same layout");
  const double lr = rsqrt_schedule(opt.applied_steps, c.train.warmup, c.train.lr_scale);
  for (std::size_t i = 0; i < params.items.size(); ++i) {
    tensor& p = params.items[i].value;
    const tensor& g = grads.items[i].value;
    GLAM_CHECK(p.same_shape(g), "gradient shape of " + params.items[i].name);
    opt.slots[i].steps = opt.applied_steps;
    // x · 1.0 == x exactly, so the default multiplier leaves every bit as it was.
    adafactor_update(p.ptr(), g.ptr(), p.dim(0), p.dim(1), opt.slots[i], lr * lr_multiplier(params.items[i].name, c));
  }
  ++opt.applied_steps;
}

}  // namespace glam
