#include "coordinator/coordinator_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "actors/fingerprint.hpp"
#include "actors/runtime_config.hpp"
#include "actors/unit_layout.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"
#include "coordinator/placement.hpp"
#include "coordinator/rebalance.hpp"
#include "data/dataset.hpp"
#include "kernels/check.hpp"
#include "model/checkpoint.hpp"
#include "model/metrics.hpp"
#include "model/step_schedule.hpp"

namespace glam {

const char* to_string(job_phase p) {
  switch (p) {
    case job_phase::placing: return "placing";
    case job_phase::computing: return "computing";
    case job_phase::applying: return "applying";
    case job_phase::checkpointing: return "checkpointing";
  }
  return "unknown";
}

void running_job::enter(job_phase to) {
  using p = job_phase;
  const bool ok = (phase == p::placing && (to == p::computing || to == p::checkpointing)) ||
                  (phase == p::computing && (to == p::computing || to == p::applying || to == p::checkpointing)) ||
                  (phase == p::applying && (to == p::computing || to == p::checkpointing)) ||
                  (phase == p::checkpointing && to == p::computing);
  GLAM_CHECK(ok, std::string("job phase ") + to_string(phase) + " -> " + to_string(to) + " is not in the table");
  phase = to;
}

namespace {

using self_ptr = coordinator_actor::stateful_pointer<coordinator_state>;

// Status lists the newest jobs only (the table keeps them all).
constexpr std::size_t status_jobs = 50;

std::string sender_node(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->node()) : std::string();
}

// Members are known by their actor (embedded workers share one node).
std::string sender_actor(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->address()) : std::string();
}

bool is_local(self_ptr self) { return sender_node(self) == caf::to_string(self->node()); }

bool from_self(self_ptr self) {
  auto& s = self->current_sender();
  if (s && s->address() == self->address()) return true;
  ++self->state.refused.not_allowed;
  return false;
}

// Every handler but the handshake starts here: messages from nodes that have not proved
// the secret are dropped and counted.
bool admitted(self_ptr self) { return self->state.gate->admit_or_count(sender_node(self)); }

// A registered worker's actor sent this.
bool from_member(self_ptr self) {
  if (!admitted(self)) return false;
  if (self->state.members.by_node(sender_actor(self))) return true;
  ++self->state.refused.not_allowed;
  return false;
}

void arm_deadline(self_ptr self) {
  auto& r = *self->state.run;
  self->delayed_send(self, self->state.opts.step_timeout, deadline_atom::value, r.id, ++self->state.deadline_serial);
}

void write_measured_event(self_ptr self, running_job& r);

// Ends the job (finished, failed or stopped) and releases its units.
void end_job(self_ptr self, job_record& j, const std::string& why, job_state st = job_state::failed) {
  auto& s = self->state;
  j.state = st;
  j.error = why;
  j.waiting.clear();
  s.jobs->persist();
  if (s.run && s.run->id == j.id) {
    write_measured_event(self, *s.run);
    s.run.reset();
  }
  if (st == job_state::finished)
    spdlog::info("job {} finished: {} steps, loss {:.6f}", j.id, j.step, j.loss);
  else
    spdlog::warn("job {} {}: {}", j.id, to_string(st), why);
  // Release the job's units on the workers still alive; the epoch fences stale messages.
  const job_tag tag{j.id, s.jobs->epoch()};
  for (auto& [name, h] : s.handles) {
    self->request(h, s.opts.request_timeout, release_atom::value, tag)
        .then([](const std::string&) {},
              [name = name](const caf::error& e) {
                spdlog::warn("worker {} did not confirm the release of its units: {}", name, error_text(e));
              });
    s.hosted[name].clear();
  }
  if (s.opts.on_job_end) s.opts.on_job_end(j);
}

void fail_run(self_ptr self, const std::string& why) {
  auto& s = self->state;
  if (!s.run) return;
  if (auto* j = s.jobs->find(s.run->id)) end_job(self, *j, why);
}

// Orders the driver's current round from every worker hosting units, with a deadline.
void start_checkpoint(self_ptr self);

void start_round(self_ptr self, bool paced = false) {
  auto& s = self->state;
  auto& r = *s.run;
  if (r.driver->finished()) {
    // A job restored at its last step (a recovery while its final checkpoint was written)
    // writes that checkpoint before it ends.
    if (s.opts.checkpoints && r.checkpointed != r.driver->steps_done()) return start_checkpoint(self);
    return end_job(self, *s.jobs->find(r.id), {}, job_state::finished);
  }
  ++s.pace_serial;
  if (!paced && s.opts.min_round.count() > 0) {
    const auto wait = r.round_start + s.opts.min_round - runtime_clock::now();
    if (wait > runtime_clock::duration::zero())
      return self->delayed_send(self, std::chrono::ceil<std::chrono::milliseconds>(wait), pace_atom::value, r.id,
                                s.pace_serial);
  }
  r.enter(job_phase::computing);
  for (const auto& a : r.plan.units)
    if (auto h = s.handles.find(a.worker); h != s.handles.end())
      self->send(h->second, begin_atom::value, r.plan.tag, r.driver->current());
  r.round_start = runtime_clock::now();
  arm_deadline(self);
}

// Orders every worker to write its units' files for the checkpoint of the steps done; the
// manifest follows once all have (checkpoint_report).
void start_checkpoint(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  r.enter(job_phase::checkpointing);
  r.checkpoint_step = r.driver->steps_done();
  r.checkpoint_files.clear();
  r.checkpoint_waiting.clear();
  const auto layout = unit_layout::of(r.plan.units, r.cfg.cluster.shards, r.cfg.model.experts);
  for (const auto& a : layout.actors()) r.checkpoint_waiting.insert(a.name);
  for (const auto& a : r.plan.units)
    if (auto h = s.handles.find(a.worker); h != s.handles.end())
      self->send(h->second, checkpoint_atom::value, r.plan.tag, r.checkpoint_step);
  arm_deadline(self);
}

// The manifest, written last: dense first, then the experts in order.
void finish_checkpoint(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  auto order = [](const unit_file_info& f) {
    auto u = unit_id::parse(f.unit);
    return u ? u->index : -1;
  };
  std::sort(r.checkpoint_files.begin(), r.checkpoint_files.end(),
            [&](const auto& a, const auto& b) { return order(a) < order(b); });
  checkpoint_manifest m;
  m.config_hash = model_config_hash(r.cfg);
  m.step = r.checkpoint_step;
  m.epoch = s.jobs->epoch();
  m.units = r.checkpoint_files;
  record_job(m, r.cfg);
  if (auto why = manifest_unit_problem(m, r.cfg); !why.empty()) throw checkpoint_error(why);
  write_manifest(r.plan.checkpoint_dir, m, r.cfg.fault.keep_checkpoints);
  spdlog::info("job {}: checkpoint of step {} in {} ({} units, {} bytes)", r.id, m.step,
               checkpoint_dir_for(r.plan.checkpoint_dir, m.step), m.units.size(), checkpoint_bytes(m));
  r.checkpointed = r.checkpoint_step;
  r.checkpoint_step = -1;
}

