#include "model/train_step.hpp"

#include <limits>

#include "kernels/random.hpp"

namespace glam {

std::vector<shard_unit> make_shards(const config& c) {
  std::vector<shard_unit> shards;
  for (index s = 0; s < c.cluster.shards; ++s) shards.emplace_back(c, s, init_dense_params(c.model, c.train.seed));
  return shards;
}

std::vector<expert_unit> make_experts(const config& c) {
  std::vector<expert_unit> experts;
  if (c.model.moe_as_dense_relu) return experts;
  for (index e = 0; e < c.model.experts; ++e)
    experts.emplace_back(c, e, init_expert_params(c.model, e, c.train.seed));
  return experts;
}

void dataset_source::train_batch(std::int64_t step, index shard, std::int32_t* out) const {
  data_.train_batch(cfg_.train.seed, step, shard, cfg_.cluster.shards, cfg_.train.batch_per_shard, cfg_.model.seq_len,
                    out);
}

void dataset_source::validation_batch(index batch, index shard, std::int32_t* out) const {
  data_.validation_batch(batch, shard, cfg_.cluster.shards, cfg_.train.batch_per_shard, cfg_.model.seq_len, out);
}

namespace {
void synthetic_tokens(const config& c, std::uint64_t stream, std::int64_t step, index shard, std::int32_t* out) {
  random_stream rng(mix_seed(c.train.seed, {stream, std::uint64_t(step), std::uint64_t(shard)}));
  const index n = c.train.batch_per_shard * (c.model.seq_len + 1);
  for (index i = 0; i < n; ++i) out[i] = std::int32_t(rng.next_bits() % std::uint64_t(c.model.vocab_size));
}
}  // namespace

void synthetic_source::train_batch(std::int64_t step, index shard, std::int32_t* out) const {
  synthetic_tokens(cfg_, 1, step, shard, out);
}

void synthetic_source::validation_batch(index batch, index shard, std::int32_t* out) const {
  synthetic_tokens(cfg_, 2, batch, shard, out);
}

reference_trainer::reference_trainer(const config& c, const token_source& data)
    : cfg_(c), data_(data), shards_(make_shards(c)), experts_(make_experts(c)) {}

void reference_trainer::forward_all(std::int64_t step, const std::vector<std::vector<std::int32_t>>& batches,
                                    bool train) {
  const index C = cfg_.model.is_moe() ? expert_capacity(cfg_) : 0, M = cfg_.model.d_model;
  for (auto& e : experts_) e.begin_step(step);
  for (auto& sh : shards_) {
    sh.begin_step(step, batches[static_cast<std::size_t>(sh.shard())], train);
    while (auto ex = sh.forward_next()) {
      tensor out(ex->rows.shape);
      for (auto& e : experts_) {
        tensor y = e.forward(ex->moe, sh.shard(), ex->rows.ptr() + e.expert() * C * M);
        std::copy(y.data.begin(), y.data.end(), out.data.begin() + e.expert() * C * M);
      }
      sh.forward_resume(out);
    }
  }
}

step_metrics combine_step(const config& c, std::int64_t step, const std::vector<loss_parts>& parts, bool applied) {
  step_metrics out;
  out.step = step;
  out.loss = combine_losses(c, parts);
  out.skipped = !applied;
  out.tokens_per_expert.assign(static_cast<std::size_t>(c.model.experts), 0);
  for (const auto& p : parts) {
    out.tokens += p.tokens;
    out.dropped += p.dropped;
    for (std::size_t e = 0; e < p.tokens_per_expert.size() && e < out.tokens_per_expert.size(); ++e)
      out.tokens_per_expert[e] += p.tokens_per_expert[e];
  }
  return out;
}

step_metrics reference_trainer::train_step(std::int64_t step) {
  const index S = cfg_.cluster.shards, B = cfg_.train.batch_per_shard, T = cfg_.model.seq_len;
  const index C = cfg_.model.is_moe() ? expert_capacity(cfg_) : 0, M = cfg_.model.d_model;
  std::vector<std::vector<std::int32_t>> batches(static_cast<std::size_t>(S));
  for (index s = 0; s < S; ++s) {
    auto& b = batches[static_cast<std::size_t>(s)];
    b.resize(static_cast<std::size_t>(B * (T + 1)));
    data_.train_batch(step, s, b.data());
  }
  forward_all(step, batches, true);

  for (auto& sh : shards_) {
    sh.start_backward();
    while (auto g = sh.backward_next()) {
      tensor din(g->rows.shape);
      for (auto& e : experts_) {
        tensor dx = e.backward(g->moe, sh.shard(), g->rows.ptr() + e.expert() * C * M);
        std::copy(dx.data.begin(), dx.data.end(), din.data.begin() + e.expert() * C * M);
      }
      sh.backward_resume(din);
    }
  }
  for (auto& e : experts_)
    for (index m = 0; m < cfg_.model.moe_layers(); ++m) e.finish_layer_backward(m);

  if (poison_step_ && *poison_step_ == step) shards_.front().poison_gradients();

  std::vector<const param_set*> grads;
  std::vector<loss_parts> parts;
  bool finite = true;
  for (auto& sh : shards_) {
    grads.push_back(&sh.grads());
    parts.push_back(sh.loss());
    finite = finite && sh.grads_finite();
  }
  for (auto& e : experts_) finite = finite && e.grads_finite();

  step_metrics out = combine_step(cfg_, step, parts, finite);
  if (finite) {
    const param_set summed = sum_dense_gradients(grads);
    for (auto& sh : shards_) sh.apply(summed);
    for (auto& e : experts_) e.apply();
  }
  return out;
}

double reference_trainer::evaluate(index batches) {
  const index S = cfg_.cluster.shards, B = cfg_.train.batch_per_shard, T = cfg_.model.seq_len;
  double ce = 0, tokens = 0;
  std::vector<std::vector<std::int32_t>> batch(static_cast<std::size_t>(S));
  for (index i = 0; i < batches; ++i) {
    for (index s = 0; s < S; ++s) {
      auto& b = batch[static_cast<std::size_t>(s)];
      b.resize(static_cast<std::size_t>(B * (T + 1)));
      data_.validation_batch(i, s, b.data());
    }
    forward_all(validation_unit_step(i), batch, false);
    for (auto& sh : shards_) {
      ce += sh.loss().cross_entropy_sum;
      tokens += double(sh.loss().tokens);
    }
  }
  return tokens > 0 ? ce / tokens : std::numeric_limits<double>::quiet_NaN();
}

}  // namespace glam
