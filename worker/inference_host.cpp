#include "worker/inference_host.hpp"

#include <algorithm>
#include <cstring>

#include "model/unit_id.hpp"

namespace glam {

namespace {

unit_id parse_unit(const std::string& name, index experts) {
  auto u = unit_id::parse(name);
  if (!u || u->index < 0 || (u->type == unit_id::kind::expert && u->index >= experts) ||
      (u->type == unit_id::kind::shard && u->index != 0))
    throw inference_error("unit '" + name.substr(0, 64) + "' is not a unit of this session (shard0, expert0 to expert" +
                          std::to_string(experts - 1) + ")");
  return *u;
}

}  // namespace

void inference_host::load(const infer_assignment& a) {
  if (a.max_sequences < 1 || a.max_sequences > 4096)
    throw inference_error("max_sequences = " + std::to_string(a.max_sequences) + " is outside [1, 4096]");
  if (!ck_) {
    inference_checkpoint ck = find_checkpoint(a.checkpoint);
    if (ck.manifest.step != a.step || ck.manifest.config_hash != a.config_hash)
      throw inference_error("the checkpoint at '" + a.checkpoint + "' here is step " + std::to_string(ck.manifest.step) +
                            " of another model or step than the session's (step " + std::to_string(a.step) +
                            "): the workers must see the same checkpoint directory at the same path");
    if (ck.cfg.model.experts != a.experts)
      throw inference_error("the checkpoint's model has " + std::to_string(ck.cfg.model.experts) +
                            " experts, the session " + std::to_string(a.experts));
    ck_ = std::move(ck);
    checkpoint_ = a.checkpoint;
    max_sequences_ = a.max_sequences;
  } else if (a.checkpoint != checkpoint_) {
    throw inference_error("a session's units come from one checkpoint; '" + a.checkpoint + "' is not '" + checkpoint_ +
                          "'");
  }
  for (const auto& name : a.units) {
    const unit_id u = parse_unit(name, ck_->cfg.model.experts);
    if (u.type == unit_id::kind::shard) {
      if (shards_.count(u.index)) continue;
      if (!dense_) dense_ = std::make_shared<const param_set>(load_dense_params(*ck_));
      shards_.emplace(u.index, inference_shard(ck_->cfg, dense_, max_sequences_));
      passes_[u.index] = shard_pass{};
    } else if (!experts_.count(u.index)) {
      experts_.emplace(u.index, inference_expert(ck_->cfg, u.index, load_expert_params(*ck_, u.index)));
    }
  }
}

bool inference_host::hosts(const std::string& unit) const {
  auto u = unit_id::parse(unit);
  if (!u) return false;
  return u->type == unit_id::kind::shard ? shards_.count(u->index) > 0 : experts_.count(u->index) > 0;
}

std::vector<std::string> inference_host::units() const {
  std::vector<std::string> out;
  for (const auto& [s, shard] : shards_) out.push_back(unit_id::shard(s).name());
  for (const auto& [e, expert] : experts_) out.push_back(unit_id::expert(e).name());
  return out;
}

void inference_host::write_part(shard_pass& p, const float_block& part) {
  if (part.data.empty()) return;
  const std::int64_t n = p.outputs.size();
  const auto len = static_cast<std::int64_t>(part.data.size());
  if (part.shape != p.outputs.shape || part.offset < 0 || part.offset + len > n)
    throw inference_error("a part of the experts' outputs of shape " + shape_string(part.shape) + " at " +
                          std::to_string(part.offset) + " (+" + std::to_string(len) +
                          ") does not fit the exchange's outputs " + shape_string(p.outputs.shape));
  std::memcpy(p.outputs.ptr() + part.offset, part.data.data(), static_cast<std::size_t>(len) * sizeof(float));
  p.written += len;
}

infer_reply inference_host::next_stage(index s) {
  auto& shard = shards_.at(s);
  auto& p = passes_.at(s);
  infer_reply r;
  p.exchange = shard.forward_next();
  if (p.exchange) {
    p.at = shard_pass::phase::exchange;
    p.outputs = tensor(p.exchange->rows.shape);
    p.written = 0;
    r.stage = 1;
    r.moe = p.exchange->moe;
    r.counts = p.exchange->counts;
    r.offset = p.exchange->offset;
    r.data = block_of(p.exchange->rows, 0);
  } else {
    p.at = shard_pass::phase::logits;
    p.outputs = tensor();
    r.stage = 2;
    r.data = block_of(shard.logits(), 0);
  }
  r.open_sequences = shard.open_sequences();
  return r;
}

infer_reply inference_host::call(const infer_request& r) {
  if (!ck_) throw inference_error("no unit of session '" + r.session.substr(0, 64) + "' is loaded here");
  const unit_id u = parse_unit(r.unit, ck_->cfg.model.experts);
  const auto op = static_cast<infer_op>(r.op);
  if (u.type == unit_id::kind::expert) {
    auto e = experts_.find(u.index);
    if (e == experts_.end()) throw inference_error(r.unit + " is not hosted here");
    if (op != infer_op::expert) throw inference_error(std::string("an expert takes no '") + to_string(op) + "' call");
    const index M = ck_->cfg.model.d_model;
    const auto n = static_cast<index>(r.data.data.size());
    if (r.moe < 0 || r.moe >= ck_->cfg.model.layers || n % M != 0 || r.data.shape != std::vector<index>{n / M, M})
      throw inference_error("expert rows of shape " + shape_string(r.data.shape) + " for MoE layer " +
                            std::to_string(r.moe) + " do not fit the model (rows of d_model = " + std::to_string(M) +
                            ")");
    infer_reply out;
    out.stage = 3;
    out.data.shape = r.data.shape;
    out.data.data.resize(r.data.data.size());
    e->second.forward(r.moe, r.data.data.data(), n / M, out.data.data.data());
    return out;
  }
  auto sh = shards_.find(u.index);
  if (sh == shards_.end()) throw inference_error(r.unit + " is not hosted here");
  auto& shard = sh->second;
  auto& p = passes_.at(u.index);
  auto out_of_phase = [&] {
    const char* at = p.at == shard_pass::phase::idle ? "between passes" : p.at == shard_pass::phase::exchange ? "at an exchange" : "at the logits";
    return inference_error(std::string("a '") + to_string(op) + "' call does not fit the shard's pass, which is " + at);
  };
  const bool idle = !shard.pass_in_flight();
  // A call out of phase is refused and leaves the pass as it was.
  if (((op == infer_op::prepare || op == infer_op::begin) && !idle) ||
      ((op == infer_op::write || op == infer_op::resume) && p.at != shard_pass::phase::exchange) ||
      (op == infer_op::read && p.at == shard_pass::phase::idle))
    throw out_of_phase();
  switch (op) {
    case infer_op::prepare: {
      for (auto id : r.close) shard.close_sequence(id);
      for (auto id : r.open) shard.open_sequence(id);
      p = shard_pass{};
      infer_reply out;
      out.open_sequences = shard.open_sequences();
      return out;
    }
    case infer_op::read: {
      const tensor& t = p.at == shard_pass::phase::exchange ? p.exchange->rows : shard.logits();
      if (r.offset < 0 || r.offset >= t.size() || r.count < 1)
        throw inference_error("read of " + std::to_string(r.count) + " floats at " + std::to_string(r.offset) +
                              " is outside the stage's tensor of " + std::to_string(t.size()));
      infer_reply out;
      out.stage = 3;
      out.data = block_of(t, r.offset, r.count);
      return out;
    }
    case infer_op::write: write_part(p, r.data); return infer_reply{};
    case infer_op::abort: {
      if (shard.pass_in_flight()) shard.abort_pass();
      p = shard_pass{};
      infer_reply out;
      out.open_sequences = shard.open_sequences();
      return out;
    }
    case infer_op::begin:
    case infer_op::resume:
      // A pass that fails inside is dropped: the sequences keep the tokens of the passes before.
      try {
        if (op == infer_op::begin) {
          if (r.items.size() > max_pass_items)
            throw inference_error("a pass holds at most " + std::to_string(max_pass_items) + " items");
          p = shard_pass{};
          shard.begin_pass(r.items);
        } else {
          write_part(p, r.data);
          if (p.written != p.outputs.size())
            throw inference_error("resume after " + std::to_string(p.written) + " of the " +
                                  std::to_string(p.outputs.size()) + " floats of the experts' outputs were written");
          shard.forward_resume(p.outputs);
        }
        return next_stage(u.index);
      } catch (...) {
        if (shard.pass_in_flight()) shard.abort_pass();
        p = shard_pass{};
        throw;
      }
    case infer_op::expert: break;
  }
  throw inference_error("unknown call " + std::to_string(r.op) + " on " + r.unit);
}

}  // namespace glam