// Releases the running job's units (the job stays in the table, to be resumed from its
// last checkpoint when the coordinator starts again), persists, and quits.
std::string shut_down(self_ptr self) {
  auto& s = self->state;
  if (s.run) {
    const job_tag tag{s.run->id, s.jobs->epoch()};
    for (auto& [name, h] : s.handles)
      self->request(h, s.opts.request_timeout, release_atom::value, tag).then([](const std::string&) {}, [](const caf::error&) {});
    spdlog::info("coordinator: job {} stopped at step {}; it resumes from its last checkpoint", s.run->id,
                 s.run->driver ? s.run->driver->steps_done() : 0);
  }
  s.jobs->persist();
  spdlog::info("coordinator shutting down; epoch {} persisted", s.jobs->epoch());
  self->quit();
  return "bye";
}

void place_job(self_ptr self, job_record& j, const std::string& activity);

// Every placement.rebalance_every steps, once a window of the placement's load is measured:
// a new placement from the measured load, adopted when it repays its move (docs/placement.md).
// The units then move at the next step boundary, as for a join.
void maybe_rebalance(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  const auto every = r.cfg.placement.rebalance_every;
  const auto done = r.driver->steps_done();
  if (every <= 0 || r.migrate || done % every != 0 || !r.load.full() || r.driver->finished()) return;
  std::vector<worker_capacity> caps;
  for (const auto* m : s.members.workers())
    if (!s.draining.count(m->name))
      caps.push_back({m->name, m->host, m->port, m->stats.gflops > 0 ? m->stats.gflops : 1.0, m->stats.memory_limit});
  // Before any unit moved, an assumed 100 MB/s; then the rate the last move measured.
  const double rate = s.transfer_rate > 0 ? s.transfer_rate : 100e6;
  const auto d = plan_rebalance(r.cfg, r.plan.units, caps, r.load.worker_seconds(), rate);
  spdlog::info("job {} step {}: balancedness {:.3f}; rebalance {}: {}", r.id, done, r.load.balancedness(),
               d.adopt ? "adopted" : "not adopted", d.why);
  if (!d.adopt) return;
  r.migrate = true;
  r.next_placement = d.proposed;
  r.rebalance = {{"predicted_seconds_before", d.predicted_now}, {"predicted_seconds_after", d.predicted_new},
                 {"predicted_gain", d.gain}, {"busiest_seconds_before", r.load.busiest_seconds()},
                 {"balancedness_before", r.load.balancedness()}};
}

// A step is committed (and checkpointed when due): the units move when a worker joined or
// drains, or a rebalance was adopted, and the step's snapshots were taken; else the next
// round begins.
void after_commit(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  const auto done = r.driver->steps_done();
  if (r.migrate && r.snapshot_step == done && !r.driver->finished()) {
    // Every worker holds its own units' snapshots of this step (its unit actors handed them
    // over before they confirmed the step): they are where the units move from.
    auto& ledger = s.ledgers[r.id];
    const auto layout = unit_layout::of(r.plan.units, r.cfg.cluster.shards, r.cfg.model.experts);
    for (const auto& a : r.plan.units)
      for (const auto& unit : layout.snapshot_units_of(a.worker)) ledger.record(a.worker, unit, done);
    r.event = {{"event", r.next_placement ? "rebalance" : s.draining.empty() ? "join" : "drain"}};
    if (r.next_placement) r.event.update(r.rebalance);
    r.event_start = runtime_clock::now();
    return place_job(self, *s.jobs->find(r.id), "migrating");
  }
  maybe_rebalance(self);
  start_round(self);
}

// The sgemm rate MFU is measured against: the one given (glam train measures its own), else
// what the job's workers measured, once per machine (workers on one machine share its cores).
double sgemm_flops_of(const coordinator_state& s, const running_job& r) {
  if (s.opts.sgemm_flops > 0) return s.opts.sgemm_flops;
  std::map<std::string, double> per_host;
  for (const auto* m : s.members.workers())
    for (const auto& a : r.plan.units)
      if (a.worker == m->name) per_host[m->host] = std::max(per_host[m->host], m->stats.gflops * 1e9);
  double sum = 0;
  for (const auto& [host, flops] : per_host) sum += flops;
  return sum;
}

// Every unit actor reported (and, for a training step, applied the decision): commit the
// round, record the step's metrics once it is complete, and go on.
void complete_round(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  const double seconds = std::chrono::duration<double>(runtime_clock::now() - r.round_start).count();
  if (auto done = r.driver->next(seconds)) {
    auto* j = s.jobs->find(r.id);
    const auto& m = done->metrics;
    j->step = r.driver->steps_done();
    j->loss = m.loss.loss;
    j->tokens_per_s = done->seconds > 0 ? double(m.tokens) / done->seconds : 0;
    auto line = step_metrics_json(m, done->seconds, r.flops_per_token, sgemm_flops_of(s, r), done->val_loss);
    // What the step spent outside the busiest worker's kernels: messaging and waiting.
    line["compute_seconds"] = done->compute_seconds;
    line["exchange_share"] = done->seconds > 0 ? std::max(0.0, 1 - done->compute_seconds / done->seconds) : 0.0;
    s.jobs->append_metrics(j->id, line.dump());
    s.jobs->persist();
    if (s.opts.log_steps)
      spdlog::info("job {} step {}: loss {:.6f}, aux {:.6f}, {:.0f} tokens/s{}{}", j->id, m.step, m.loss.loss,
                   m.loss.aux, j->tokens_per_s, m.skipped ? ", skipped (gradients not finite)" : "",
                   done->val_loss ? fmt::format(", val_loss {:.6f}", *done->val_loss) : std::string());
    if (s.opts.on_step) s.opts.on_step(*j, line);
    r.load.add({done->worker_seconds, m.tokens_per_expert});
    if (r.load.full()) write_measured_event(self, r);
    if (s.opts.checkpoints && step_schedule(r.cfg).checkpoints_at(r.driver->steps_done())) return start_checkpoint(self);
    return after_commit(self);
  }
  start_round(self);
}

// A message of the running job's unit actors, current epoch, from the node of the worker
// that hosts the unit actor it names; anything else is dropped and counted.
running_job* run_of_unit_actor(self_ptr self, const job_tag& tag, const std::string& unit_actor) {
  auto& s = self->state;
  if (!admitted(self)) return nullptr;
  if (!s.run || tag.job != s.run->id || tag.epoch != s.jobs->epoch()) {
    ++s.refused.stale;
    return nullptr;
  }
  const auto slash = unit_actor.find('/');
  const auto worker = unit_actor.substr(0, slash == std::string::npos ? 0 : slash);
  auto h = s.handles.find(worker);
  const bool hosted = std::any_of(s.run->plan.units.begin(), s.run->plan.units.end(),
                                  [&](const worker_assignment& a) { return a.worker == worker; });
  if (!hosted || h == s.handles.end() || caf::to_string(h->second.node()) != sender_node(self)) {
    ++s.refused.not_allowed;
    return nullptr;
  }
  return s.run.get();
}

