// The per-unit inference functions (see inference.hpp for the protocol they follow).
//
// Legend: R rows (tokens) of a pass, M d_model, H d_ff, D = heads·d_head, V vocabulary,
// E experts, L a sequence's length, T = seq_len (a sequence's cache holds T positions).
#include "model/inference.hpp"

#include <algorithm>
#include <functional>
#include <map>
#include <set>
#include <string>

#include "kernels/cached_attention.hpp"
#include "kernels/check.hpp"
#include "kernels/cross_entropy.hpp"
#include "kernels/elementwise.hpp"
#include "kernels/embedding.hpp"
#include "kernels/expert_ffn.hpp"
#include "kernels/gating.hpp"
#include "kernels/gelu_ffn.hpp"
#include "kernels/matmul.hpp"
#include "kernels/packed_dispatch_combine.hpp"
#include "kernels/parallel.hpp"
#include "kernels/rmsnorm.hpp"

namespace glam {
namespace {

std::string lname(index layer, const char* part) { return "l" + std::to_string(layer) + "." + part; }

void check_layout(const param_set& got, const param_set& want, const char* what) {
  GLAM_CHECK(got.items.size() == want.items.size(), std::string(what) + ": parameter count differs from the layout");
  for (std::size_t i = 0; i < want.items.size(); ++i)
    GLAM_CHECK(got.items[i].name == want.items[i].name && got.items[i].value.shape == want.items[i].value.shape,
               std::string(what) + ": parameter '" + want.items[i].name + "' has another name or shape");
}

// Runs fn(begin, end) over [0, rows) in one block of rows per compute thread, each block's
// GEMMs on one BLIS thread. A decode pass has few rows, where BLIS's own thread team costs
// more than it saves, and on a busy machine its spinning barriers cost far more (measured
// on 2 cores at load 9: a 32-row pass of glam-small spent 87% of its time spinning). Rows
// are independent (BLIS sup off), so the blocking changes no bit.
void on_row_blocks(index rows, const std::function<void(index, index)>& fn) {
  const index threads = compute_threads();
  if (rows <= 1 || threads <= 1 || inside_parallel_for()) {
    fn(0, rows);
    return;
  }
  parallel_rows(rows, (rows + threads - 1) / threads, fn);
}

// Pointers to one block's dense parameters (null where the block has no such part).
struct block_params {
  const float *attn_norm, *wq, *wk, *wv, *wo, *rel_bias, *ffn_norm;
  const float *wg = nullptr, *w1 = nullptr, *w2 = nullptr, *gate = nullptr;
};

}  // namespace

// ---------------------------------------------------------------------------------------
// Shard

struct inference_shard::impl {
  config cfg;
  std::shared_ptr<const param_set> params;
  index max_sequences = 0;
  std::vector<block_params> blocks;
  const float* embedding = nullptr;
  const float* final_norm = nullptr;

  struct sequence {
    index length = 0;
    std::vector<tensor> k, v;  // per layer [T, D]
  };
  std::map<sequence_id, sequence> sequences;

  // The pass in flight.
  bool in_pass = false, awaiting = false, pass_done = false, all_positions = false;
  std::vector<pass_item> items;
  std::vector<index> first_row;  // [items + 1]: item i's rows are [first_row[i], first_row[i + 1])
  tensor x, ffn_in;              // [R, M]
  index layer = 0;
  bool at_ffn = false;
  routing route;
  tensor logits;

  index rows() const { return first_row.empty() ? 0 : first_row.back(); }
  bool routes(index l) const { return cfg.model.is_moe_layer(l) && !cfg.model.moe_as_dense_relu; }
  bool relu_baseline(index l) const { return cfg.model.is_moe_layer(l) && cfg.model.moe_as_dense_relu; }

