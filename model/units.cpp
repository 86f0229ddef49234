// The per-unit step functions (see units.hpp for the protocol they follow).
//
// Legend: B sequences per shard, T sequence length, N = B·T tokens (one gating group),
// M d_model, H d_ff, D = heads·d_head, V vocabulary, E experts, C capacity, S shards.
#include "model/units.hpp"

#include <cmath>
#include <limits>
#include <stdexcept>

#include "kernels/attention.hpp"
#include "kernels/check.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/dispatch_combine.hpp"
#include "kernels/embedding.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gating.hpp"
#include "kernels/gelu_ffn.hpp"
#include "kernels/matmul.hpp"
#include "kernels/random.hpp"
#include "kernels/rmsnorm.hpp"

namespace glam {
namespace {

std::string lname(index layer, const char* part) { return "l" + std::to_string(layer) + "." + part; }

ffn_activation kernel_activation(const model_config& m) {
  return m.activation == expert_activation::relu ? ffn_activation::relu : ffn_activation::gated_gelu;
}

// The saved activations of one block for its backward.
struct block_cache {
  tensor x_in, attn_in, attn_rstd, q, k, v, probs, context, x_mid, ffn_in, ffn_rstd;
  tensor a, u, h;                         // dense FFN
  routing route;                          // MoE: the group's routing,
  tensor gate_probs, expert_out;          // softmax [N, E] and expert outputs [E, C, M]
  tensor d_weights;                       // [2, N]: d(weight1), d(weight2) from combine_backward
};

}  // namespace

index expert_capacity(const config& c) {
  const index n = c.train.batch_per_shard * c.model.seq_len;
  return gating_capacity(n, c.model.experts, c.moe.capacity_factor);
}

// ---------------------------------------------------------------------------------------
// Attention shard

struct shard_unit::impl {
  config cfg;
  index shard;
  param_set params, grads;
  optimizer_state opt;

  // The step in flight.
  std::int64_t step = 0;
  bool train = true;
  std::vector<std::int32_t> inputs, targets;  // [N]
  std::vector<block_cache> blocks;
  tensor x;              // the residual stream [N, M] at the current point of the pass
  tensor final_rstd;     // [N]
  tensor final_out;      // normed final hidden [N, M]
  tensor dx;             // gradient of the residual stream [N, M]
  tensor d_final;        // gradient of final_out [N, M] from the loss
  loss_parts loss;
  index layer = 0;       // the block the pass is in
  bool at_ffn = false;   // forward: attention of `layer` done; backward: FFN of `layer` done
  bool awaiting = false; // an exchange of `layer` is out
  bool forward_done = false, backward_done = false;

  index n() const { return cfg.train.batch_per_shard * cfg.model.seq_len; }
  // Whether block l's FFN routes to experts (an MoE block not replaced by the dense baseline).
  bool routes(index l) const { return cfg.model.is_moe_layer(l) && !cfg.model.moe_as_dense_relu; }
  bool relu_baseline(index l) const { return cfg.model.is_moe_layer(l) && cfg.model.moe_as_dense_relu; }
  index moe_number(index l) const { return l / cfg.model.moe_every; }
  index group_count() const { return cfg.cluster.shards; }

