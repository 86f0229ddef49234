#include "worker/unit_actor.hpp"

#include <chrono>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/coordinator_protocol.hpp"
#include "data/dataset.hpp"
#include "kernels/parallel.hpp"

namespace glam {

namespace {

using self_ptr = caf::stateful_actor<unit_state>*;

// Keeps the data set alive for the source that reads it.
class owned_dataset_source : public token_source {
 public:
  owned_dataset_source(const config& c, dataset d) : data_(std::move(d)), source_(c, data_) {}
  void train_batch(std::int64_t step, index shard, std::int32_t* out) const override {
    source_.train_batch(step, shard, out);
  }
  void validation_batch(index batch, index shard, std::int32_t* out) const override {
    source_.validation_batch(batch, shard, out);
  }

 private:
  dataset data_;
  dataset_source source_;
};

void report_failure(self_ptr self, const std::string& why) {
  auto& s = self->state;
  step_report r;
  r.tag = s.tag;
  r.worker = s.unit_name;
  r.error = why;
  spdlog::error("{}: job {} step {}: {}", s.unit_name, s.tag.job, s.tag.step, why);
  self->send(s.opts.coordinator, r);
}

// Sends what the engine produced: tensors to peers (in chunks), the report to the
// coordinator.
void flush(self_ptr self) {
  auto& s = self->state;
  for (auto& out : s.engine->take_outbox()) {
    const auto& peer = s.peers.at(static_cast<std::size_t>(out.to));
    for (auto& chunk : split_tensor(out.value, s.tag, out.key.encode())) {
      chunk.from = s.engine->self();
      chunk.to = out.to;
      if (s.remote.at(static_cast<std::size_t>(out.to)))
        s.opts.counters->bytes_sent += static_cast<std::int64_t>(chunk.data.size() * sizeof(float));
      self->send(peer, std::move(chunk));
    }
  }
  if (auto r = s.engine->take_report()) {
    r->tag = s.tag;
    r->compute_seconds = s.compute_seconds;
    r->host = s.opts.worker_name;
    s.opts.counters->tokens_computed += r->tokens_computed;
    self->send(s.opts.coordinator, std::move(*r));
  }
}

template <class F>
void guarded(self_ptr self, F&& f) {
  try {
    compute_guard lock(compute_mutex());
    const auto start = std::chrono::steady_clock::now();
    f();
    self->state.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } catch (const std::exception& e) {
    report_failure(self, e.what());
    return;
  }
  flush(self);
}

}  // namespace

std::shared_ptr<const token_source> open_token_source(const config& c) {
  if (c.data.synthetic) return std::make_shared<synthetic_source>(c);
  dataset d = dataset::open(c.data.dir);
  validate_against_data(c, d.vocab_size(), d.longest_trainable_sequence());
  return std::make_shared<owned_dataset_source>(c, std::move(d));
}

caf::behavior unit_actor(self_ptr self, unit_options opts) {
  auto& s = self->state;
  s.opts = std::move(opts);
  s.tag = s.opts.plan.tag;
  const auto actors = unit_actors_of(s.opts.plan.placement);
  const auto& names = actors.placement;
  for (const auto& host : actors.host) s.remote.push_back(host != s.opts.worker_name);
  s.unit_name = s.opts.unit >= 0 && static_cast<std::size_t>(s.opts.unit) < names.size()
                    ? names[static_cast<std::size_t>(s.opts.unit)].worker
                    : s.opts.worker_name + "/unit" + std::to_string(s.opts.unit);
  try {
    const config c = parse_config_string(s.opts.plan.config_toml, s.opts.plan.tag.job);
    auto layout = step_layout::from_placement(actors.placement, c.cluster.shards, c.model.experts);
    s.data = open_token_source(c);
    compute_guard lock(compute_mutex());
    s.engine = std::make_unique<step_engine>(c, layout, s.opts.unit, s.data);
    if (s.opts.plan.inject_nonfinite_step >= 0) s.engine->inject_nonfinite_gradient_at(s.opts.plan.inject_nonfinite_step);
    if (s.opts.plan.resume_step >= 0)
      s.engine->load_checkpoint(s.opts.plan.checkpoint_root,
                                read_manifest(s.opts.plan.checkpoint_root, s.opts.plan.resume_step));
  } catch (const std::exception& e) {
    s.error = std::string("cannot host the job's units: ") + e.what();
  }
  return {
      [self](peers_atom, std::vector<caf::actor> peers) { self->state.peers = std::move(peers); },
      [self](begin_atom, const step_tag& tag, bool train) {
        auto& s = self->state;
        s.tag = tag;
        if (!s.error.empty()) return report_failure(self, s.error);
        // Chunks of rounds before this one can no longer complete anything.
        for (auto i = s.assembling.begin(); i != s.assembling.end();)
          i = std::get<0>(i->first) == tag.step ? std::next(i) : s.assembling.erase(i);
        s.compute_seconds = 0;
        guarded(self, [&] { s.engine->begin(train ? tag.step : -1 - tag.step, train); });
      },
      [self](tensor_chunk& c) {
        auto& s = self->state;
        if (!s.engine) return;
        const auto key = exchange_key::decode(c.tensor_id);
        if (!key) return report_failure(self, "a tensor with an invalid exchange id from worker " + std::to_string(c.from));
        const auto id = std::make_tuple(c.tag.step, static_cast<int>(c.from), c.tensor_id);
        auto& a = s.assembling[id];
        const auto step = c.tag.step;
        const int from = c.from;
        if (auto why = a.add(std::move(c)); !why.empty()) {
          s.assembling.erase(id);
          return report_failure(self, "a bad tensor chunk from worker number " + std::to_string(from) + ": " + why);
        }
        if (!a.complete()) return;
        tensor t = a.take();
        s.assembling.erase(id);
        guarded(self, [&] { s.engine->receive(step, from, *key, std::move(t)); });
      },
      [self](checkpoint_atom, const step_tag& tag) {
        auto& s = self->state;
        checkpoint_report r{tag, s.unit_name, {}, s.error};
        if (s.engine) try {
            r.files = s.engine->write_checkpoint(s.opts.plan.checkpoint_root, tag.step, tag.epoch);
          } catch (const std::exception& e) {
            r.error = e.what();
          }
        self->send(s.opts.coordinator, std::move(r));
      },
      [self](finish_atom, const step_tag& tag, bool apply) {
        auto& s = self->state;
        if (!s.engine || tag.step != s.tag.step) return;
        try {
          compute_guard lock(compute_mutex());
          s.engine->finish(apply);
        } catch (const std::exception& e) {
          return report_failure(self, e.what());
        }
        self->send(s.opts.coordinator, applied_atom::value, tag, s.unit_name);
      },
  };
}

}  // namespace glam
