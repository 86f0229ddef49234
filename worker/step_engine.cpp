#include "worker/step_engine.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <utility>

#include "kernels/check.hpp"

namespace glam {

namespace {

// Keys pack into 63 bits: kind (4) | layer (12) | shard (16) | item (24).
constexpr int kind_bits = 4, layer_bits = 12, shard_bits = 16, item_bits = 24;

bool all_zero_bits(const tensor& t) {
  for (float v : t.data) {
    std::uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    if (bits != 0) return false;
  }
  return true;
}

// An all-zero buffer travels empty: the receiver fills in the same zeros.
tensor or_empty(tensor t) { return all_zero_bits(t) ? tensor({0}) : std::move(t); }

index expert_count(const config& c) { return c.model.moe_as_dense_relu ? 0 : c.model.experts; }

}  // namespace

std::int64_t exchange_key::encode() const {
  std::int64_t id = static_cast<std::int64_t>(kind);
  id = (id << layer_bits) | layer;
  id = (id << shard_bits) | shard;
  id = (id << item_bits) | item;
  return id;
}

std::optional<exchange_key> exchange_key::decode(std::int64_t id) {
  if (id < 0) return std::nullopt;
  exchange_key k;
  k.item = id & ((1 << item_bits) - 1);
  id >>= item_bits;
  k.shard = id & ((1 << shard_bits) - 1);
  id >>= shard_bits;
  k.layer = id & ((1 << layer_bits) - 1);
  id >>= layer_bits;
  if (id < 1 || id > 6 || (id >> kind_bits) != 0) return std::nullopt;
  k.kind = static_cast<exchange_kind>(id);
  return k;
}

step_engine::step_engine(const config& c, unit_layout layout, int self, std::shared_ptr<const token_source> data)
    : cfg_(c), layout_(std::move(layout)), self_(self), data_(std::move(data)) {
  capacity_ = c.model.is_moe() && expert_count(c) > 0 ? expert_capacity(c) : 0;
  const auto& me = layout_.actor(self_);
  for (index s : me.shards) shards_.emplace_back(c, s, init_dense_params(c.model, c.train.seed));
  for (index e : me.experts) experts_.emplace_back(c, e, init_expert_params(c.model, e, c.train.seed));
  if (!shards_.empty()) {
    summed_ = shards_.front().params().zeros_like();
    for (const auto& item : summed_.items) dense_shapes_.push_back(item.value.shape);
  }
  // What one training round sends this actor, at most: rows from every shard (experts), or
  // replies from every expert actor and every other shard's dense gradients (shards). Held
  // messages of other rounds are bounded by twice that.
  const index layers = cfg_.model.moe_layers();
  const index inbound = static_cast<index>(experts_.size() > 0 ? 2 * layers * cfg_.cluster.shards : 0) +
                        static_cast<index>(shards_.size()) *
                            (2 * layers * static_cast<index>(layout_.expert_actors().size()) +
                             cfg_.cluster.shards * static_cast<index>(dense_shapes_.size()));
  max_held_ = static_cast<std::size_t>(2 * inbound + 16);
}

step_engine::~step_engine() = default;

shard_unit* step_engine::local_shard(index shard) {
  for (auto& s : shards_)
    if (s.shard() == shard) return &s;
  return nullptr;
}

int step_engine::dense_owner(index item) const {
  const auto holders = layout_.shard_actors();
  return holders[static_cast<std::size_t>(item) % holders.size()];
}

std::optional<std::vector<index>> step_engine::expected_shape(int from, const exchange_key& key) const {
  if (from < 0 || from >= layout_.size() || from == self_) return std::nullopt;
  const index C = capacity_, M = cfg_.model.d_model;
  const bool shard_here = key.shard >= 0 && key.shard < layout_.shards() && layout_.shard_actor(key.shard) == self_;
  const bool shard_there = key.shard >= 0 && key.shard < layout_.shards() && layout_.shard_actor(key.shard) == from;
  const bool layer_ok = key.layer >= 0 && key.layer < cfg_.model.moe_layers();
  switch (key.kind) {
    case exchange_kind::forward_rows:
    case exchange_kind::backward_rows:
      if (experts_.empty() || !shard_there || !layer_ok || key.item != 0) return std::nullopt;
      return std::vector<index>{static_cast<index>(experts_.size()) * C, M};
    case exchange_kind::forward_out:
    case exchange_kind::backward_out: {
      const auto& sender = layout_.actor(from);
      if (sender.experts.empty() || !shard_here || !layer_ok || key.item != 0) return std::nullopt;
      return std::vector<index>{static_cast<index>(sender.experts.size()) * C, M};
    }
    case exchange_kind::grad_part:
      if (!shard_there || key.layer != 0 || key.item < 0 || key.item >= static_cast<index>(dense_shapes_.size()) ||
          dense_owner(key.item) != self_)
        return std::nullopt;
      return dense_shapes_[static_cast<std::size_t>(key.item)];
    case exchange_kind::grad_sum:
      if (shards_.empty() || key.layer != 0 || key.shard != 0 || key.item < 0 ||
          key.item >= static_cast<index>(dense_shapes_.size()) || dense_owner(key.item) != from)
        return std::nullopt;
      return dense_shapes_[static_cast<std::size_t>(key.item)];
  }
  return std::nullopt;
}

void step_engine::begin(const round_id& round) {
  const index B = cfg_.train.batch_per_shard, T = cfg_.model.seq_len;
  round_ = round;
  const std::int64_t unit_step = round.train ? round.step : validation_unit_step(round.step);
  started_ = true;
  reported_ = false;
  report_.reset();
  tokens_computed_ = 0;
  progress_.assign(shards_.size(), shard_progress{});
  forward_in_.assign(static_cast<std::size_t>(cfg_.model.moe_layers()), {});
  backward_in_.assign(static_cast<std::size_t>(cfg_.model.moe_layers()), {});
  layers_finished_ = 0;
  parts_.clear();
  summed_have_.assign(summed_.items.size(), false);
  summed_count_ = 0;
  grads_sent_ = false;
  for (auto& e : experts_) e.begin_step(unit_step);
  std::vector<std::int32_t> tokens(static_cast<std::size_t>(B * (T + 1)));
  for (auto& sh : shards_) {
    if (round.train)
      data_->train_batch(round.step, sh.shard(), tokens.data());
    else
      data_->validation_batch(round.step, sh.shard(), tokens.data());
    sh.begin_step(unit_step, tokens, round.train);
    tokens_computed_ += B * T;
  }
  // Messages of this round that came early; anything else held is stale.
  auto held = std::move(held_);
  held_.clear();
  for (auto& m : held)
    if (m.round == round_) local_.push_back(std::move(m));
  pump([&] {
    for (std::size_t i = 0; i < shards_.size(); ++i) advance_shard(i);
  });
}

bool step_engine::receive(const round_id& round, int from, const exchange_key& key, tensor value) {
  const auto shape = expected_shape(from, key);
  if (!shape || (value.shape != *shape && !(value.shape.size() == 1 && value.shape[0] == 0)))
    throw std::invalid_argument("a tensor of shape " + shape_string(value.shape) + " from unit actor " +
                                std::to_string(from) + " that the job's layout does not send this one");
  if (!started_ || round != round_) {
    if (held_.size() >= max_held_)
      throw std::runtime_error("more than " + std::to_string(max_held_) + " tensors held for rounds not begun");
    held_.push_back({round, from, key, std::move(value)});
    return false;
  }
  local_.push_back({round, from, key, std::move(value)});
  pump([] {});
  return true;
}

// Runs first(), then every message to self in order, then checks whether the round is
// done. A failure drops what was queued: the job fails, nothing half-done goes on.
template <class F>
void step_engine::pump(F&& first) {
  try {
    first();
    while (!local_.empty()) {
      auto m = std::move(local_.front());
      local_.pop_front();
      deliver(m.from, m.key, std::move(m.value));
    }
  } catch (...) {
    local_.clear();
    throw;
  }
  check_done();
}

std::vector<outgoing_tensor> step_engine::take_outbox() { return std::exchange(outbox_, {}); }

std::optional<step_report> step_engine::take_report() { return std::exchange(report_, std::nullopt); }

void step_engine::send(int to, const exchange_key& key, tensor value) {
  if (to == self_)
    local_.push_back({round_, self_, key, std::move(value)});
  else
    outbox_.push_back({to, key, std::move(value)});
}

void step_engine::deliver(int from, const exchange_key& key, tensor value) {
  switch (key.kind) {
    case exchange_kind::forward_rows:
    case exchange_kind::backward_rows:
      return serve_experts(from, key, value);
    case exchange_kind::forward_out:
    case exchange_kind::backward_out:
      return take_replies(from, key, value);
    case exchange_kind::grad_part:
      return take_grad_part(key, std::move(value));
    case exchange_kind::grad_sum: {
      const auto item = static_cast<std::size_t>(key.item);
      if (!round_.train || item >= summed_.items.size() || summed_have_[item])
        throw std::runtime_error("an unexpected summed gradient for dense parameter " + std::to_string(key.item));
      if (value.size() == 0) value = tensor(summed_.items[item].value.shape);
      summed_.items[item].value = std::move(value);
      summed_have_[item] = true;
      ++summed_count_;
      return;
    }
  }
}

void step_engine::advance_shard(std::size_t local) {
  auto& p = progress_[local];
  auto& sh = shards_[local];
  if (p.forward) {
    p.exchange = sh.forward_next();
    if (p.exchange) return send_exchange(local, exchange_kind::forward_rows);
    if (!round_.train) {
      p.done = true;
      return;
    }
    p.forward = false;
    sh.start_backward();
  }
  p.exchange = sh.backward_next();
  if (p.exchange) return send_exchange(local, exchange_kind::backward_rows);
  p.done = true;
  if (std::all_of(progress_.begin(), progress_.end(), [](const shard_progress& q) { return q.done; }))
    shards_finished_backward();
}

void step_engine::send_exchange(std::size_t local, exchange_kind kind) {
  auto& p = progress_[local];
  const index C = capacity_, M = cfg_.model.d_model;
  const auto& rows = p.exchange->rows;
  p.replies = tensor(rows.shape);
  p.waiting.clear();
  for (int a : layout_.expert_actors()) {
    const auto& ids = layout_.actor(a).experts;
    tensor block({static_cast<index>(ids.size()) * C, M});
    for (std::size_t j = 0; j < ids.size(); ++j)
      std::copy_n(rows.ptr() + ids[j] * C * M, C * M, block.ptr() + static_cast<index>(j) * C * M);
    p.waiting.insert(a);
    send(a, {kind, p.exchange->moe, shards_[local].shard(), 0}, or_empty(std::move(block)));
  }
}

void step_engine::serve_experts(int from, const exchange_key& key, const tensor& rows) {
  const index C = capacity_, M = cfg_.model.d_model, n = static_cast<index>(experts_.size());
  const bool forward = key.kind == exchange_kind::forward_rows;
  auto& seen = (forward ? forward_in_ : backward_in_)[static_cast<std::size_t>(key.layer)];
  if (n == 0 || (!forward && !round_.train) || !seen.insert(key.shard).second)
    throw std::runtime_error("unexpected expert rows (layer " + std::to_string(key.layer) + ", shard " +
                             std::to_string(key.shard) + ", " + (forward ? "forward" : "backward") + ")");
  const std::vector<float> zeros(rows.size() == 0 ? static_cast<std::size_t>(C * M) : 0, 0.0f);
  tensor out({n * C, M});
  for (index j = 0; j < n; ++j) {
    const float* in = rows.size() == 0 ? zeros.data() : rows.ptr() + j * C * M;
    auto& e = experts_[static_cast<std::size_t>(j)];
    tensor y = forward ? e.forward(key.layer, key.shard, in) : e.backward(key.layer, key.shard, in);
    std::copy(y.data.begin(), y.data.end(), out.data.begin() + j * C * M);
  }
  tokens_computed_ += n * C;
  if (!forward && static_cast<index>(seen.size()) == cfg_.cluster.shards) {
    for (auto& e : experts_) e.finish_layer_backward(key.layer);
    ++layers_finished_;
  }
  send(from, {forward ? exchange_kind::forward_out : exchange_kind::backward_out, key.layer, key.shard, 0},
       or_empty(std::move(out)));
}

void step_engine::take_replies(int from, const exchange_key& key, const tensor& rows) {
  const index C = capacity_, M = cfg_.model.d_model;
  std::size_t local = 0;
  while (local < shards_.size() && shards_[local].shard() != key.shard) ++local;
  const bool forward = key.kind == exchange_kind::forward_out;
  if (local == shards_.size() || !progress_[local].exchange || progress_[local].exchange->moe != key.layer ||
      progress_[local].forward != forward || !progress_[local].waiting.count(from))
    throw std::runtime_error("an unexpected expert reply from " + layout_.actor(from).name + " for shard " +
                             std::to_string(key.shard) + ", layer " + std::to_string(key.layer));
  auto& p = progress_[local];
  const auto& ids = layout_.actor(from).experts;
  if (rows.size() != 0)
    for (std::size_t j = 0; j < ids.size(); ++j)
      std::copy_n(rows.ptr() + static_cast<index>(j) * C * M, C * M, p.replies.ptr() + ids[j] * C * M);
  p.waiting.erase(from);
  if (!p.waiting.empty()) return;
  if (forward)
    shards_[local].forward_resume(p.replies);
  else
    shards_[local].backward_resume(p.replies);
  p.exchange.reset();
  advance_shard(local);
}

void step_engine::shards_finished_backward() {
  if (poison_step_ && *poison_step_ == round_.step)
    if (auto* s0 = local_shard(0)) s0->poison_gradients();
  for (std::size_t item = 0; item < summed_.items.size(); ++item) {
    const int owner = dense_owner(static_cast<index>(item));
    if (owner == self_) continue;
    for (auto& sh : shards_)
      send(owner, {exchange_kind::grad_part, 0, sh.shard(), static_cast<index>(item)}, sh.grads().items[item].value);
  }
  grads_sent_ = true;
  for (std::size_t item = 0; item < summed_.items.size(); ++item) sum_owned(static_cast<index>(item));
}

void step_engine::take_grad_part(const exchange_key& key, tensor value) {
  const auto item = static_cast<std::size_t>(key.item);
  if (!round_.train || item >= summed_.items.size() || local_shard(key.shard) || parts_[key.item].count(key.shard))
    throw std::runtime_error("an unexpected gradient part: dense parameter " + std::to_string(key.item) +
                             " of shard " + std::to_string(key.shard));
  if (value.size() == 0) value = tensor(summed_.items[item].value.shape);
  parts_[key.item][key.shard] = std::move(value);
  sum_owned(key.item);
}

// Σ over shards in shard order, ((g0 + g1) + g2) + …, as sum_dense_gradients does.
void step_engine::sum_owned(index item) {
  const auto i = static_cast<std::size_t>(item);
  if (!grads_sent_ || summed_have_[i] || dense_owner(item) != self_) return;
  auto& remote = parts_[item];
  if (static_cast<index>(remote.size() + shards_.size()) != cfg_.cluster.shards) return;
  auto part = [&](index s) -> const tensor& {
    if (auto* sh = local_shard(s)) return sh->grads().items[i].value;
    return remote.at(s);
  };
  tensor total = part(0);
  for (index s = 1; s < cfg_.cluster.shards; ++s) {
    const tensor& g = part(s);
    float* d = total.ptr();
    const float* src = g.ptr();
    for (index j = 0; j < total.size(); ++j) d[j] += src[j];
  }
  remote.clear();
  for (int a : layout_.shard_actors())
    if (a != self_) send(a, {exchange_kind::grad_sum, 0, 0, item}, total);
  summed_.items[i].value = std::move(total);
  summed_have_[i] = true;
  ++summed_count_;
}

void step_engine::check_done() {
  if (!started_ || reported_) return;
  for (const auto& p : progress_)
    if (!p.done) return;
  if (round_.train) {
    if (!experts_.empty() && layers_finished_ < cfg_.model.moe_layers()) return;
    if (summed_count_ < static_cast<index>(summed_.items.size())) return;
  }
  step_report r;
  r.unit_actor = layout_.actor(self_).name;
  r.round = round_;
  r.tokens_computed = tokens_computed_;
  for (auto& sh : shards_) {
    r.shards.push_back({sh.shard(), sh.loss()});
    if (round_.train) r.finite = r.finite && sh.grads_finite();
  }
  if (round_.train)
    for (auto& e : experts_) r.finite = r.finite && e.grads_finite();
  report_ = std::move(r);
  reported_ = true;
}

std::vector<unit_file_info> step_engine::write_checkpoint(const std::string& root, std::int64_t step,
                                                          std::int64_t epoch) {
  std::vector<unit_file_info> files;
  if (auto* s0 = local_shard(0))
    files.push_back(write_unit_file(root, step, epoch, dense_state_name(), s0->params(), s0->optimizer()));
  for (auto& e : experts_)
    files.push_back(write_unit_file(root, step, epoch, unit_id::expert(e.expert()).name(), e.params(), e.optimizer()));
  return files;
}

void step_engine::load_checkpoint(const std::string& root, const checkpoint_manifest& m) {
  auto entry = [&](const std::string& unit) {
    const auto* f = m.find(unit);
    if (!f) throw checkpoint_error("checkpoint " + checkpoint_dir_for(root, m.step) + " has no file for unit " + unit);
    return *f;
  };
  for (auto& sh : shards_) read_unit_file(root, m.step, entry(dense_state_name()), sh.params(), sh.optimizer());
  for (auto& e : experts_) read_unit_file(root, m.step, entry(unit_id::expert(e.expert()).name()), e.params(), e.optimizer());
}

std::vector<unit_snapshot> step_engine::snapshot(std::int64_t step, std::int64_t epoch, bool with_dense) {
  std::vector<unit_snapshot> out;
  if (with_dense && !shards_.empty())
    out.push_back(encode_unit(step, epoch, dense_state_name(), shards_.front().params(), shards_.front().optimizer()));
  for (auto& e : experts_)
    out.push_back(encode_unit(step, epoch, unit_id::expert(e.expert()).name(), e.params(), e.optimizer()));
  return out;
}

void step_engine::restore(const std::map<std::string, unit_snapshot>& states) {
  auto state_of = [&](const std::string& unit) -> const unit_snapshot& {
    auto i = states.find(unit);
    if (i == states.end()) throw checkpoint_error("no snapshot of unit " + unit + " to restore it from");
    return i->second;
  };
  for (auto& sh : shards_) decode_unit(state_of(dense_state_name()), sh.params(), sh.optimizer());
  for (auto& e : experts_) decode_unit(state_of(unit_id::expert(e.expert()).name()), e.params(), e.optimizer());
}

void step_engine::finish(bool apply) {
  GLAM_CHECK(started_ && reported_ && round_.train, "finish() outside a reported training round");
  if (apply) {
    for (auto& sh : shards_) sh.apply(summed_);
    for (auto& e : experts_) e.apply();
  }
  started_ = false;
}

}  // namespace glam