  void attention_forward_block(index l);
  void attention_backward_block(index l);
  moe_exchange moe_dispatch(index l);
  void dense_ffn_forward_block(index l);
  void dense_ffn_backward_block(index l);
  void finish_forward();
};

void shard_unit::impl::attention_forward_block(index l) {
  const auto& m = cfg.model;
  const index N = n(), M = m.d_model, D = m.heads * m.d_head;
  block_cache& b = blocks[static_cast<std::size_t>(l)];
  b.x_in = x;
  b.attn_in = tensor({N, M});
  b.attn_rstd = tensor({N});
  rmsnorm_forward(x.ptr(), params.at(lname(l, "attn_norm")).ptr(), b.attn_in.ptr(), b.attn_rstd.ptr(), N, M);
  b.q = tensor({N, D});
  b.k = tensor({N, D});
  b.v = tensor({N, D});
  linear_forward(b.attn_in.ptr(), params.at(lname(l, "wq")).ptr(), b.q.ptr(), N, M, D);
  linear_forward(b.attn_in.ptr(), params.at(lname(l, "wk")).ptr(), b.k.ptr(), N, M, D);
  linear_forward(b.attn_in.ptr(), params.at(lname(l, "wv")).ptr(), b.v.ptr(), N, M, D);
  b.probs = tensor({cfg.train.batch_per_shard, m.heads, m.seq_len, m.seq_len});
  b.context = tensor({N, D});
  attention_forward(b.q.ptr(), b.k.ptr(), b.v.ptr(), params.at(lname(l, "rel_bias")).ptr(), b.context.ptr(),
                    b.probs.ptr(), cfg.train.batch_per_shard, m.seq_len, m.heads, m.d_head);
  // x_mid = x_in + context·Wo
  tensor out({N, M});
  linear_forward(b.context.ptr(), params.at(lname(l, "wo")).ptr(), out.ptr(), N, D, M);
  for (index i = 0; i < N * M; ++i) x[i] += out[i];
  b.x_mid = x;
  b.ffn_in = tensor({N, M});
  b.ffn_rstd = tensor({N});
  rmsnorm_forward(x.ptr(), params.at(lname(l, "ffn_norm")).ptr(), b.ffn_in.ptr(), b.ffn_rstd.ptr(), N, M);
}

void shard_unit::impl::dense_ffn_forward_block(index l) {
  const index N = n(), M = cfg.model.d_model, H = cfg.model.d_ff;
  block_cache& b = blocks[static_cast<std::size_t>(l)];
  if (relu_baseline(l)) {
    b.h = tensor({N, 2 * H});
    tensor y({N, M});
    relu_ffn_forward(b.ffn_in.ptr(), params.at(lname(l, "w1")).ptr(), params.at(lname(l, "w2")).ptr(), b.h.ptr(),
                     y.ptr(), N, M, 2 * H);
    for (index i = 0; i < N * M; ++i) x[i] += y[i];
    return;
  }
  b.a = tensor({N, H});
  b.u = tensor({N, H});
  b.h = tensor({N, H});
  tensor y({N, M});
  gelu_ffn_forward(b.ffn_in.ptr(), params.at(lname(l, "wg")).ptr(), params.at(lname(l, "w1")).ptr(),
                   params.at(lname(l, "w2")).ptr(), b.a.ptr(), b.u.ptr(), b.h.ptr(), y.ptr(), N, M, H);
  for (index i = 0; i < N * M; ++i) x[i] += y[i];
  if (!train) b.a = b.u = b.h = tensor();
}

moe_exchange shard_unit::impl::moe_dispatch(index l) {
  const auto& m = cfg.model;
  const index N = n(), M = m.d_model, E = m.experts, C = expert_capacity(cfg);
  block_cache& b = blocks[static_cast<std::size_t>(l)];
  gating_options opt;
  opt.capacity = C;
  // Evaluation routes every second choice that fits: no randomness outside training.
  opt.policy = train && cfg.moe.policy == second_expert_policy::random ? gate_policy::random : gate_policy::all;
  opt.random_seed = mix_seed(cfg.train.seed, {std::uint64_t(step), std::uint64_t(l), std::uint64_t(shard)});
  opt.router_bias = cfg.testing.router_bias;
  b.gate_probs = tensor({N, E});
  gating_forward(b.ffn_in.ptr(), params.at(lname(l, "gate")).ptr(), N, M, E, opt, b.route, b.gate_probs.ptr());
  loss.aux_sum += b.route.aux;
  for (index e = 0; e < E; ++e) loss.tokens_per_expert[static_cast<std::size_t>(e)] += b.route.counts[static_cast<std::size_t>(e)];
  loss.dropped += b.route.dropped_choices;
  moe_exchange ex;
  ex.moe = moe_number(l);
  ex.rows = tensor({E, C, M});
  dispatch_forward(b.ffn_in.ptr(), b.route, ex.rows.ptr(), M);
  return ex;
}

void shard_unit::impl::finish_forward() {
  const auto& m = cfg.model;
  const index N = n(), M = m.d_model, V = m.vocab_size;
  final_out = tensor({N, M});
  final_rstd = tensor({N});
  rmsnorm_forward(x.ptr(), params.at("final_norm").ptr(), final_out.ptr(), final_rstd.ptr(), N, M);
  const double global_tokens = double(N) * double(group_count());
  if (train) d_final = tensor({N, M});
  auto sums = cross_entropy<float>(final_out.ptr(), params.at("embedding").ptr(), targets.data(),
                            train ? d_final.ptr() : nullptr, train ? grads.at("embedding").ptr() : nullptr,
                            nullptr, N, M, V, cfg.train.z_loss, 1.0 / global_tokens);
  loss.cross_entropy_sum = sums.ce;
  loss.z_sum = sums.z;
  loss.tokens = N;
  forward_done = true;
}

void shard_unit::impl::dense_ffn_backward_block(index l) {
  const index N = n(), M = cfg.model.d_model, H = cfg.model.d_ff;
  block_cache& b = blocks[static_cast<std::size_t>(l)];
  tensor d_ffn_in({N, M});
  if (relu_baseline(l))
    relu_ffn_backward(b.ffn_in.ptr(), params.at(lname(l, "w1")).ptr(), params.at(lname(l, "w2")).ptr(), b.h.ptr(),
                      dx.ptr(), d_ffn_in.ptr(), grads.at(lname(l, "w1")).ptr(), grads.at(lname(l, "w2")).ptr(), N, M,
                      2 * H);
  else
    gelu_ffn_backward(b.ffn_in.ptr(), params.at(lname(l, "wg")).ptr(), params.at(lname(l, "w1")).ptr(),
                    params.at(lname(l, "w2")).ptr(), b.a.ptr(), b.u.ptr(), b.h.ptr(), dx.ptr(), d_ffn_in.ptr(),
                    grads.at(lname(l, "wg")).ptr(), grads.at(lname(l, "w1")).ptr(), grads.at(lname(l, "w2")).ptr(),
                    N, M, H);
  rmsnorm_backward(b.x_mid.ptr(), params.at(lname(l, "ffn_norm")).ptr(), b.ffn_rstd.ptr(), d_ffn_in.ptr(), dx.ptr(),
                   grads.at(lname(l, "ffn_norm")).ptr(), N, M);
}

void shard_unit::impl::attention_backward_block(index l) {
  const auto& m = cfg.model;
  const index N = n(), M = m.d_model, D = m.heads * m.d_head;
  block_cache& b = blocks[static_cast<std::size_t>(l)];
  // dx holds ∂L/∂x_mid; the residual passes it on unchanged, the attention path adds to it.
  tensor d_context({N, D});
  linear_backward(b.context.ptr(), params.at(lname(l, "wo")).ptr(), dx.ptr(), d_context.ptr(),
                  grads.at(lname(l, "wo")).ptr(), N, D, M);
  tensor dq({N, D}), dk({N, D}), dv({N, D});
  attention_backward(b.q.ptr(), b.k.ptr(), b.v.ptr(), b.probs.ptr(), d_context.ptr(), dq.ptr(), dk.ptr(), dv.ptr(),
                     grads.at(lname(l, "rel_bias")).ptr(), cfg.train.batch_per_shard, m.seq_len, m.heads, m.d_head);
  tensor d_attn_in({N, M});
  linear_backward(b.attn_in.ptr(), params.at(lname(l, "wq")).ptr(), dq.ptr(), d_attn_in.ptr(),
                  grads.at(lname(l, "wq")).ptr(), N, M, D);
  linear_backward(b.attn_in.ptr(), params.at(lname(l, "wk")).ptr(), dk.ptr(), d_attn_in.ptr(),
                  grads.at(lname(l, "wk")).ptr(), N, M, D);
  linear_backward(b.attn_in.ptr(), params.at(lname(l, "wv")).ptr(), dv.ptr(), d_attn_in.ptr(),
                  grads.at(lname(l, "wv")).ptr(), N, M, D);
  rmsnorm_backward(b.x_in.ptr(), params.at(lname(l, "attn_norm")).ptr(), b.attn_rstd.ptr(), d_attn_in.ptr(),
                   dx.ptr(), grads.at(lname(l, "attn_norm")).ptr(), N, M);
  blocks[static_cast<std::size_t>(l)] = block_cache();  // free what the backward no longer needs
}

shard_unit::shard_unit(const config& c, index shard, param_set dense_params) : p_(new impl) {
  p_->cfg = c;
  p_->shard = shard;
  p_->params = std::move(dense_params);
  p_->opt.init(p_->params);
}
shard_unit::~shard_unit() = default;
shard_unit::shard_unit(shard_unit&&) noexcept = default;
shard_unit& shard_unit::operator=(shard_unit&&) noexcept = default;

index shard_unit::shard() const { return p_->shard; }
const param_set& shard_unit::params() const { return p_->params; }
param_set& shard_unit::params() { return p_->params; }
const param_set& shard_unit::grads() const { return p_->grads; }
optimizer_state& shard_unit::optimizer() { return p_->opt; }
const loss_parts& shard_unit::loss() const { return p_->loss; }

void shard_unit::begin_step(std::int64_t step, std::vector<std::int32_t> tokens, bool train) {
  impl& s = *p_;
  const auto& m = s.cfg.model;
  const index B = s.cfg.train.batch_per_shard, T = m.seq_len, N = B * T;
  GLAM_CHECK(static_cast<index>(tokens.size()) == B * (T + 1), "a shard's batch is [B, T + 1] tokens");
  s.step = step;
  s.train = train;
  s.inputs.resize(static_cast<std::size_t>(N));
  s.targets.resize(static_cast<std::size_t>(N));
  for (index b = 0; b < B; ++b)
    for (index t = 0; t < T; ++t) {
      s.inputs[static_cast<std::size_t>(b * T + t)] = tokens[static_cast<std::size_t>(b * (T + 1) + t)];
      s.targets[static_cast<std::size_t>(b * T + t)] = tokens[static_cast<std::size_t>(b * (T + 1) + t + 1)];
    }
  if (train) {
    if (s.grads.items.empty()) s.grads = s.params.zeros_like();
    else s.grads.zero();
  }
  s.blocks.assign(static_cast<std::size_t>(m.layers), block_cache());
  s.loss = loss_parts();
  s.loss.tokens_per_expert.assign(static_cast<std::size_t>(std::max<index>(m.experts, 0)), 0);
  s.x = tensor({N, m.d_model});
  embedding_forward(s.inputs.data(), s.params.at("embedding").ptr(), s.x.ptr(), N, m.vocab_size, m.d_model);
  s.layer = 0;
  s.at_ffn = false;
  s.awaiting = false;
  s.forward_done = s.backward_done = false;
}

std::optional<moe_exchange> shard_unit::forward_next() {
  impl& s = *p_;
  GLAM_CHECK(!s.awaiting, "forward_next while an MoE exchange is out: call forward_resume first");
  GLAM_CHECK(!s.forward_done, "forward_next after the forward pass finished");
  while (s.layer < s.cfg.model.layers) {
    if (!s.at_ffn) {
      s.attention_forward_block(s.layer);
      s.at_ffn = true;
    }
    if (s.routes(s.layer)) {
      s.awaiting = true;
      return s.moe_dispatch(s.layer);
    }
    s.dense_ffn_forward_block(s.layer);
    ++s.layer;
    s.at_ffn = false;
  }
  s.finish_forward();
  return std::nullopt;
}

void shard_unit::forward_resume(const tensor& expert_outputs) {
  impl& s = *p_;
  GLAM_CHECK(s.awaiting, "forward_resume without an exchange out");
  const index N = s.n(), M = s.cfg.model.d_model, E = s.cfg.model.experts, C = expert_capacity(s.cfg);
  GLAM_CHECK(expert_outputs.size() == E * C * M, "expert outputs are [E, C, M]");
  block_cache& b = s.blocks[static_cast<std::size_t>(s.layer)];
  tensor y({N, M});
  combine_forward(expert_outputs.ptr(), b.route, y.ptr(), M);
  for (index i = 0; i < N * M; ++i) s.x[i] += y[i];
  if (s.train) b.expert_out = expert_outputs;
  s.awaiting = false;
  ++s.layer;
  s.at_ffn = false;
}

void shard_unit::start_backward() {
  impl& s = *p_;
  GLAM_CHECK(s.train && s.forward_done, "start_backward needs a finished training forward pass");
  const index N = s.n(), M = s.cfg.model.d_model;
  s.dx = tensor({N, M});
  rmsnorm_backward(s.x.ptr(), s.params.at("final_norm").ptr(), s.final_rstd.ptr(), s.d_final.ptr(), s.dx.ptr(),
                   s.grads.at("final_norm").ptr(), N, M);
  s.layer = s.cfg.model.layers - 1;
  s.at_ffn = false;  // the FFN of `layer` is next
  s.awaiting = false;
}

std::optional<moe_exchange> shard_unit::backward_next() {
  impl& s = *p_;
  GLAM_CHECK(!s.awaiting, "backward_next while an MoE exchange is out: call backward_resume first");
  GLAM_CHECK(!s.backward_done, "backward_next after the backward pass finished");
  const auto& m = s.cfg.model;
  while (s.layer >= 0) {
    if (!s.at_ffn) {
      if (s.routes(s.layer)) {
        block_cache& b = s.blocks[static_cast<std::size_t>(s.layer)];
        const index E = m.experts, C = expert_capacity(s.cfg), M = m.d_model, N = s.n();
        moe_exchange ex;
        ex.moe = s.moe_number(s.layer);
        ex.rows = tensor({E, C, M});
        b.d_weights = tensor({2, N});
        combine_backward(b.expert_out.ptr(), s.dx.ptr(), b.route, ex.rows.ptr(), b.d_weights.ptr(), b.d_weights.ptr() + N, M);
        s.awaiting = true;
        return ex;
      }
      s.dense_ffn_backward_block(s.layer);
      s.at_ffn = true;
    }
    s.attention_backward_block(s.layer);
    --s.layer;
    s.at_ffn = false;
  }
  const index N = s.n();
  embedding_backward(s.inputs.data(), s.dx.ptr(), s.grads.at("embedding").ptr(), N, m.vocab_size, m.d_model);
  s.backward_done = true;
  return std::nullopt;
}

void shard_unit::backward_resume(const tensor& expert_input_grads) {
  impl& s = *p_;
  GLAM_CHECK(s.awaiting, "backward_resume without an exchange out");
  const auto& m = s.cfg.model;
  const index N = s.n(), M = m.d_model, E = m.experts, C = expert_capacity(s.cfg);
  GLAM_CHECK(expert_input_grads.size() == E * C * M, "expert input gradients are [E, C, M]");
  const index l = s.layer;
  block_cache& b = s.blocks[static_cast<std::size_t>(l)];
  tensor d_ffn_in({N, M});
  dispatch_backward(expert_input_grads.ptr(), b.route, d_ffn_in.ptr(), M);
  const float daux = float(s.cfg.moe.aux_weight / double(s.group_count()));
  gating_backward(b.ffn_in.ptr(), s.params.at(lname(l, "gate")).ptr(), b.gate_probs.ptr(), b.route, b.d_weights.ptr(),
                  b.d_weights.ptr() + N, daux, d_ffn_in.ptr(), s.grads.at(lname(l, "gate")).ptr(), N, M, E);
  rmsnorm_backward(b.x_mid.ptr(), s.params.at(lname(l, "ffn_norm")).ptr(), b.ffn_rstd.ptr(), d_ffn_in.ptr(),
                   s.dx.ptr(), s.grads.at(lname(l, "ffn_norm")).ptr(), N, M);
  s.awaiting = false;
  s.at_ffn = true;
}

bool shard_unit::grads_finite() const { return p_->grads.all_finite(); }

void shard_unit::poison_gradients() {
  GLAM_CHECK(!p_->grads.items.empty(), "no gradients to poison before a training step");
  p_->grads.items.front().value[0] = std::numeric_limits<float>::quiet_NaN();
}

void shard_unit::apply(const param_set& summed_grads) {
  adafactor_apply(p_->params, summed_grads, p_->opt, p_->cfg);
}

// ---------------------------------------------------------------------------------------
// Expert

struct expert_unit::impl {
  config cfg;
  index expert;
  param_set params, grads;
  optimizer_state opt;
  ffn_activation act;
  // Per MoE layer, the fixed [S·C, ·] layout, shard-major: inputs, activations (a, u only
  // for gated GELU), output gradients and pre-activation gradients of every row this expert
  // served. Shard s's rows are rows [s·C, (s+1)·C) of each. The backward's rows part
  // overwrites a and u with da and du (the weights part needs neither); relu keeps dpre
  // beside h, which dW2 still needs.
  struct layer_rows {
    tensor x, a, u, h, dy, dpre;
    std::vector<bool> backward_in;  // per shard: its backward rows were computed
  };
  std::vector<layer_rows> layers;
  std::vector<index> moe_blocks;  // block index of each MoE layer