// A rebalance's event waits for its measured gain (the busiest worker's seconds over a
// window of the new placement against before); it is written then, or when the job moves on
// (measured_gain null).
void write_measured_event(self_ptr self, running_job& r) {
  if (r.measured_event.is_null()) return;
  const double before = r.measured_event.value("busiest_seconds_before", 0.0);
  if (r.load.full() && before > 0) r.measured_event["measured_gain"] = 1.0 - r.load.busiest_seconds() / before;
  else r.measured_event["measured_gain"] = nullptr;
  self->state.jobs->append_metrics(r.id, r.measured_event.dump());
  r.measured_event = nlohmann::json{};
}

// Writes the run's event (a recovery, join, drain or rebalance) to the job's metrics once it
// is over: done, or cut short by a recovery (`interrupted_by`).
void record_event(self_ptr self, running_job& r, const std::string& interrupted_by = {}) {
  auto& s = self->state;
  if (r.event.is_object() && r.event.value("event", "") != "start") {
    auto* j = s.jobs->find(r.id);
    const double seconds = std::chrono::duration<double>(runtime_clock::now() - r.event_start).count();
    r.event["workers"] = j->workers;
    r.event["bytes"] = r.bytes_moved;
    r.event["seconds"] = seconds;
    if (r.bytes_moved > 0 && seconds > 0) s.transfer_rate = double(r.bytes_moved) / seconds;
    if (!interrupted_by.empty()) r.event["interrupted_by"] = interrupted_by;
    if (r.event["event"] == "rebalance" && interrupted_by.empty()) r.measured_event = std::move(r.event);
    else s.jobs->append_metrics(r.id, r.event.dump());
  }
  r.event = nlohmann::json{};
}

bool phase_is(self_ptr self, const running_job& r, job_phase p) {
  if (r.phase == p) return true;
  ++self->state.refused.stale;
  return false;
}

// A global rollback (docs/fault-tolerance.md): a new epoch fences everything of the old
// placement, the units are placed on the live workers, every unit restores the newest state
// they all have (memory snapshots, else a checkpoint), and the job replays from there.
// After too many failed attempts in a row the job fails with the reason.
void recover(self_ptr self, const std::string& why) {
  auto& s = self->state;
  if (!s.run) return;
  auto* j = s.jobs->find(s.run->id);
  constexpr int max_attempts = 8;
  if (++s.run->failed_placements > max_attempts)
    return end_job(self, *j, why + "; " + std::to_string(max_attempts) + " recoveries in a row failed");
  spdlog::warn("job {}: {} at step {}: recovering", j->id, why, j->step);
  write_measured_event(self, *s.run);
  // A join or drain whose units were still moving ends here, and the recovery places them;
  // a recovery that fails again goes on as the same event, timed from the first detection.
  const std::string ongoing = s.run->event.is_object() ? s.run->event.value("event", "") : "";
  if (ongoing != "recovery") {
    if (s.run->phase == job_phase::placing) record_event(self, *s.run, why);
    // detected_at_ms: the wall clock other processes share, to time detection (glam bench recovery).
    const auto wall = std::chrono::system_clock::now().time_since_epoch();
    s.run->event = {{"event", "recovery"},
                    {"reason", why},
                    {"detected_at_ms", std::chrono::duration_cast<std::chrono::milliseconds>(wall).count()}};
    s.run->event_start = runtime_clock::now();
  }
  place_job(self, *j, "recovering");
}

// ---- Serving sessions (docs/serving.md, "The actor backend") ----

// How long a call on a unit may take (a prefill of a big batch), and a load of the units.
constexpr std::chrono::seconds infer_call_timeout{300};

// Ends a session: its workers drop its units, clients waiting for it hear why.
void end_session(self_ptr self, const std::string& id, const std::string& why) {
  auto& s = self->state;
  auto* sess = s.sessions.find(id);
  if (!sess) return;
  std::set<std::string> workers;
  for (const auto& [unit, worker] : sess->owner) workers.insert(worker);
  for (const auto& w : workers)
    if (auto h = s.handles.find(w); h != s.handles.end()) self->send(h->second, infer_end_atom::value, id);
  if (auto w = s.session_waiters.find(id); w != s.session_waiters.end()) {
    for (auto& rp : w->second) rp.deliver(make_error(glam_errc::cannot_host, "session " + id + " ended: " + why));
    s.session_waiters.erase(w);
  }
  spdlog::info("serving: session {} ended: {}", id, why);
  s.sessions.end(id);
}

void session_ready_check(self_ptr self, const std::string& id) {
  auto& s = self->state;
  auto* sess = s.sessions.find(id);
  if (!sess || !sess->ready()) return;
  if (auto w = s.session_waiters.find(id); w != s.session_waiters.end()) {
    const auto view = sess->view();
    for (auto& rp : w->second) rp.deliver(view);
    s.session_waiters.erase(w);
  }
}

// Asks every worker with units of the session still to load to load them.
void host_session_units(self_ptr self, const std::string& id) {
  auto& s = self->state;
  auto* sess = s.sessions.find(id);
  if (!sess) return;
  for (const auto& worker : sess->workers_loading()) {
    auto h = s.handles.find(worker);
    if (h == s.handles.end()) return end_session(self, id, "worker " + worker + " is gone");
    auto a = sess->assignment_for(worker);
    std::string list;
    for (const auto& u : a.units) list += " " + u;
    spdlog::info("serving: session {}: {} loads{}", id, worker, list);
    self->request(h->second, infer_call_timeout, infer_host_atom::value, a)
        .then(
            [self, id, worker](const std::string& units) {
              std::vector<std::string> loaded;
              std::string::size_type at = 0;
              while (at < units.size()) {
                auto space = units.find(' ', at);
                if (space == std::string::npos) space = units.size();
                if (space > at) loaded.push_back(units.substr(at, space - at));
                at = space + 1;
              }
              self->state.sessions.loaded(id, worker, loaded);
              session_ready_check(self, id);
            },
            [self, id, worker](const caf::error& e) {
              // A worker that went down meanwhile is handled by worker_lost.
              if (!self->state.members.by_name(worker)) return;
              end_session(self, id, "worker " + worker + " cannot load its units: " + error_text(e));
            });
  }
}

// A worker is lost: its units of every session move to the survivors and load again there
// (from the checkpoint); calls in flight to it fail, and their clients replay.
void sessions_lose_worker(self_ptr self, const std::string& name) {
  auto& s = self->state;
  std::vector<std::string> survivors;
  for (const auto* m : s.members.workers())
    if (m->name != name && !s.draining.count(m->name)) survivors.push_back(m->name);
  for (const auto& id : s.sessions.lose_worker(name, survivors)) {
    if (survivors.empty()) {
      end_session(self, id, "worker " + name + " was lost and no other worker is left");
      continue;
    }
    spdlog::warn("serving: session {}: worker {} lost; its units are placed again", id, name);
    host_session_units(self, id);
  }
  for (auto it = s.infer_calls.begin(); it != s.infer_calls.end();)
    if (it->second.worker == name) {
      it->second.promise.deliver(make_error(glam_errc::unreachable, "worker " + name + " was lost during the call"));
      it = s.infer_calls.erase(it);
    } else {
      ++it;
    }
}

