#pragma once
// The reference training step: S attention shards and E experts in one thread, calling
// the per-unit functions of units.hpp in the runtime's order. The actor runtime must
// reproduce its losses and parameters bitwise, whatever the placement.
#include <cstdint>
#include <optional>
#include <vector>

#include "configs/config.hpp"
#include "data/dataset.hpp"
#include "model/units.hpp"

namespace glam {

struct step_metrics {
  std::int64_t step = 0;
  step_loss loss;
  bool skipped = false;  // gradients held NaN/Inf: nothing was applied
  index tokens = 0;
  std::vector<index> tokens_per_expert;
  index dropped = 0;
};

// A training step's metrics from its shards' loss parts, given in shard order (the order
// of every sum). Shared by the reference trainer and the coordinator.
step_metrics combine_step(const config& c, std::int64_t step, const std::vector<loss_parts>& parts, bool applied);

// Where a step's tokens come from: the prepared data set, or (for benchmarks) a seeded
// synthetic stream. Both are pure functions of their arguments.
class token_source {
 public:
  virtual ~token_source() = default;
  // tokens [B, T + 1] of shard s for training step k / validation batch i.
  virtual void train_batch(std::int64_t step, index shard, std::int32_t* out) const = 0;
  virtual void validation_batch(index batch, index shard, std::int32_t* out) const = 0;
};

class dataset_source : public token_source {
 public:
  dataset_source(const config& c, const dataset& data) : cfg_(c), data_(data) {}
  void train_batch(std::int64_t step, index shard, std::int32_t* out) const override;
  void validation_batch(index batch, index shard, std::int32_t* out) const override;

 private:
  config cfg_;
  const dataset& data_;
};

// Uniform random tokens from (seed, step, shard): for benchmarks, where only the shapes
// matter (every expert computes its full capacity whatever the routing).
class synthetic_source : public token_source {
 public:
  explicit synthetic_source(const config& c) : cfg_(c) {}
  void train_batch(std::int64_t step, index shard, std::int32_t* out) const override;
  void validation_batch(index batch, index shard, std::int32_t* out) const override;

 private:
  config cfg_;
};

// The layout's units with their initial parameters (from the job seed).
std::vector<shard_unit> make_shards(const config& c);
std::vector<expert_unit> make_experts(const config& c);

class reference_trainer {
 public:
  reference_trainer(const config& c, const token_source& data);

  // One global step k: every shard's samples of step k, forward, backward, the dense
  // gradient summed in shard order, then Adafactor everywhere or (non-finite) nowhere.
  step_metrics train_step(std::int64_t step);

  // Mean token cross-entropy over `batches` validation batches per shard.
  double evaluate(index batches);

  // Fault injection for tests: poison one gradient value at step k (the step must be skipped).
  void inject_nonfinite_gradient_at(std::int64_t step) { poison_step_ = step; }

  const std::vector<shard_unit>& shards() const { return shards_; }
  const std::vector<expert_unit>& experts() const { return experts_; }
  std::vector<shard_unit>& shards() { return shards_; }
  std::vector<expert_unit>& experts() { return experts_; }
  const config& cfg() const { return cfg_; }

 private:
  // Runs the forward of every shard through the experts; train = false evaluates.
  void forward_all(std::int64_t step, const std::vector<std::vector<std::int32_t>>& batches, bool train);

  config cfg_;
  const token_source& data_;
  std::vector<shard_unit> shards_;
  std::vector<expert_unit> experts_;
  std::optional<std::int64_t> poison_step_;
};

}  // namespace glam
