#pragma once
// The training step split into the work of each logical unit (docs/runtime.md, "The training step on actors"), as
// plain functions the actor runtime calls message by message. The single-threaded
// reference (model/train_step.hpp) calls the same functions in the runtime's order, so
// the runtime reproduces it bitwise by construction as long as it (1) feeds each unit the
// same inputs, (2) sums dense gradients over shards in shard order (sum_dense_gradients),
// and (3) applies or skips on the same decision.
//
// One step, for S shards and E experts (MoE layers numbered 0..moe_layers-1):
//   shard.begin_step(step, tokens)
//   forward:  while (auto x = shard.forward_next())   // x->rows: [E, C, M] dispatch buffer
//               { each expert e: out_e = expert.forward(x->moe, s, rows of e)   // [C, M]
//                 shard.forward_resume(outputs [E, C, M]) }
//   backward: shard.start_backward()
//             while (auto g = shard.backward_next())  // g->rows: d expert outputs [E, C, M]
//               { each expert e: din_e = expert.backward(g->moe, s, rows of e)  // [C, M]
//                 shard.backward_resume(d inputs [E, C, M]) }
//             each expert, once all S shards' backward rows of layer m are in:
//               expert.finish_layer_backward(m)
//   reduce:   dense gradient = sum over shards in shard order (sum_dense_gradients)
//   decide:   finite = every shard's and expert's grads_finite(); apply or skip everywhere
//   apply:    shard.apply(summed dense gradient) / expert.apply()  (skip: nothing)
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "configs/config.hpp"
#include "model/optimizer.hpp"
#include "model/params.hpp"

namespace glam {

// Capacity C of one expert for one group (one shard's micro-batch).
index expert_capacity(const config& c);

// The step number units are given for validation batch i: their random streams are keyed by
// step, evaluation draws none, and negative numbers keep it apart from every training step.
inline std::int64_t validation_unit_step(std::int64_t batch) { return -1 - batch; }

// One MoE layer's exchange between a shard and the experts: rows in the [E, C, M]
// dispatch layout; the rows of expert e are [e·C, (e+1)·C).
struct moe_exchange {
  index moe = 0;  // MoE layer number (0-based, in block order)
  tensor rows;    // [E, C, M]
};

// A shard's parts of the global loss (docs/model.md, "The loss": the sum over shards is the loss).
struct loss_parts {
  double cross_entropy_sum = 0;  // Σ token CE over this shard's tokens
  double aux_sum = 0;            // Σ over MoE layers of this group's aux
  double z_sum = 0;              // Σ token z_loss·logsumexp² (weighted, not yet averaged)
  index tokens = 0;
  std::vector<index> tokens_per_expert;  // kept (token, expert) pairs, summed over MoE layers
  index dropped = 0;                     // choices dropped for capacity or by the policy
};

class shard_unit {
 public:
  shard_unit(const config& c, index shard, param_set dense_params);
  ~shard_unit();
  shard_unit(shard_unit&&) noexcept;
  shard_unit& operator=(shard_unit&&) noexcept;

  index shard() const;
  const param_set& params() const;
  param_set& params();
  const param_set& grads() const;
  optimizer_state& optimizer();

  // tokens: [B, T + 1] (inputs then targets shifted by one). train = false evaluates:
  // forward only, no routing randomness.
  void begin_step(std::int64_t step, std::vector<std::int32_t> tokens, bool train = true);
  std::optional<moe_exchange> forward_next();
  void forward_resume(const tensor& expert_outputs);
  const loss_parts& loss() const;  // valid once forward_next() returned nullopt

  void start_backward();
  std::optional<moe_exchange> backward_next();
  void backward_resume(const tensor& expert_input_grads);
  bool grads_finite() const;
  // Fault injection for tests: makes one gradient value NaN, so the step must be skipped.
  void poison_gradients();

  // Adafactor on this replica with the dense gradient summed over all shards; the learning
  // rate follows the schedule at this unit's applied-step count.
  void apply(const param_set& summed_grads);

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

class expert_unit {
 public:
  expert_unit(const config& c, index expert, param_set params);
  ~expert_unit();
  expert_unit(expert_unit&&) noexcept;
  expert_unit& operator=(expert_unit&&) noexcept;

  index expert() const;
  const param_set& params() const;
  param_set& params();
  const param_set& grads() const;
  optimizer_state& optimizer();

  void begin_step(std::int64_t step);
  // rows: [C, M], the rows shard `shard` dispatched to this expert in MoE layer `moe`.
  // Rows are independent, so the result does not depend on which shards came first.
  tensor forward(index moe, index shard, const float* rows);
  // d_out: [C, M]; returns the input gradient [C, M].
  tensor backward(index moe, index shard, const float* d_out);
  // Weight gradients of layer `moe` over the fixed [S·C, M] layout (shard-major); call once
  // every shard's backward rows of that layer are in.
  void finish_layer_backward(index moe);
  bool grads_finite() const;
  void apply();

 private:
  struct impl;
  std::unique_ptr<impl> p_;
};

// Σ over shards of their dense gradients, in shard order: ((g0 + g1) + g2) + … — the
// one order every runtime must use.
param_set sum_dense_gradients(const std::vector<const param_set*>& per_shard);

// The step's loss from the shards' parts (summed in shard order), as the metrics report it.
struct step_loss {
  float loss = 0;           // CE + aux_weight·aux (+ z)
  float cross_entropy = 0;  // mean token CE over the global batch
  float aux = 0;            // Σ_layers mean_over_groups(aux)
  float z = 0;
};
step_loss combine_losses(const config& c, const std::vector<loss_parts>& per_shard);

}  // namespace glam
