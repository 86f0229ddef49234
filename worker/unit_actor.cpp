#include "worker/unit_actor.hpp"

#include <chrono>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "data/dataset.hpp"
#include "kernels/parallel.hpp"

namespace glam {

namespace {

using self_ptr = unit_actor::stateful_pointer<unit_state>;

// A unit actor's tensors being assembled at once, at most: a round sends one actor a few
// tensors per shard and MoE layer, each assembled as its chunks come.
constexpr std::size_t max_assemblies = 4096;

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

// What goes to the coordinator (a testing cut drops it).
template <class... Ts>
void to_coordinator(self_ptr self, Ts&&... xs) {
  if (self->state.opts.faults->coordinator_cut()) return;
  self->send(self->state.opts.coordinator, std::forward<Ts>(xs)...);
}

// Only its own worker actor talks to a unit actor.
bool from_worker(self_ptr self) {
  const auto& sender = self->current_sender();
  if (sender && sender->address() == self->state.opts.worker.address()) return true;
  ++self->state.opts.counters->not_allowed;
  return false;
}

bool phase_allows(self_ptr self, bool ok, const char* what) {
  if (ok) return true;
  ++self->state.opts.counters->wrong_phase;
  spdlog::warn("{}: dropped {} in phase {}", self->state.unit_name, what, static_cast<int>(self->state.phase));
  return false;
}

void report_failure(self_ptr self, const std::string& why) {
  auto& s = self->state;
  step_report r;
  r.tag = s.opts.plan.tag;
  r.round = s.round;
  r.unit_actor = s.unit_name;
  r.worker = s.opts.worker_name;
  r.error = make_error(glam_errc::cannot_host, why);
  spdlog::error("{}: job {} {}: {}", s.unit_name, s.opts.plan.tag.job, s.round.describe(), why);
  to_coordinator(self, std::move(r));
}

// Sends what the engine produced: tensors to peers (in chunks), the report to the
// coordinator.
void flush(self_ptr self) {
  auto& s = self->state;
  const bool cut = s.opts.faults->peers_cut();
  for (auto& out : s.engine->take_outbox()) {
    if (cut && s.remote.at(static_cast<std::size_t>(out.to))) continue;  // testing: cut off from its peers
    const auto& peer = s.peers.at(static_cast<std::size_t>(out.to));
    for (auto& chunk : split_tensor(out.value, s.opts.plan.tag, s.round, out.key.encode())) {
      chunk.from = s.engine->self();
      chunk.to = out.to;
      if (s.remote.at(static_cast<std::size_t>(out.to)))
        s.opts.counters->bytes_sent += static_cast<std::int64_t>(chunk.data.size() * sizeof(float));
      self->send(peer, std::move(chunk));
    }
  }
  if (auto r = s.engine->take_report()) {
    r->tag = s.opts.plan.tag;
    r->compute_seconds = s.compute_seconds;
    r->worker = s.opts.worker_name;
    s.opts.counters->tokens_computed += r->tokens_computed;
    s.phase = unit_phase::reported;
    to_coordinator(self, std::move(*r));
  }
}

template <class F>
void guarded(self_ptr self, F&& f) {
  try {
    compute_guard lock(compute_mutex());
    const auto start = std::chrono::steady_clock::now();
    f();
    self->state.opts.faults->stretch(std::chrono::steady_clock::now() - start);
    self->state.compute_seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  } catch (const std::exception& e) {
    report_failure(self, e.what());
    return;
  }
  flush(self);
}

void take_chunk(self_ptr self, tensor_chunk& c) {
  auto& s = self->state;
  if (!s.engine) return;
  const auto key = exchange_key::decode(c.tensor_id);
  const auto shape = key ? s.engine->expected_shape(c.from, *key) : std::nullopt;
  if (!shape)
    return report_failure(self, "a tensor (id " + std::to_string(c.tensor_id) + ") from unit actor " +
                                    std::to_string(c.from) + " that the job's layout does not send this one");
  const auto id = std::make_tuple(c.round.step, c.round.train, static_cast<int>(c.from), c.tensor_id);
  auto it = s.assembling.find(id);
  if (it == s.assembling.end()) {
    if (s.assembling.size() >= max_assemblies)
      return report_failure(self, "more than " + std::to_string(max_assemblies) + " tensors in assembly at once");
    it = s.assembling.emplace(id, tensor_assembler(*shape)).first;
  }
  const auto round = c.round;
  const int from = c.from;
  const auto kind = key->kind;
  s.opts.faults->at(kind == exchange_kind::grad_part || kind == exchange_kind::grad_sum ? fault_phase::exchange
                    : kind == exchange_kind::backward_rows || kind == exchange_kind::backward_out ? fault_phase::backward
                                                                                                   : fault_phase::forward,
                    round.step);
  if (auto why = it->second.add(std::move(c)); !why.empty()) {
    s.assembling.erase(it);
    return report_failure(self, "a bad tensor chunk from unit actor " + std::to_string(from) + ": " + why);
  }
  if (!it->second.complete()) return;
  tensor t = it->second.take();
  s.assembling.erase(it);
  guarded(self, [&] { s.engine->receive(round, from, *key, std::move(t)); });
}

}  // namespace

std::shared_ptr<const token_source> open_token_source(const config& c) {
  if (c.data.synthetic) return std::make_shared<synthetic_source>(c);
  dataset d = dataset::open(c.data.dir);
  validate_against_data(c, d.vocab_size(), d.longest_trainable_sequence());
  return std::make_shared<owned_dataset_source>(c, std::move(d));
}

unit_actor::behavior_type unit_behavior(self_ptr self, unit_options opts) {
  auto& s = self->state;
  s.opts = std::move(opts);
  s.unit_name = s.opts.worker_name + "/unit" + std::to_string(s.opts.unit);
  try {
    const config c = parse_config_string(s.opts.plan.config_toml, s.opts.plan.tag.job);
    auto layout = unit_layout::of(s.opts.plan.units, c.cluster.shards, c.model.moe_as_dense_relu ? 0 : c.model.experts);
    s.unit_name = layout.actor(s.opts.unit).name;
    for (const auto& a : layout.actors()) s.remote.push_back(a.worker != s.opts.worker_name);
    s.data = open_token_source(c);
    compute_guard lock(compute_mutex());
    s.engine = std::make_unique<step_engine>(c, std::move(layout), s.opts.unit, s.data);
    if (s.opts.plan.inject_nonfinite_step >= 0) s.engine->inject_nonfinite_gradient_at(s.opts.plan.inject_nonfinite_step);
    const auto& plan = s.opts.plan;
    if (plan.from == restore_kind::checkpoint)
      s.engine->load_checkpoint(plan.checkpoint_dir, read_manifest(plan.checkpoint_dir, plan.start_step));
    else if (plan.from == restore_kind::snapshot)
      s.engine->restore(s.opts.states);
    s.opts.states.clear();
  } catch (const std::exception& e) {
    s.error = make_error(glam_errc::cannot_host, std::string("cannot host the job's units: ") + e.what());
  }
  // A unit actor ends when its worker actor says so (or ends: they are linked), never on a
  // stranger's word.
  self->set_exit_handler([self](caf::exit_msg& m) {
    if (!from_worker(self)) return;
    self->quit(m.reason);
  });
  self->set_down_handler([self](caf::down_msg&) { ++self->state.opts.counters->not_allowed; });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
    ++self->state.opts.counters->not_allowed;
    return caf::sec::unexpected_message;
  });
  self->set_exception_handler([self](std::exception_ptr& e) { return exit_reason_of(e, self->state.unit_name); });
  return {
      [self](peers_atom, std::vector<worker_actor> peers) {
        if (!from_worker(self)) return;
        self->state.peers = std::move(peers);
      },
      [self](begin_atom, const job_tag&, const round_id& round) {
        auto& s = self->state;
        if (!from_worker(self)) return;
        const bool fresh = !s.begun || round != s.round;
        const bool free = s.phase == unit_phase::idle || (s.phase == unit_phase::reported && !s.round.train);
        if (!phase_allows(self, fresh && free, "begin")) return;
        s.round = round;
        s.begun = true;
        if (s.error) return report_failure(self, error_text(s.error));
        s.phase = unit_phase::computing;
        // Chunks of other rounds can no longer complete anything.
        for (auto i = s.assembling.begin(); i != s.assembling.end();) {
          const bool same = std::get<0>(i->first) == round.step && std::get<1>(i->first) == round.train;
          i = same ? std::next(i) : s.assembling.erase(i);
        }
        s.compute_seconds = 0;
        s.opts.faults->at(round.train ? fault_phase::forward : fault_phase::validation, round.step);
        guarded(self, [&] { s.engine->begin(round); });
      },
      [self](tensor_chunk& c) {
        if (!from_worker(self)) return;
        take_chunk(self, c);
      },
      [self](checkpoint_atom, const job_tag& tag, std::int64_t step) {
        auto& s = self->state;
        if (!from_worker(self)) return;
        const bool between_rounds = s.phase == unit_phase::idle || (s.phase == unit_phase::reported && !s.round.train);
        if (!phase_allows(self, between_rounds && step != s.checkpointed, "checkpoint")) return;
        s.checkpointed = step;
        s.opts.faults->at(fault_phase::checkpoint, step);
        checkpoint_report r{tag, step, s.unit_name, {}, s.error};
        if (s.engine) try {
            r.files = s.engine->write_checkpoint(s.opts.plan.checkpoint_dir, step, tag.epoch);
          } catch (const std::exception& e) {
            r.error = make_error(glam_errc::cannot_host, e.what());
          }
        to_coordinator(self, std::move(r));
      },
      [self](finish_atom, const job_tag& tag, const round_id& round, bool apply, bool snapshot) {
        auto& s = self->state;
        if (!from_worker(self)) return;
        if (!phase_allows(self, s.engine && s.phase == unit_phase::reported && round.train && round == s.round, "finish"))
          return;
        std::vector<unit_snapshot> states;
        s.opts.faults->at(fault_phase::apply, round.step);
        try {
          compute_guard lock(compute_mutex());
          s.engine->finish(apply);
          if (snapshot) {
            s.opts.faults->at(fault_phase::snapshot, round.step);
            const bool dense = s.engine->layout().dense_keeper(s.opts.worker_name) == s.opts.unit;
            states = s.engine->snapshot(round.step + 1, tag.epoch, dense);
          }
        } catch (const std::exception& e) {
          return report_failure(self, e.what());
        }
        // The worker holds the snapshots before anyone hears the step is applied.
        for (auto& st : states) self->send(s.opts.worker, snapshot_atom::value, tag, std::move(st));
        s.phase = unit_phase::idle;
        to_coordinator(self, applied_atom::value, tag, round, s.unit_name);
      },
  };
}

}  // namespace glam