  index rows_per_shard() const { return expert_capacity(cfg); }
  expert_weights<float> weights(index moe) const {
    const index l = moe_blocks[static_cast<std::size_t>(moe)];
    expert_weights<float> w;
    if (act == ffn_activation::gated_gelu) w.wg = params.at(lname(l, "wg")).ptr();
    w.w1 = params.at(lname(l, "w1")).ptr();
    w.w2 = params.at(lname(l, "w2")).ptr();
    return w;
  }
  void check(index moe, index shard) const {
    GLAM_CHECK(moe >= 0 && moe < static_cast<index>(moe_blocks.size()), "MoE layer out of range");
    GLAM_CHECK(shard >= 0 && shard < cfg.cluster.shards, "shard out of range");
  }
};

expert_unit::expert_unit(const config& c, index expert, param_set params) : p_(new impl) {
  p_->cfg = c;
  p_->expert = expert;
  p_->params = std::move(params);
  p_->opt.init(p_->params);
  p_->act = kernel_activation(c.model);
  for (index l = 0; l < c.model.layers; ++l)
    if (c.model.is_moe_layer(l)) p_->moe_blocks.push_back(l);
}
expert_unit::~expert_unit() = default;
expert_unit::expert_unit(expert_unit&&) noexcept = default;
expert_unit& expert_unit::operator=(expert_unit&&) noexcept = default;

index expert_unit::expert() const { return p_->expert; }
const param_set& expert_unit::params() const { return p_->params; }
param_set& expert_unit::params() { return p_->params; }
const param_set& expert_unit::grads() const { return p_->grads; }
optimizer_state& expert_unit::optimizer() { return p_->opt; }

void expert_unit::begin_step(std::int64_t) {
  impl& s = *p_;
  const index R = s.cfg.cluster.shards * s.rows_per_shard(), M = s.cfg.model.d_model, H = s.cfg.model.d_ff;
  // The row buffers live from step to step: every row of them is written before it is read
  // (each shard's forward and backward fill their own rows), and allocating them afresh
  // every step cost more in page faults and zero-filling than the gating, dispatch and
  // combine together.
  s.layers.resize(s.moe_blocks.size());
  auto ensure = [](tensor& t, index rows, index cols) {
    if (t.size() != rows * cols) t = tensor({rows, cols});
  };
  for (auto& l : s.layers) {
    ensure(l.x, R, M);
    ensure(l.h, R, H);
    ensure(l.dy, R, M);
    l.backward_in.assign(static_cast<std::size_t>(s.cfg.cluster.shards), false);
    if (s.act == ffn_activation::gated_gelu) {
      ensure(l.a, R, H);
      ensure(l.u, R, H);
    }
  }
  if (s.grads.items.empty()) s.grads = s.params.zeros_like();
  else s.grads.zero();
}

tensor expert_unit::forward(index moe, index shard, const float* rows) {
  impl& s = *p_;
  s.check(moe, shard);
  const index C = s.rows_per_shard(), M = s.cfg.model.d_model, H = s.cfg.model.d_ff;
  auto& l = s.layers[static_cast<std::size_t>(moe)];
  float* x = l.x.ptr() + shard * C * M;
  std::copy(rows, rows + C * M, x);
  tensor y({C, M});
  const auto w = s.weights(moe);
  const index at = shard * C * H;
  if (s.act == ffn_activation::relu)
    relu_ffn_forward(x, w.w1, w.w2, l.h.ptr() + at, y.ptr(), C, M, H);
  else
    gelu_ffn_forward(x, w.wg, w.w1, w.w2, l.a.ptr() + at, l.u.ptr() + at, l.h.ptr() + at, y.ptr(), C, M, H);
  return y;
}

tensor expert_unit::backward(index moe, index shard, const float* d_out) {
  impl& s = *p_;
  s.check(moe, shard);
  const index C = s.rows_per_shard(), M = s.cfg.model.d_model, H = s.cfg.model.d_ff;
  auto& l = s.layers[static_cast<std::size_t>(moe)];
  float* dy = l.dy.ptr() + shard * C * M;
  std::copy(d_out, d_out + C * M, dy);
  tensor dx({C, M});
  const auto w = s.weights(moe);
  const index at = shard * C * H;
  // A repeated call for the same shard recomputes the same rows: harmless.
  l.backward_in[static_cast<std::size_t>(shard)] = true;
  if (s.act == ffn_activation::relu) {
    if (l.dpre.size() != s.cfg.cluster.shards * C * H) l.dpre = tensor({s.cfg.cluster.shards * C, H});
    relu_ffn_backward_rows<float>(w.w1, w.w2, l.h.ptr() + at, dy, dx.ptr(), l.dpre.ptr() + at, C, M, H);
  } else {
    float* a = l.a.ptr() + at;
    float* u = l.u.ptr() + at;
    gated_ffn_backward_rows<float>(w.wg, w.w1, w.w2, a, u, dy, dx.ptr(), a, u, C, M, H);
  }
  return dx;
}

void expert_unit::finish_layer_backward(index moe) {
  impl& s = *p_;
  s.check(moe, 0);
  const index R = s.cfg.cluster.shards * s.rows_per_shard(), M = s.cfg.model.d_model, H = s.cfg.model.d_ff;
  const index l = s.moe_blocks[static_cast<std::size_t>(moe)];
  auto& rows = s.layers[static_cast<std::size_t>(moe)];
  float* dw1 = s.grads.at(lname(l, "w1")).ptr();
  float* dw2 = s.grads.at(lname(l, "w2")).ptr();
  // The rows part ran once per shard (expert_unit::backward); only the weight GEMMs remain.
  for (bool in : rows.backward_in)
    GLAM_CHECK(in, "finish_layer_backward before every shard's backward rows of the layer are in");
  if (s.act == ffn_activation::relu) {
    relu_ffn_backward_weights<float>(rows.x.ptr(), rows.h.ptr(), rows.dy.ptr(), rows.dpre.ptr(), dw1, dw2, R, M, H);
  } else {
    gated_ffn_backward_weights<float>(rows.x.ptr(), rows.h.ptr(), rows.dy.ptr(), rows.a.ptr(), rows.u.ptr(),
                                      s.grads.at(lname(l, "wg")).ptr(), dw1, dw2, R, M, H);
  }
}

bool expert_unit::grads_finite() const { return p_->grads.all_finite(); }

void expert_unit::apply() { adafactor_apply(p_->params, p_->grads, p_->opt, p_->cfg); }

// ---------------------------------------------------------------------------------------

param_set sum_dense_gradients(const std::vector<const param_set*>& per_shard) {
  GLAM_CHECK(!per_shard.empty(), "sum_dense_gradients needs at least one shard");
  param_set total = *per_shard[0];
  for (std::size_t s = 1; s < per_shard.size(); ++s) add_into(total, *per_shard[s]);
  return total;
}

step_loss combine_losses(const config& c, const std::vector<loss_parts>& per_shard) {
  double ce = 0, aux = 0, z = 0, tokens = 0;
  for (const auto& p : per_shard) {
    ce += p.cross_entropy_sum;
    aux += p.aux_sum;
    z += p.z_sum;
    tokens += double(p.tokens);
  }
  step_loss out;
  const double groups = double(per_shard.size());
  out.cross_entropy = float(ce / tokens);
  out.aux = float(aux / groups);
  out.z = float(z / tokens);
  out.loss = float(ce / tokens + c.moe.aux_weight * (aux / groups) + z / tokens);
  return out;
}

}  // namespace glam