void worker_lost(self_ptr self, const member& m, const std::string& how, bool tell_it = false) {
  auto& s = self->state;
  if (auto h = s.handles.find(m.name); h != s.handles.end()) {
    // A worker declared dead while its process lives (stopped, hung) hears so when it runs
    // again, and registers anew instead of waiting on a coordinator that forgot it.
    if (tell_it) self->send(h->second, evict_atom::value, how);
    // A remote worker's node must prove the secret again; our own node stays admitted.
    if (h->second.node() != self->node()) s.gate->revoke(caf::to_string(h->second.node()));
    self->demonitor(h->second.address());
    s.handles.erase(h);
  }
  s.hosted.erase(m.name);
  s.members.touch();
  spdlog::warn("membership: worker {} ({}:{}) {}; {} workers left", m.name, m.host, m.port, how, s.members.size());
  for (auto& [job, ledger] : s.ledgers) ledger.forget_worker(m.name);
  if (auto d = s.draining.find(m.name); d != s.draining.end()) {
    for (auto& rp : d->second) rp.deliver("worker " + m.name + " " + how);
    s.draining.erase(d);
  }
  // A worker of the running job's plan is lost: a global rollback onto the survivors. One
  // without units (drained, or kept for the snapshots it holds) matters only while the
  // units are being placed, when they may fetch from it.
  if (s.run && std::any_of(s.run->plan.units.begin(), s.run->plan.units.end(), [&](const worker_assignment& a) {
        return a.worker == m.name &&
               (s.run->phase == job_phase::placing || !a.shards.empty() || !a.experts.empty());
      }))
    recover(self, "worker " + m.name + " (" + m.host + ":" + std::to_string(m.port) + ") " + how);
  sessions_lose_worker(self, m.name);
}

std::string checkpoint_dir_of(const coordinator_state& s, const config& c) {
  if (!s.opts.job_checkpoint_dir.empty()) return s.opts.job_checkpoint_dir;
  const auto root = s.opts.checkpoint_root.empty() ? s.jobs->state_dir() + "/checkpoints" : s.opts.checkpoint_root;
  return root + "/" + c.name;  // a valid name: one path component, not "." or ".."
}

void hosted_by(self_ptr self, const std::string& id, const std::string& worker, std::uint64_t bytes);

std::vector<std::string> snapshot_units(const config& c) {
  std::vector<std::string> out{dense_state_name()};
  for (index e = 0; e < (c.model.moe_as_dense_relu ? 0 : c.model.experts); ++e) out.push_back(unit_id::expert(e).name());
  return out;
}

// How many units have another worker in `now` than in `before`.
int units_moved(const placement& before, const placement& now) {
  std::map<std::string, std::string> owner;
  for (const auto& a : before)
    for (const auto& u : unit_names(a)) owner[u] = a.worker;
  int moved = 0;
  for (const auto& a : now)
    for (const auto& u : unit_names(a)) moved += owner.count(u) == 0 || owner[u] != a.worker;
  return moved;
}

// The one restore path (docs/fault-tolerance.md): a job that starts, is submitted again,
// comes back after a coordinator restart, recovers from a lost worker or moves its units
// is placed on the live workers (draining ones excepted), in a new epoch, and every unit
// restores the newest state there is — the in-memory snapshots of a step every unit has on
// a live worker, at or before the last committed step; else the newest valid checkpoint;
// else the initial parameters — and the job trains on (or replays) from there.
void place_job(self_ptr self, job_record& j, const std::string& activity) {
  auto& s = self->state;
  const config c = parse_config_string(j.config_toml, j.id);  // validated at submit
  const index experts = c.model.moe_as_dense_relu ? 0 : c.model.experts;
  const placement before = s.run ? s.run->plan.units : placement{};
  const bool ongoing = s.run && !s.run->event.is_null();
  auto event_start = ongoing ? s.run->event_start : runtime_clock::now();
  nlohmann::json keep_event = ongoing ? std::move(s.run->event) : nlohmann::json{{"event", "start"}};
  if (!ongoing && s.parked && s.parked->job == j.id) {
    keep_event = std::move(s.parked->event);
    event_start = s.parked->start;
  }
  s.parked.reset();
  const int failures = s.run ? s.run->failed_placements : 0;
  auto wait = [&](const std::string& why) {
    if (keep_event.value("event", "") != "start") s.parked = coordinator_state::parked_event{j.id, keep_event, event_start};
    if (j.waiting != why) spdlog::info("job {} waits: {}", j.id, why);
    j.state = job_state::pending;
    j.waiting = why;
    s.jobs->persist();
    s.run.reset();
  };
  std::vector<worker_capacity> caps;
  std::set<std::string> live;
  for (const auto* m : s.members.workers()) {
    live.insert(m->name);
    if (!s.draining.count(m->name))
      caps.push_back({m->name, m->host, m->port, m->stats.gflops > 0 ? m->stats.gflops : 1.0, m->stats.memory_limit});
  }
  if (caps.empty()) return wait("no workers: start one with glam worker");
  placement units;
  // A rebalance's placement, while every worker it uses is still here; else a new one.
  const bool rebalanced = activity == "migrating" && s.run && s.run->next_placement &&
                          std::all_of(s.run->next_placement->begin(), s.run->next_placement->end(), [&](const auto& a) {
                            return std::any_of(caps.begin(), caps.end(), [&](const auto& k) { return k.name == a.worker; });
                          });
  try {
    units = rebalanced                        ? *s.run->next_placement
            : s.opts.random_placement_seed != 0 ? random_placement(caps, c.cluster.shards, experts, s.opts.random_placement_seed)
                                                : place_units(caps, c.cluster.shards, experts, unit_costs_of(c));
  } catch (const std::exception& e) {
    return wait(e.what());
  }
  // Every live worker is in the plan, those without units too: they hold snapshots others
  // may fetch (a draining worker, a survivor).
  for (const auto* m : s.members.workers())
    if (std::none_of(units.begin(), units.end(), [&](const worker_assignment& a) { return a.worker == m->name; }))
      units.push_back({m->name, m->host, m->port, {}, {}});

  // The restore point.
  const auto dir = checkpoint_dir_of(s, c);
  const std::int64_t committed = j.step;
  auto snapshot = s.ledgers[j.id].newest_complete(snapshot_units(c), live, committed);
  std::optional<checkpoint_manifest> checkpoint;
  if (s.opts.resume || activity != "starting") try {
      std::vector<std::string> skipped;
      checkpoint = latest_valid_checkpoint(dir, c, &skipped);
      for (const auto& why : skipped) spdlog::warn("job {}: checkpoint skipped: {}", j.id, why);
    } catch (const std::exception& e) {
      return end_job(self, j, e.what());
    }
  job_plan plan;
  plan.config_toml = j.config_toml;
  plan.units = units;
  plan.checkpoint_dir = s.opts.checkpoints ? dir : std::string();
  plan.inject_nonfinite_step = s.opts.inject_nonfinite_step;
  if (snapshot && (!checkpoint || snapshot->step >= checkpoint->step)) {
    plan.from = restore_kind::snapshot;
    plan.start_step = snapshot->step;
    for (const auto& [unit, holders] : snapshot->holders) plan.sources.push_back({unit, holders.front()});
  } else if (checkpoint) {
    plan.from = restore_kind::checkpoint;
    plan.start_step = checkpoint->step;
    plan.checkpoint_dir = dir;
  }
  if (plan.from != restore_kind::snapshot && checkpoint) remove_checkpoints_after(dir, checkpoint->step);
  plan.tag = {j.id, s.jobs->bump_epoch()};

  j.state = job_state::running;
  j.waiting.clear();
  j.step = plan.start_step;
  j.workers.clear();
  for (const auto& a : units) j.workers.push_back(a.worker);
  s.jobs->truncate_metrics(j.id, j.step);
  s.jobs->persist();
  const char* from = plan.from == restore_kind::snapshot ? "memory snapshots" : plan.from == restore_kind::checkpoint ? "the checkpoint" : "the initial parameters";
  spdlog::info("job {} ({}): epoch {}, from {} of step {}", j.id, activity, plan.tag.epoch, from, plan.start_step);

  auto run = std::make_unique<running_job>();
  run->id = j.id;
  run->cfg = c;
  run->plan = plan;
  run->activity = activity;
  run->flops_per_token = double(make_plan(c, 1).flops_per_token_train);
  run->load = load_monitor(c.placement.window);
  if (plan.from == restore_kind::checkpoint) run->checkpointed = plan.start_step;
  run->event = std::move(keep_event);
  run->event_start = event_start;
  run->failed_placements = failures;
  run->event["epoch"] = plan.tag.epoch;
  run->event["from_step"] = plan.start_step;
  run->event["steps_replayed"] = committed - plan.start_step;
  run->event["restored_from"] = from;
  run->event["units_moved"] = units_moved(before, units);
  for (const auto& a : units) run->waiting_hosts.insert(a.worker);
  s.run = std::move(run);
  s.hosted.clear();
  for (const auto& a : units) {
    auto& hosted = s.hosted[a.worker];
    hosted = unit_names(a);
    std::string list;
    for (const auto& u : hosted) list += (list.empty() ? "" : " ") + u;
    spdlog::info("placement: job {} epoch {}: {} hosts [{}]", j.id, plan.tag.epoch, a.worker, list);
    auto h = s.handles.find(a.worker);
    if (h == s.handles.end()) continue;
    auto id = j.id;
    auto epoch = plan.tag.epoch;
    auto worker = a.worker;
    // Twice the usual deadline: the worker first connects to its peers, each with half.
    self->request(h->second, 2 * s.opts.request_timeout, host_atom::value, plan)
        .then([self, id, worker](std::uint64_t bytes) { hosted_by(self, id, worker, bytes); },
              [self, id, epoch, worker](const caf::error& e) {
                auto& s = self->state;
                if (!s.run || s.run->id != id || s.run->plan.tag.epoch != epoch) return;
                if (e.category() == glam_error_category && e.code() == static_cast<std::uint8_t>(glam_errc::cannot_host))
                  return fail_run(self, "worker " + worker + " cannot host its units: " + error_text(e));
                recover(self, "worker " + worker + " could not take its part of the placement (" + error_text(e) + ")");
              });
  }
}