  void attention_block(index l);
  void dense_ffn_block(index l);
  inference_exchange dispatch(index l);
  void finish();
};

void inference_shard::impl::attention_block(index l) {
  const auto& m = cfg.model;
  const index R = rows(), M = m.d_model, D = m.heads * m.d_head;
  const block_params& b = blocks[static_cast<std::size_t>(l)];
  tensor normed({R, M}), rstd({R});
  rmsnorm_forward(x.ptr(), b.attn_norm, normed.ptr(), rstd.ptr(), R, M);
  tensor q({R, D}), k({R, D}), v({R, D});
  on_row_blocks(R, [&](index r0, index r1) {
    linear_forward(normed.ptr() + r0 * M, b.wq, q.ptr() + r0 * D, r1 - r0, M, D);
    linear_forward(normed.ptr() + r0 * M, b.wk, k.ptr() + r0 * D, r1 - r0, M, D);
    linear_forward(normed.ptr() + r0 * M, b.wv, v.ptr() + r0 * D, r1 - r0, M, D);
  });
  // Each item's new keys and values go to its cache after the tokens it already holds; its
  // queries attend over the cache up to their own positions.
  tensor context({R, D});
  const auto attend = [&](index i) {
    sequence& s = sequences.at(items[static_cast<std::size_t>(i)].sequence);
    const index r0 = first_row[static_cast<std::size_t>(i)], n = first_row[static_cast<std::size_t>(i) + 1] - r0;
    tensor& kc = s.k[static_cast<std::size_t>(l)];
    tensor& vc = s.v[static_cast<std::size_t>(l)];
    std::copy(k.ptr() + r0 * D, k.ptr() + (r0 + n) * D, kc.ptr() + s.length * D);
    std::copy(v.ptr() + r0 * D, v.ptr() + (r0 + n) * D, vc.ptr() + s.length * D);
    cached_attention_forward(q.ptr() + r0 * D, kc.ptr(), vc.ptr(), b.rel_bias, context.ptr() + r0 * D, n,
                             s.length + n, m.heads, m.d_head);
  };
  const index n_items = static_cast<index>(items.size());
  // One item parallelises inside the kernel; several run one per thread (the kernel then
  // runs its rows serially). The bits are the same either way.
  if (n_items == 1) attend(0);
  else parallel_for(n_items, attend);
  tensor out({R, M});
  on_row_blocks(R, [&](index r0, index r1) {
    linear_forward(context.ptr() + r0 * D, b.wo, out.ptr() + r0 * M, r1 - r0, D, M);
  });
  for (index i = 0; i < R * M; ++i) x[i] += out[i];
  rmsnorm_forward(x.ptr(), b.ffn_norm, ffn_in.ptr(), rstd.ptr(), R, M);
}

void inference_shard::impl::dense_ffn_block(index l) {
  const index R = rows(), M = cfg.model.d_model, H = cfg.model.d_ff;
  const block_params& b = blocks[static_cast<std::size_t>(l)];
  tensor y({R, M});
  on_row_blocks(R, [&](index r0, index r1) {
    const index n = r1 - r0;
    if (relu_baseline(l)) {
      tensor h({n, 2 * H});
      relu_ffn_forward(ffn_in.ptr() + r0 * M, b.w1, b.w2, h.ptr(), y.ptr() + r0 * M, n, M, 2 * H);
    } else {
      tensor a({n, H}), u({n, H}), h({n, H});
      gelu_ffn_forward(ffn_in.ptr() + r0 * M, b.wg, b.w1, b.w2, a.ptr(), u.ptr(), h.ptr(), y.ptr() + r0 * M, n, M, H);
    }
  });
  for (index i = 0; i < R * M; ++i) x[i] += y[i];
}

inference_exchange inference_shard::impl::dispatch(index l) {
  const auto& m = cfg.model;
  const index R = rows(), M = m.d_model, E = m.experts;
  gating_options opt;
  opt.capacity = std::max<index>(R, 1);  // nothing is dropped (inference.hpp)
  opt.policy = gate_policy::all;
  opt.router_bias = cfg.testing.router_bias;
  tensor probs({R, E});
  gating_forward(ffn_in.ptr(), blocks[static_cast<std::size_t>(l)].gate, R, M, E, opt, route, probs.ptr());
  GLAM_CHECK(route.dropped_choices == 0, "inference gating dropped a choice with capacity = tokens");
  inference_exchange ex;
  ex.moe = l / m.moe_every;
  ex.counts = route.counts;
  ex.offset = packed_offsets(route.counts);
  ex.rows = tensor({ex.offset.back(), M});
  dispatch_packed_forward(ffn_in.ptr(), route, ex.rows.ptr(), M);
  return ex;
}

void inference_shard::impl::finish() {
  const auto& m = cfg.model;
  const index M = m.d_model, V = m.vocab_size;
  // The rows whose logits are asked for: every row, or each item's last.
  std::vector<index> picked;
  if (all_positions)
    for (index r = 0; r < rows(); ++r) picked.push_back(r);
  else
    for (std::size_t i = 0; i < items.size(); ++i) picked.push_back(first_row[i + 1] - 1);
  const index P = static_cast<index>(picked.size());
  tensor h({P, M});
  for (index i = 0; i < P; ++i) std::copy(x.ptr() + picked[i] * M, x.ptr() + (picked[i] + 1) * M, h.ptr() + i * M);
  tensor normed({P, M}), rstd({P});
  rmsnorm_forward(h.ptr(), final_norm, normed.ptr(), rstd.ptr(), P, M);
  logits = tensor({P, V});
  on_row_blocks(P, [&](index r0, index r1) {
    output_logits(normed.ptr() + r0 * M, embedding, logits.ptr() + r0 * V, r1 - r0, M, V);
  });
  for (std::size_t i = 0; i < items.size(); ++i)
    sequences.at(items[i].sequence).length += first_row[i + 1] - first_row[i];
  x = ffn_in = tensor();
  in_pass = false;
  pass_done = true;
}

inference_shard::inference_shard(const config& c, std::shared_ptr<const param_set> dense_params, index max_sequences)
    : p_(new impl) {
  GLAM_CHECK(dense_params != nullptr, "inference_shard needs dense parameters");
  GLAM_CHECK(max_sequences >= 1, "inference_shard: max_sequences must be ≥ 1");
  check_layout(*dense_params, dense_param_layout(c.model), "inference_shard");
  impl& s = *p_;
  s.cfg = c;
  s.params = std::move(dense_params);
  s.max_sequences = max_sequences;
  const param_set& p = *s.params;
  s.embedding = p.at("embedding").ptr();
  s.final_norm = p.at("final_norm").ptr();
  for (index l = 0; l < c.model.layers; ++l) {
    block_params b;
    b.attn_norm = p.at(lname(l, "attn_norm")).ptr();
    b.wq = p.at(lname(l, "wq")).ptr();
    b.wk = p.at(lname(l, "wk")).ptr();
    b.wv = p.at(lname(l, "wv")).ptr();
    b.wo = p.at(lname(l, "wo")).ptr();
    b.rel_bias = p.at(lname(l, "rel_bias")).ptr();
    b.ffn_norm = p.at(lname(l, "ffn_norm")).ptr();
    if (s.routes(l)) {
      b.gate = p.at(lname(l, "gate")).ptr();
    } else {
      if (!s.relu_baseline(l)) b.wg = p.at(lname(l, "wg")).ptr();
      b.w1 = p.at(lname(l, "w1")).ptr();
      b.w2 = p.at(lname(l, "w2")).ptr();
    }
    s.blocks.push_back(b);
  }
}

inference_shard::inference_shard(const config& c, param_set dense_params, index max_sequences)
    : inference_shard(c, std::make_shared<const param_set>(std::move(dense_params)), max_sequences) {}
inference_shard::~inference_shard() = default;
inference_shard::inference_shard(inference_shard&&) noexcept = default;
inference_shard& inference_shard::operator=(inference_shard&&) noexcept = default;

const config& inference_shard::cfg() const { return p_->cfg; }
const param_set& inference_shard::params() const { return *p_->params; }

void inference_shard::open_sequence(sequence_id id) {
  impl& s = *p_;
  GLAM_CHECK(!s.in_pass, "open_sequence while a pass is in flight");
  if (s.sequences.count(id)) throw inference_error("sequence " + std::to_string(id) + " is already open");
  if (static_cast<index>(s.sequences.size()) >= s.max_sequences)
    throw inference_error("cannot open sequence " + std::to_string(id) + ": " + std::to_string(s.max_sequences) +
                          " sequences are open, the most this shard holds; close one first");
  const index T = s.cfg.model.seq_len, D = s.cfg.model.heads * s.cfg.model.d_head;
  impl::sequence q;
  for (index l = 0; l < s.cfg.model.layers; ++l) {
    q.k.emplace_back(std::vector<index>{T, D});
    q.v.emplace_back(std::vector<index>{T, D});
  }
  s.sequences.emplace(id, std::move(q));
}

void inference_shard::close_sequence(sequence_id id) {
  GLAM_CHECK(!p_->in_pass, "close_sequence while a pass is in flight");
  p_->sequences.erase(id);
}

bool inference_shard::is_open(sequence_id id) const { return p_->sequences.count(id) != 0; }

index inference_shard::length(sequence_id id) const {
  auto it = p_->sequences.find(id);
  if (it == p_->sequences.end()) throw inference_error("sequence " + std::to_string(id) + " is not open");
  return it->second.length;
}

index inference_shard::open_sequences() const { return static_cast<index>(p_->sequences.size()); }
index inference_shard::max_sequences() const { return p_->max_sequences; }

void inference_shard::begin_pass(std::vector<pass_item> items, bool all_positions) {
  impl& s = *p_;
  GLAM_CHECK(!s.in_pass, "begin_pass while a pass is in flight: finish it or call abort_pass");
  const auto& m = s.cfg.model;
  if (items.empty()) throw inference_error("a pass needs at least one sequence");
  std::set<sequence_id> seen;
  s.first_row.assign(1, 0);
  for (const pass_item& it : items) {
    const std::string name = "sequence " + std::to_string(it.sequence);
    auto found = s.sequences.find(it.sequence);
    if (found == s.sequences.end()) throw inference_error(name + " is not open; open it before its first pass");
    if (!seen.insert(it.sequence).second) throw inference_error(name + " appears twice in one pass");
    if (it.tokens.empty()) throw inference_error(name + ": a pass must append at least one token");
    for (std::size_t t = 0; t < it.tokens.size(); ++t)
      if (it.tokens[t] < 0 || it.tokens[t] >= m.vocab_size)
        throw inference_error(name + ": token " + std::to_string(it.tokens[t]) + " at " + std::to_string(t) +
                              " is outside the vocabulary [0, " + std::to_string(m.vocab_size) + ")");
    const index after = found->second.length + static_cast<index>(it.tokens.size());
    if (after > m.seq_len)
      throw inference_error(name + " would hold " + std::to_string(after) + " tokens, more than the model's seq_len = " +
                            std::to_string(m.seq_len) + "; shorten the prompt or stop generating earlier");
    s.first_row.push_back(s.first_row.back() + static_cast<index>(it.tokens.size()));
  }
  s.items = std::move(items);
  s.all_positions = all_positions;
  const index R = s.rows(), M = m.d_model;
  std::vector<std::int32_t> tokens;
  tokens.reserve(static_cast<std::size_t>(R));
  for (const pass_item& it : s.items) tokens.insert(tokens.end(), it.tokens.begin(), it.tokens.end());
  s.x = tensor({R, M});
  s.ffn_in = tensor({R, M});
  embedding_forward(tokens.data(), s.embedding, s.x.ptr(), R, m.vocab_size, M);
  s.layer = 0;
  s.at_ffn = false;
  s.awaiting = false;
  s.pass_done = false;
  s.in_pass = true;
  s.logits = tensor();
}

std::optional<inference_exchange> inference_shard::forward_next() {
  impl& s = *p_;
  GLAM_CHECK(s.in_pass, "forward_next without a pass: call begin_pass first");
  GLAM_CHECK(!s.awaiting, "forward_next while an MoE exchange is out: call forward_resume first");
  while (s.layer < s.cfg.model.layers) {
    if (!s.at_ffn) {
      s.attention_block(s.layer);
      s.at_ffn = true;
    }
    if (s.routes(s.layer)) {
      s.awaiting = true;
      return s.dispatch(s.layer);
    }
    s.dense_ffn_block(s.layer);
    ++s.layer;
    s.at_ffn = false;
  }
  s.finish();
  return std::nullopt;
}

void inference_shard::forward_resume(const tensor& expert_outputs) {
  impl& s = *p_;
  GLAM_CHECK(s.in_pass && s.awaiting, "forward_resume without an exchange out");
  const index R = s.rows(), M = s.cfg.model.d_model;
  index packed = 0;
  for (index c : s.route.counts) packed += c;
  GLAM_CHECK(expert_outputs.size() == packed * M, "expert outputs are [R, M] in the exchange's row order");
  tensor y({R, M});
  combine_packed_forward(expert_outputs.ptr(), s.route, y.ptr(), M);
  for (index i = 0; i < R * M; ++i) s.x[i] += y[i];
  s.awaiting = false;
  ++s.layer;
  s.at_ffn = false;
}

void inference_shard::abort_pass() {
  impl& s = *p_;
  // The cache rows a dropped pass wrote lie past each sequence's length: the next pass
  // overwrites them.
  s.in_pass = s.awaiting = s.pass_done = false;
  s.items.clear();
  s.first_row.clear();
  s.x = s.ffn_in = s.logits = tensor();
}

bool inference_shard::pass_in_flight() const { return p_->in_pass; }

const tensor& inference_shard::logits() const {
  GLAM_CHECK(p_->pass_done, "logits before the pass finished");
  return p_->logits;
}

// ---------------------------------------------------------------------------------------
// Expert

void expert_forward_rows(const config& c, const param_set& params, index moe, const float* rows, index count,
                         float* out) {
  const auto& m = c.model;
  GLAM_CHECK(moe >= 0 && moe < m.moe_layers(), "expert_forward_rows: MoE layer " + std::to_string(moe) + " out of range");
  GLAM_CHECK(count >= 0, "expert_forward_rows: negative row count");
  if (count == 0) return;
  const index l = moe * m.moe_every, M = m.d_model, H = m.d_ff;
  const float* w1 = params.at(lname(l, "w1")).ptr();
  const float* w2 = params.at(lname(l, "w2")).ptr();
  const float* wg = m.activation == expert_activation::relu ? nullptr : params.at(lname(l, "wg")).ptr();
  on_row_blocks(count, [&](index r0, index r1) {
    const index n = r1 - r0;
    if (!wg) {
      tensor h({n, H});
      relu_ffn_forward(rows + r0 * M, w1, w2, h.ptr(), out + r0 * M, n, M, H);
    } else {
      tensor a({n, H}), u({n, H}), h({n, H});
      gelu_ffn_forward(rows + r0 * M, wg, w1, w2, a.ptr(), u.ptr(), h.ptr(), out + r0 * M, n, M, H);
    }
  });
}

inference_expert::inference_expert(const config& c, index expert, std::shared_ptr<const param_set> params)
    : cfg_(c), expert_(expert), params_(std::move(params)) {
  GLAM_CHECK(params_ != nullptr, "inference_expert needs parameters");
  GLAM_CHECK(expert >= 0 && expert < c.model.experts, "inference_expert: expert " + std::to_string(expert) + " out of range");
  check_layout(*params_, expert_param_layout(c.model), "inference_expert");
}

inference_expert::inference_expert(const config& c, index expert, param_set params)
    : inference_expert(c, expert, std::make_shared<const param_set>(std::move(params))) {}

tensor inference_expert::forward(index moe, const float* rows, index count) const {
  tensor y({count, cfg_.model.d_model});
  forward(moe, rows, count, y.ptr());
  return y;
}

void inference_expert::forward(index moe, const float* rows, index count, float* out) const {
  expert_forward_rows(cfg_, *params_, moe, rows, count, out);
}

}  // namespace glam