// Places the active pending job once the workers have settled (after a restart: once the
// workers that ran it are back, or the grace is over).
void try_start(self_ptr self) {
  auto& s = self->state;
  auto* j = s.jobs->active();
  if (!j || j->state != job_state::pending || s.run) return;
  if (s.members.size() == 0) {
    j->waiting = "no workers: start one with glam worker";
    return;
  }
  const bool all_back = std::all_of(j->workers.begin(), j->workers.end(),
                                    [&](const std::string& w) { return s.members.by_name(w) != nullptr; });
  if (!all_back && runtime_clock::now() - s.started < s.opts.rejoin_grace) {
    j->waiting = "waiting for the workers that ran it to come back";
    return;
  }
  place_job(self, *j, "starting");
}

void hosted_by(self_ptr self, const std::string& id, const std::string& worker, std::uint64_t bytes) {
  auto& s = self->state;
  if (!s.run || s.run->id != id || s.run->phase != job_phase::placing) return;
  s.run->bytes_moved += bytes;
  s.run->waiting_hosts.erase(worker);
  if (!s.run->waiting_hosts.empty()) return;
  // Every unit actor reports every round.
  std::vector<std::string> unit_actors;
  const auto layout = unit_layout::of(s.run->plan.units, s.run->cfg.cluster.shards, s.run->cfg.model.experts);
  for (const auto& a : layout.actors()) unit_actors.push_back(a.name);
  auto* j = s.jobs->find(id);
  auto& r = *s.run;
  r.driver = std::make_unique<step_driver>(r.cfg, unit_actors, j->step);
  r.failed_placements = 0;
  spdlog::info("job {}: every unit hosted; training from step {}", id, j->step);
  record_event(self, r);
  // Drained workers host nothing now: they may go.
  for (auto d = s.draining.begin(); d != s.draining.end();) {
    auto h = s.handles.find(d->first);
    if (h != s.handles.end()) self->send(h->second, drained_atom::value);
    for (auto& rp : d->second) rp.deliver("worker " + d->first + " drained");
    d = s.draining.erase(d);
  }
  start_round(self);
}

// Refuses a job at submit for every reason that can be known then, so that an accepted job
// never fails for it later: the file's size, the config, the name, and the data it names.
caf::error submit_problem(const std::string& toml, const std::string& source, config& c) {
  if (toml.size() > max_job_file_bytes)
    return make_error(glam_errc::invalid_job, "the job file has " + std::to_string(toml.size()) +
                                                  " bytes; a job file has at most " + std::to_string(max_job_file_bytes));
  if (source.size() > 4096) return make_error(glam_errc::invalid_job, "the job file's name is over 4096 characters");
  try {
    c = parse_config_string(toml, source);
    if (!c.data.synthetic) {
      auto d = dataset::open(c.data.dir);
      validate_against_data(c, d.vocab_size(), d.longest_trainable_sequence());
    }
  } catch (const std::exception& e) {
    return make_error(glam_errc::invalid_job, e.what());
  }
  return caf::none;
}

nlohmann::json refusals_json(const refusal_counts& r) {
  return {{"unauthenticated", r.unauthenticated}, {"not_allowed", r.not_allowed},
          {"system_messages", r.system_messages}, {"stale", r.stale},
          {"malformed", r.malformed},             {"unexpected", r.unexpected}};
}

nlohmann::json relay_json(const relay_refusals& r) {
  return {{"secret", r.secret}, {"handshake", r.handshake}, {"connections", r.connections},
          {"evicted", r.evicted}, {"frames", r.frames},       {"idle", r.idle}};
}

}  // namespace

std::string job_json(const job_record& j) {
  nlohmann::json o{{"id", j.id},     {"name", j.name},   {"state", to_string(j.state)},
                   {"step", j.step}, {"steps", j.steps}, {"loss", j.loss},
                   {"tokens_per_s", j.tokens_per_s},     {"error", j.error}, {"waiting", j.waiting}};
  o["progress"] = to_json(j.progress);  // counters and gauges for /metrics and the dashboard
  return o.dump();
}

// The job's activity as status shows it: recovering or migrating while the units are being
// placed again, else its phase.
std::string activity_of(const coordinator_state& s, const job_record& j) {
  if (!s.run || s.run->id != j.id) return {};
  if (s.run->phase == job_phase::placing) return s.run->activity;
  return to_string(s.run->phase);
}

std::string status_json(const coordinator_state& s) {
  nlohmann::json o;
  auto refused = s.refused;
  refused.unauthenticated = s.gate->dropped();
  o["coordinator"] = {{"listen", s.opts.listen}, {"epoch", s.jobs->epoch()}, {"refused", refusals_json(refused)}};
  if (s.opts.listen_port) o["coordinator"]["listen"] = s.opts.listen + ":" + std::to_string(s.opts.listen_port->load());
  if (s.opts.http_port && s.opts.http_port->load() > 0)
    o["coordinator"]["http"] = s.opts.http_host + ":" + std::to_string(s.opts.http_port->load());
  if (s.opts.daemon_relay) {
    const auto& c = s.opts.daemon_relay->counters();
    // Every connection to the coordinator is inbound, through its relay: these are all the
    // bytes it sends and receives (it relays no training tensor; the calls of serving
    // sessions do pass through it).
    o["coordinator"]["bytes_received"] = c.bytes_in.load();
    o["coordinator"]["bytes_sent"] = c.bytes_out.load();
    o["coordinator"]["connections"] = {{"accepted", c.accepted.load()},
                                       {"authenticated", c.authenticated.load()},
                                       {"encrypted", c.encrypted.load()}};
    o["coordinator"]["relay_refused"] = relay_json(relay_refusals_of(c));
  }
  o["workers"] = nlohmann::json::array();
  auto now = runtime_clock::now();
  const auto busy = s.run ? s.run->load.worker_seconds() : std::map<std::string, double>{};
  for (const auto* m : s.members.workers()) {
    auto h = s.hosted.find(m->name);
    auto b = busy.find(m->name);
    o["workers"].push_back(
        {{"name", m->name},
         {"address", m->host + ":" + std::to_string(m->port)},
         {"units", h == s.hosted.end() ? std::vector<std::string>{} : h->second},
         {"tokens_computed", m->stats.tokens_computed},
         {"bytes_sent", m->stats.bytes_sent},
         {"bytes_received", m->stats.bytes_received},
         {"memory_bytes", m->stats.memory_bytes},
         {"memory_limit", m->stats.memory_limit},
         {"gflops", m->stats.gflops},
         {"peers", m->stats.peers},
         {"refused", refusals_json(m->stats.refused)},
         {"relay_refused", relay_json(m->stats.relay)},
         {"busy_seconds_per_step", b == busy.end() ? 0.0 : b->second},
         {"last_heard_ms", std::chrono::duration_cast<std::chrono::milliseconds>(now - m->last_seen).count()}});
  }
  o["sessions"] = nlohmann::json::array();
  for (const auto& [id, sess] : s.sessions.all()) {
    nlohmann::json units = nlohmann::json::object();
    for (const auto& [unit, worker] : sess.owner) units[unit] = worker;
    o["sessions"].push_back({{"id", id},
                             {"checkpoint", sess.spec.checkpoint},
                             {"step", sess.spec.step},
                             {"units", units},
                             {"loading", std::vector<std::string>(sess.loading.begin(), sess.loading.end())}});
  }
  o["jobs"] = nlohmann::json::array();
  const auto& jobs = s.jobs->jobs();
  const std::size_t first = jobs.size() > status_jobs ? jobs.size() - status_jobs : 0;
  for (std::size_t i = first; i < jobs.size(); ++i) {
    auto j = nlohmann::json::parse(job_json(jobs[i]));
    j["activity"] = activity_of(s, jobs[i]);
    if (s.run && s.run->id == jobs[i].id) {
      const auto& r = *s.run;
      j["epoch"] = r.plan.tag.epoch;
      // The load of the current placement over its window (docs/placement.md).
      j["balancedness"] = r.load.balancedness();
      j["experts"] = nlohmann::json::array();
      const auto share = r.load.routed_share();
      for (const auto& a : r.plan.units)
        for (index e : a.experts)
          j["experts"].push_back({{"expert", e},
                                  {"worker", a.worker},
                                  {"load_share", e < index(share.size()) ? share[static_cast<std::size_t>(e)] : 0.0}});
    }
    o["jobs"].push_back(j);
  }
  return o.dump();
}

coordinator_actor::behavior_type coordinator_behavior(self_ptr self, coordinator_options opts) {
  auto& s = self->state;
  s.opts = opts;
  s.gate = std::make_unique<auth_gate>(opts.secret, caf::to_string(self->node()));
  s.jobs = std::make_unique<job_table>(opts.state_dir);
  // A job that was running when the coordinator went down waits for workers again.
  for (const auto& j : s.jobs->jobs())
    if (j.state == job_state::running) {
      auto* jj = s.jobs->find(j.id);
      jj->state = job_state::pending;
      s.jobs->bump_epoch();
    }
  // CAF's system messages never reach a handler's gate: check them here. Only this process
  // may stop the coordinator; a down message counts only from the worker actor it names.
  self->set_exit_handler([self](caf::exit_msg& m) {
    if (!is_local(self) || !self->current_sender()) {
      ++self->state.refused.system_messages;
      return;
    }
    self->quit(m.reason);
  });
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& sender = self->current_sender();
    if (!sender || sender->address() != dm.source) {
      ++self->state.refused.system_messages;
      return;
    }
    auto m = self->state.members.remove_node(caf::to_string(dm.source));
    if (!m.name.empty()) return worker_lost(self, m, "went down (" + self->system().render(dm.reason) + ")");
    // A serving client went away: its sessions end.
    std::vector<std::string> ended;
    for (const auto& [id, sess] : self->state.sessions.all())
      if (sess.client == caf::to_string(dm.source)) ended.push_back(id);
    for (const auto& id : ended) end_session(self, id, "its client went away");
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
    if (self->state.gate->admit_or_count(sender_node(self))) ++self->state.refused.unexpected;
    return caf::sec::unexpected_message;
  });
  self->set_exception_handler([](std::exception_ptr& e) { return exit_reason_of(e, "coordinator"); });
  self->send(self, tick_atom::value);
  return {
      [self](hello_atom, const hello_msg& h) -> caf::result<challenge_msg> {
        auto& s = self->state;
        if (auto why = compatibility_problem(h, local_fingerprint()); !why.empty()) {
          ++s.refused.malformed;
          spdlog::warn("membership: refused {} '{}': {}", h.role.substr(0, 16), h.name.substr(0, 64), why);
          return make_error(glam_errc::refused, why);
        }
        challenge_msg c;
        c.nonce = s.gate->issue_nonce(sender_node(self), h);
        c.server_proof = s.gate->answer(h.client_nonce);
        return c;
      },
      [self](auth_atom, const proof_msg& p) -> caf::result<std::string> {
        auto& s = self->state;
        auto node = sender_node(self);
        auto hello = s.gate->verify(node, p.nonce, p.proof);
        if (!hello) {
          ++s.refused.unauthenticated;
          spdlog::warn("membership: a node failed to prove the cluster secret");
          return make_error(glam_errc::wrong_secret,
                            "wrong cluster secret: give the coordinator's secret with --secret-file");
        }
        if (hello->role != "worker") return std::string("authenticated");
        if (s.members.size() >= max_workers) {
          ++s.refused.malformed;
          return make_error(glam_errc::refused, "the cluster has " + std::to_string(max_workers) +
                                                    " workers, the most a coordinator takes");
        }
        auto why = s.members.add(hello->name, sender_actor(self), hello->listen_host, hello->listen_port,
                                 runtime_clock::now());
        if (!why.empty()) return make_error(glam_errc::refused, why);
        s.gate->grant(node);
        auto handle = caf::actor_cast<worker_actor>(self->current_sender());
        if (auto old = s.handles.find(hello->name); old != s.handles.end()) self->demonitor(old->second.address());
        s.handles[hello->name] = handle;
        self->monitor(handle);
        spdlog::info("membership: worker {} joined from {}:{}; {} workers", hello->name, hello->listen_host,
                     hello->listen_port, s.members.size());
        if (s.run && s.run->phase != job_phase::placing) {
          spdlog::info("job {}: units move to {} at the next step boundary", s.run->id, hello->name);
          s.run->migrate = true;
        }
        return "registered as " + hello->name;
      },
      [self](heartbeat_atom, const worker_stats& st) {
        if (!from_member(self)) return;
        self->state.members.heartbeat(sender_actor(self), st, runtime_clock::now());
      },
      [self](leave_atom) {
        if (!from_member(self)) return;
        auto m = self->state.members.remove_node(sender_actor(self));
        if (!m.name.empty()) worker_lost(self, m, "left");
      },
      [self](const snapshot_held& held) {
        auto& s = self->state;
        if (!from_member(self)) return;
        const auto* m = s.members.by_node(sender_actor(self));
        auto* j = s.jobs->find(held.tag.job);
        if (!j || is_final(j->state) || held.step < 0 || held.step > j->steps) {
          ++s.refused.stale;
          return;
        }
        const config c = parse_config_string(j->config_toml, j->id);
        const auto known = snapshot_units(c);
        for (const auto& unit : held.units) {
          if (std::find(known.begin(), known.end(), unit) == known.end()) {
            ++s.refused.malformed;
            continue;
          }
          s.ledgers[j->id].record(m->name, unit, held.step);
        }
      },
      [self](drain_atom, const std::string& worker) -> caf::result<std::string> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        auto h = s.handles.find(worker);
        if (h == s.handles.end())
          return make_error(glam_errc::unknown_job, "no worker named '" + worker.substr(0, 80) + "': see glam status");
        auto rp = self->make_response_promise<std::string>();
        s.draining[worker].push_back(rp);
        if (s.run && s.hosted.count(worker) && !s.hosted[worker].empty()) {
          spdlog::info("worker {} drains: its units move at the next step boundary", worker);
          s.run->migrate = true;
        } else {
          self->send(h->second, drained_atom::value);
          for (auto& p : s.draining[worker]) p.deliver("worker " + worker + " drained");
          s.draining.erase(worker);
        }
        return rp;
      },
      [self](tick_atom) {
        auto& s = self->state;
        if (!from_self(self)) return;
        const auto now = runtime_clock::now();
        for (const auto& m : s.members.expire(now, s.opts.heartbeat_timeout, s.opts.tick))
          worker_lost(self, m,
                      "stopped answering (no heartbeat for " + std::to_string(s.opts.heartbeat_timeout.count()) + " ms)",
                      true);
        if (now - s.members.changed_at() >= s.opts.settle) try_start(self);
        self->delayed_send(self, s.opts.tick, tick_atom::value);
      },
      [self](const step_report& rep) {
        auto& s = self->state;
        auto* r = run_of_unit_actor(self, rep.tag, rep.unit_actor);
        if (!r) return;
        if (rep.error)
          return fail_run(self, "unit actor " + rep.unit_actor + " failed at " + rep.round.describe() + ": " +
                                    error_text(rep.error));
        if (!phase_is(self, *r, job_phase::computing)) return;
        if (auto why = r->driver->add_report(rep); !why.empty()) {
          spdlog::warn("job {}: dropped {}", r->id, why);
          ++s.refused.stale;
          return;
        }
        if (!r->driver->all_reported()) return;
        if (!r->driver->current().train) return complete_round(self);
        r->enter(job_phase::applying);
        const bool apply = r->driver->apply();
        // Snapshots after the update: every fault.snapshot_every steps, and before units move.
        const std::int64_t after = rep.round.step + 1;
        const bool snapshot = step_schedule(r->cfg).snapshots_at(after) || r->migrate;
        r->snapshot_step = snapshot ? after : -1;
        for (const auto& a : r->plan.units)
          if (auto h = s.handles.find(a.worker); h != s.handles.end())
            self->send(h->second, finish_atom::value, r->plan.tag, rep.round, apply, snapshot);
      },
      [self](applied_atom, const job_tag& tag, const round_id& round, const std::string& unit_actor) {
        auto* r = run_of_unit_actor(self, tag, unit_actor);
        if (!r || !phase_is(self, *r, job_phase::applying) || round != r->driver->current()) return;
        if (auto why = r->driver->add_applied(unit_actor); !why.empty()) {
          spdlog::warn("job {}: dropped {}", r->id, why);
          ++self->state.refused.stale;
          return;
        }
        if (r->driver->all_applied()) complete_round(self);
      },
      [self](const checkpoint_report& rep) {
        auto& s = self->state;
        auto* r = run_of_unit_actor(self, rep.tag, rep.unit_actor);
        if (!r || !phase_is(self, *r, job_phase::checkpointing)) return;
        if (rep.step != r->checkpoint_step || !r->checkpoint_waiting.erase(rep.unit_actor)) {
          ++s.refused.stale;
          return;
        }
        if (rep.error)
          return fail_run(self, "unit actor " + rep.unit_actor + " could not write its files for the checkpoint of step " +
                                    std::to_string(rep.step) + ": " + error_text(rep.error));
        r->checkpoint_files.insert(r->checkpoint_files.end(), rep.files.begin(), rep.files.end());
        if (!r->checkpoint_waiting.empty()) return;
        try {
          finish_checkpoint(self);
        } catch (const std::exception& e) {
          fail_run(self, std::string("cannot write the checkpoint manifest: ") + e.what());
        }
        if (s.shutdown.pending()) return (void)s.shutdown.deliver(shut_down(self));
        if (s.run) after_commit(self);
      },
      [self](pace_atom, const std::string& id, std::int64_t serial) {
        auto& s = self->state;
        if (!from_self(self)) return;
        // Stale when the job moved on meanwhile (a recovery places it anew).
        if (!s.run || s.run->id != id || serial != s.pace_serial || s.run->phase == job_phase::placing) return;
        start_round(self, true);
      },
      [self](deadline_atom, const std::string& id, std::int64_t serial) {
        auto& s = self->state;
        if (!from_self(self)) return;
        if (!s.run || s.run->id != id || serial != s.deadline_serial || !s.run->driver) return;
        const auto what = s.run->phase == job_phase::checkpointing
                              ? "the checkpoint of step " + std::to_string(s.run->checkpoint_step) + " was not written"
                              : s.run->driver->current().describe() + " did not complete";
        if (s.shutdown.pending()) {
          fail_run(self, what + " within " + std::to_string(s.opts.step_timeout.count()) + " ms");
          return (void)s.shutdown.deliver(shut_down(self));
        }
        // A worker may be cut off from its peers: roll back and try again.
        recover(self, what + " within " + std::to_string(s.opts.step_timeout.count()) + " ms");
      },
      [self](infer_start_atom, infer_assignment& spec) -> caf::result<infer_assignment> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        if (s.sessions.size() >= max_inference_sessions)
          return make_error(glam_errc::refused, "the cluster serves " + std::to_string(max_inference_sessions) +
                                                    " sessions already, the most it takes: end one first");
        if (spec.experts < 0 || spec.experts > 4096 || spec.checkpoint.empty() || spec.checkpoint.size() > 4096 ||
            spec.max_sequences < 1 || spec.max_sequences > 4096) {
          ++s.refused.malformed;
          return make_error(glam_errc::refused, "a session needs a checkpoint path (at most 4096 characters), 0 to "
                                                "4096 experts and 1 to 4096 sequences");
        }
        std::vector<std::string> workers;
        for (const auto* m : s.members.workers())
          if (!s.draining.count(m->name)) workers.push_back(m->name);
        const auto client = sender_actor(self);
        const auto node = sender_node(self);
        auto handle = caf::actor_cast<caf::actor>(self->current_sender());
        std::string id;
        try {
          id = s.sessions.start(spec, client, node, workers).spec.session;
        } catch (const std::exception& e) {
          return make_error(glam_errc::cannot_host, e.what());
        }
        if (handle) self->monitor(handle);
        const auto* sess = s.sessions.find(id);
        std::string list;
        for (const auto& [unit, worker] : sess->owner) list += " " + unit + "@" + worker;
        spdlog::info("serving: session {} of {} (step {}):{}", id, spec.checkpoint, spec.step, list);
        auto rp = self->make_response_promise<infer_assignment>();
        s.session_waiters[id].push_back(rp);
        host_session_units(self, id);
        return rp;
      },
      [self](infer_wait_atom, const std::string& id) -> caf::result<infer_assignment> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        auto* sess = s.sessions.find(id);
        if (!sess) return make_error(glam_errc::unknown_job, "no serving session '" + id.substr(0, 64) + "'");
        if (sess->client_node != sender_node(self)) {
          ++s.refused.not_allowed;
          return make_error(glam_errc::not_allowed, "session " + id + " belongs to another client");
        }
        if (sess->ready()) return sess->view();
        auto rp = self->make_response_promise<infer_assignment>();
        s.session_waiters[id].push_back(rp);
        return rp;
      },
      [self](infer_atom a, infer_request& r) -> caf::result<infer_reply> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        auto* sess = s.sessions.find(r.session);
        if (!sess) return make_error(glam_errc::unknown_job, "no serving session '" + r.session.substr(0, 64) + "'");
        if (sess->client_node != sender_node(self)) {
          ++s.refused.not_allowed;
          return make_error(glam_errc::not_allowed, "session " + r.session + " belongs to another client");
        }
        auto owner = sess->owner.find(r.unit);
        if (owner == sess->owner.end())
          return make_error(glam_errc::bad_request, "'" + r.unit.substr(0, 64) + "' is not a unit of session " + r.session);
        if (sess->loading.count(r.unit))
          return make_error(glam_errc::unreachable, r.unit + " of session " + r.session + " is being loaded on " +
                                                        owner->second + ": wait for the session (infer wait)");
        auto h = s.handles.find(owner->second);
        if (h == s.handles.end())
          return make_error(glam_errc::unreachable, "worker " + owner->second + " is gone");
        auto rp = self->make_response_promise<infer_reply>();
        const auto serial = ++s.infer_serial;
        s.infer_calls[serial] = {owner->second, rp};
        self->request(h->second, infer_call_timeout, a, std::move(r))
            .then(
                [self, serial](infer_reply& out) {
                  auto it = self->state.infer_calls.find(serial);
                  if (it == self->state.infer_calls.end()) return;
                  it->second.promise.deliver(std::move(out));
                  self->state.infer_calls.erase(it);
                },
                [self, serial](caf::error& e) {
                  auto it = self->state.infer_calls.find(serial);
                  if (it == self->state.infer_calls.end()) return;
                  it->second.promise.deliver(std::move(e));
                  self->state.infer_calls.erase(it);
                });
        return rp;
      },
      [self](infer_end_atom, const std::string& id) {
        auto& s = self->state;
        if (!admitted(self)) return;
        auto* sess = s.sessions.find(id);
        if (!sess) return;
        if (sess->client_node != sender_node(self)) {
          ++s.refused.not_allowed;
          return;
        }
        end_session(self, id, "ended by its client");
      },
      [self](submit_atom, const std::string& toml, const std::string& source) -> caf::result<std::string> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        config c;
        if (auto e = submit_problem(toml, source, c)) {
          ++s.refused.malformed;
          return e;
        }
        if (auto* a = s.jobs->active())
          return make_error(glam_errc::job_conflict, "job " + a->id + " is " + to_string(a->state) +
                                                         ": stop it first (glam stop)");
        try {
          auto& j = s.jobs->add(c.name, toml, c.train.steps);
          spdlog::info("job {} submitted ({} shards, {} experts, {} steps)", j.id, c.cluster.shards, c.model.experts,
                       c.train.steps);
          auto id = j.id;
          if (runtime_clock::now() - s.members.changed_at() >= s.opts.settle) try_start(self);
          return id;
        } catch (const std::exception& e) {
          return make_error(glam_errc::invalid_job, e.what());
        }
      },
      [self](status_atom) -> caf::result<std::string> {
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        return status_json(self->state);
      },
      [self](job_status_atom, const std::string& id) -> caf::result<std::string> {
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        auto* j = self->state.jobs->find(id);
        return j ? job_json(*j) : std::string("{}");
      },
      [self](stop_atom, const std::string& id) -> caf::result<std::string> {
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        auto* j = self->state.jobs->find(id);
        if (!j) return make_error(glam_errc::unknown_job, "no job '" + id.substr(0, 80) + "': see glam status for the job ids");
        if (is_final(j->state)) return make_error(glam_errc::job_conflict, "job " + id + " is already " + to_string(j->state));
        end_job(self, *j, "stopped by a client at step " + std::to_string(j->step), job_state::stopped);
        return "job " + id + " stopped at step " + std::to_string(j->step);
      },
      [self](shutdown_atom) -> caf::result<std::string> {
        auto& s = self->state;
        if (!is_local(self)) {
          ++s.refused.not_allowed;
          return make_error(glam_errc::not_allowed, "shutdown is local only");
        }
        // A checkpoint being written is finished first (bounded by the round deadline);
        // a step in flight is aborted: the job resumes from its last checkpoint.
        if (s.run && s.run->phase == job_phase::checkpointing) {
          spdlog::info("coordinator: finishing the checkpoint of step {} before shutting down", s.run->checkpoint_step);
          s.shutdown = self->make_response_promise<std::string>();
          return s.shutdown;
        }
        return shut_down(self);
      },
  };
}

}  // namespace glam
