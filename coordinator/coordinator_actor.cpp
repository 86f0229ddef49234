#include "coordinator/coordinator_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/fingerprint.hpp"
#include "actors/tensor_chunk.hpp"
#include "actors/unit_actors.hpp"
#include "actors/worker_protocol.hpp"
#include "configs/config.hpp"
#include "configs/plan.hpp"
#include "coordinator/placement.hpp"
#include "model/checkpoint.hpp"
#include "model/metrics.hpp"

namespace glam {

namespace {

using self_ptr = caf::stateful_actor<coordinator_state>*;

std::string sender_node(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->node()) : std::string();
}

// Members are known by their actor (embedded workers share one node).
std::string sender_actor(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->address()) : std::string();
}

// Every handler but the handshake starts here: messages from nodes that have not proved
// the secret are dropped and counted.
bool admitted(self_ptr self) { return self->state.gate->admit_or_count(sender_node(self)); }

// Ends the job (finished, failed or stopped) and releases its units.
void end_job(self_ptr self, job_record& j, const std::string& why, job_state st = job_state::failed) {
  auto& s = self->state;
  j.state = st;
  j.error = why;
  s.jobs->persist();
  if (s.run && s.run->id == j.id) s.run.reset();
  if (st == job_state::finished)
    spdlog::info("job {} finished: {} steps, loss {:.6f}", j.id, j.step, j.loss);
  else
    spdlog::warn("job {} {}: {}", j.id, to_string(st), why);
  // Release the job's units on the workers still alive; the epoch fences stale messages.
  step_tag tag{j.id, j.step, s.jobs->epoch()};
  for (auto& [name, h] : s.handles) {
    self->request(h, s.opts.request_timeout, release_atom::value, tag).then([](const result_msg&) {});
    s.hosted[name].clear();
  }
  if (s.opts.on_job_end) s.opts.on_job_end(j);
}

// Orders the driver's current round from every worker hosting units, with a deadline.
void start_round(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  auto* j = s.jobs->find(r.id);
  if (r.driver->finished()) return end_job(self, *j, {}, job_state::finished);
  const auto round = r.driver->current();
  const step_tag tag{r.id, round.wire(), s.jobs->epoch()};
  for (const auto& a : r.plan.placement)
    if (auto h = s.handles.find(a.worker); h != s.handles.end()) self->send(h->second, begin_atom::value, tag, round.train);
  r.round_start = runtime_clock::now();
  self->delayed_send(self, s.opts.step_timeout, deadline_atom::value, r.id, ++r.round_serial);
}

bool checkpoint_due(const config& c, std::int64_t steps_done) {
  return (c.fault.checkpoint_every > 0 && steps_done % c.fault.checkpoint_every == 0) || steps_done == c.train.steps;
}

// Orders every worker to write its units' files for the checkpoint of the steps done; the
// manifest follows once all have (checkpoint_report).
void start_checkpoint(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  r.checkpoint_step = r.driver->steps_done();
  r.checkpoint_files.clear();
  r.checkpoint_waiting.clear();
  const step_tag tag{r.id, r.checkpoint_step, s.jobs->epoch()};
  for (const auto& a : unit_actors_of(r.plan.placement).placement) r.checkpoint_waiting.insert(a.worker);
  for (const auto& a : r.plan.placement)
    if (auto h = s.handles.find(a.worker); h != s.handles.end()) self->send(h->second, checkpoint_atom::value, tag);
  self->delayed_send(self, s.opts.step_timeout, deadline_atom::value, r.id, ++r.round_serial);
}

// The manifest, written last: dense first, then the experts in order.
void finish_checkpoint(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  auto order = [](const unit_file_info& f) {
    return f.unit == dense_unit_name() ? -1 : std::stoll(f.unit.substr(f.unit.find('-') + 1));
  };
  std::sort(r.checkpoint_files.begin(), r.checkpoint_files.end(),
            [&](const auto& a, const auto& b) { return order(a) < order(b); });
  checkpoint_manifest m;
  m.config_hash = model_config_hash(r.cfg);
  m.step = r.checkpoint_step;
  m.epoch = s.jobs->epoch();
  m.units = r.checkpoint_files;
  write_manifest(r.checkpoint_root, m, r.cfg.fault.keep_checkpoints);
  spdlog::info("job {}: checkpoint of step {} in {} ({} units, {} bytes)", r.id, m.step,
               checkpoint_dir_for(r.checkpoint_root, m.step), m.units.size(), checkpoint_bytes(m));
  r.checkpoint_step = -1;
}

// Releases the running job's units (the job stays in the table, to be resumed from its
// last checkpoint when the coordinator starts again), persists, and quits.
result_msg shut_down(self_ptr self) {
  auto& s = self->state;
  if (s.run) {
    const step_tag tag{s.run->id, s.run->driver ? s.run->driver->steps_done() : 0, s.jobs->epoch()};
    for (auto& [name, h] : s.handles) self->send(h, release_atom::value, tag);
    spdlog::info("coordinator: job {} stopped at step {}; it resumes from its last checkpoint", s.run->id, tag.step);
  }
  s.jobs->persist();
  spdlog::info("coordinator shutting down; epoch {} persisted", s.jobs->epoch());
  self->quit();
  return {true, "bye"};
}

// Every worker reported (and, for a training step, applied the decision): commit the
// round, record the step's metrics once it is complete, and go on.
void complete_round(self_ptr self) {
  auto& s = self->state;
  auto& r = *s.run;
  const double seconds = std::chrono::duration<double>(runtime_clock::now() - r.round_start).count();
  const bool train_round = r.driver->current().train;
  if (auto done = r.driver->next(seconds)) {
    auto* j = s.jobs->find(r.id);
    const auto& m = done->metrics;
    j->step = r.driver->steps_done();
    j->loss = m.loss.loss;
    j->tokens_per_s = done->seconds > 0 ? double(m.tokens) / done->seconds : 0;
    auto line = step_metrics_json(m, done->seconds, r.flops_per_token, s.opts.sgemm_flops, done->val_loss);
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
  }
  if (s.opts.checkpoints && train_round && checkpoint_due(r.cfg, r.driver->steps_done())) return start_checkpoint(self);
  start_round(self);
}

// The step message of the running job, current epoch; anything else is dropped and counted.
running_job* current_run(self_ptr self, const step_tag& tag) {
  auto& s = self->state;
  if (!admitted(self)) return nullptr;
  if (!s.run || !s.run->driver || tag.job != s.run->id || tag.epoch != s.jobs->epoch()) {
    ++s.dropped_stale;
    return nullptr;
  }
  return s.run.get();
}

void worker_lost(self_ptr self, const member& m, const std::string& how) {
  auto& s = self->state;
  if (auto h = s.handles.find(m.name); h != s.handles.end()) {
    // A remote worker's node must prove the secret again; our own node stays admitted.
    if (h->second.node() != self->system().node()) s.gate->revoke(caf::to_string(h->second.node()));
    s.handles.erase(h);
  }
  s.hosted.erase(m.name);
  spdlog::warn("membership: worker {} ({}:{}) {}; {} workers left", m.name, m.host, m.port, how,
               s.members.size());
  if (auto* j = s.jobs->active(); j && j->state == job_state::running) {
    auto epoch = s.jobs->bump_epoch();
    end_job(self, *j,
             "worker " + m.name + " (" + m.host + ":" + std::to_string(m.port) + ") " + how + " at step " +
                 std::to_string(j->step + 1) + " (epoch " + std::to_string(epoch) +
                 "); the last checkpoint is kept: submit the job again to resume");
  }
}

// Places the active pending job on the live workers and asks each to host its units.
void try_start(self_ptr self) {
  auto& s = self->state;
  auto* j = s.jobs->active();
  if (!j || j->state != job_state::pending || s.members.size() == 0) return;
  config c;
  try {
    c = parse_config_string(j->config_toml, j->id);
  } catch (const std::exception& e) {
    end_job(self, *j, e.what());
    return;
  }
  std::vector<worker_capacity> caps;
  for (const auto* m : s.members.workers())
    caps.push_back({m->name, m->host, m->port, m->stats.gflops > 0 ? m->stats.gflops : 1.0, 0});
  std::vector<unit_assignment> placement;
  try {
    placement = s.opts.random_placement_seed != 0
                    ? random_placement(caps, c.cluster.shards, c.model.experts, s.opts.random_placement_seed)
                    : place_units(caps, c.cluster.shards, c.model.experts, unit_costs{});
  } catch (const std::exception& e) {
    end_job(self, *j, e.what());
    return;
  }
  // A job goes on from the newest valid checkpoint of its name (a torn or corrupt one is
  // skipped: the one before it is used), else from its initial parameters.
  const auto root =
      s.opts.checkpoint_root.empty() ? s.jobs->state_dir() + "/checkpoints/" + c.name : s.opts.checkpoint_root;
  std::optional<checkpoint_manifest> resume;
  if (s.opts.resume) try {
      std::vector<std::string> skipped;
      resume = latest_valid_checkpoint(root, model_config_hash(c), &skipped);
      for (const auto& why : skipped) spdlog::warn("job {}: checkpoint skipped: {}", j->id, why);
      if (resume) remove_checkpoints_after(root, resume->step);
    } catch (const std::exception& e) {
      return end_job(self, *j, e.what());
    }
  j->state = job_state::running;
  j->step = resume ? resume->step : 0;
  s.jobs->truncate_metrics(j->id, j->step);
  if (resume) spdlog::info("job {}: resuming from the checkpoint of step {} in {}", j->id, resume->step, root);
  s.jobs->persist();
  job_plan plan{{j->id, j->step, s.jobs->epoch()}, j->config_toml, placement, root,
                resume ? resume->step : -1, s.opts.inject_nonfinite_step};
  s.run = std::make_unique<running_job>();
  s.run->id = j->id;
  s.run->cfg = c;
  s.run->plan = plan;
  s.run->flops_per_token = double(make_plan(c, 1).flops_per_token_train);
  s.run->checkpoint_root = root;
  for (const auto& a : placement) s.run->waiting_hosts.insert(a.worker);
  for (const auto& a : placement) {
    std::string units;
    auto& hosted = s.hosted[a.worker];
    hosted.clear();
    for (auto sh : a.shards) hosted.push_back("shard" + std::to_string(sh));
    for (auto e : a.experts) hosted.push_back("expert" + std::to_string(e));
    for (auto& u : hosted) units += (units.empty() ? "" : " ") + u;
    spdlog::info("placement: job {} epoch {}: {} hosts [{}]", j->id, s.jobs->epoch(), a.worker, units);
    auto h = s.handles.find(a.worker);
    if (h == s.handles.end()) continue;
    auto id = j->id;
    auto worker = a.worker;
    // Twice the usual deadline: the worker first connects to its peers, each with half.
    self->request(h->second, 2 * s.opts.request_timeout, host_atom::value, plan)
        .then(
            [self, id, worker](const result_msg& r) {
              auto& s = self->state;
              auto* jj = s.jobs->find(id);
              if (!jj || is_final(jj->state) || !s.run || s.run->id != id) return;
              if (!r.ok) return end_job(self, *jj, "worker " + worker + " cannot host its units: " + r.message);
              s.run->waiting_hosts.erase(worker);
              if (!s.run->waiting_hosts.empty() || s.run->driver) return;
              // Every unit actor reports every round.
              std::vector<std::string> units;
              for (const auto& a : unit_actors_of(s.run->plan.placement).placement) units.push_back(a.worker);
              s.run->driver = std::make_unique<step_driver>(s.run->cfg, units, jj->step);
              spdlog::info("job {}: every unit hosted; training from step {}", id, jj->step);
              start_round(self);
            },
            [self, id, worker](const caf::error& e) {
              auto* jj = self->state.jobs->find(id);
              if (jj && !is_final(jj->state))
                end_job(self, *jj, "worker " + worker + " did not confirm its units: " +
                                        self->system().render(e));
            });
  }
}

}  // namespace

std::string job_json(const job_record& j) {
  nlohmann::json o{{"id", j.id},     {"name", j.name}, {"state", to_string(j.state)},
                   {"step", j.step}, {"steps", j.steps}, {"loss", j.loss},
                   {"tokens_per_s", j.tokens_per_s}, {"error", j.error}};
  return o.dump();
}

std::string status_json(const coordinator_state& s) {
  nlohmann::json o;
  o["coordinator"] = {{"listen", s.opts.listen},
                      {"epoch", s.jobs->epoch()},
                      {"dropped_unauthenticated", s.gate->dropped()},
                      {"dropped_stale_epoch", s.dropped_stale},
                      // The coordinator relays no token batch: it sends no tensor chunk,
                      // and drops any that reach it, counting their bytes here.
                      {"tensor_bytes_received", s.tensor_bytes_received}};
  if (s.opts.door && *s.opts.door) {
    const auto& c = (*s.opts.door)->counters();
    o["coordinator"]["listen"] = s.opts.listen + ":" + std::to_string((*s.opts.door)->port());
    o["coordinator"]["bytes_received"] = c.bytes_in.load();
    o["coordinator"]["bytes_sent"] = c.bytes_out.load();
    o["coordinator"]["refused_frames"] = c.refused_frames.load();
    o["coordinator"]["refused_connections"] = c.refused_connections.load();
  }
  o["workers"] = nlohmann::json::array();
  auto now = runtime_clock::now();
  for (const auto* m : s.members.workers()) {
    auto h = s.hosted.find(m->name);
    o["workers"].push_back(
        {{"name", m->name},
         {"address", m->host + ":" + std::to_string(m->port)},
         {"units", h == s.hosted.end() ? std::vector<std::string>{} : h->second},
         {"tokens_computed", m->stats.tokens_computed},
         {"bytes_sent", m->stats.bytes_sent},
         {"bytes_received", m->stats.bytes_received},
         {"memory_bytes", m->stats.memory_bytes},
         {"gflops", m->stats.gflops},
         {"dropped_unauthenticated", m->stats.dropped_unauthenticated},
         {"peers", m->stats.peers},
         {"last_heard_ms",
          std::chrono::duration_cast<std::chrono::milliseconds>(now - m->last_seen).count()}});
  }
  o["jobs"] = nlohmann::json::array();
  for (const auto& j : s.jobs->jobs()) o["jobs"].push_back(nlohmann::json::parse(job_json(j)));
  return o.dump();
}

caf::behavior coordinator_actor(self_ptr self, coordinator_options opts) {
  auto& s = self->state;
  s.opts = opts;
  s.gate = std::make_unique<auth_gate>(opts.secret, caf::to_string(self->system().node()));
  s.jobs = std::make_unique<job_table>(opts.state_dir);
  // A job that was running when the coordinator went down waits for workers again.
  for (const auto& j : s.jobs->jobs())
    if (j.state == job_state::running) {
      auto* jj = s.jobs->find(j.id);
      jj->state = job_state::pending;
      s.jobs->bump_epoch();
    }
  self->set_down_handler([self](const caf::down_msg& dm) {
    auto m = self->state.members.remove_node(caf::to_string(dm.source));
    if (!m.name.empty()) worker_lost(self, m, "went down (" + self->system().render(dm.reason) + ")");
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
    self->state.gate->admit_or_count(sender_node(self));
    return caf::sec::unexpected_message;
  });
  self->send(self, tick_atom::value);
  return {
      [self](hello_atom, const hello_msg& h) -> challenge_msg {
        auto& s = self->state;
        challenge_msg c;
        c.reason = compatibility_problem(h, local_fingerprint());
        if (!c.reason.empty()) {
          spdlog::warn("membership: refused {} '{}': {}", h.role, h.name, c.reason);
          return c;
        }
        auto node = sender_node(self);
        if (s.pending_hellos.size() > 4096) s.pending_hellos.clear();
        s.pending_hellos[node] = h;
        c.ok = true;
        c.nonce = s.gate->issue_nonce(node);
        c.server_proof = s.gate->answer(h.client_nonce);
        return c;
      },
      [self](auth_atom, const proof_msg& p) -> result_msg {
        auto& s = self->state;
        auto node = sender_node(self);
        auto h = s.pending_hellos.find(node);
        if (h == s.pending_hellos.end()) return {false, "no hello from this node: send hello first"};
        auto hello = h->second;
        s.pending_hellos.erase(h);
        if (!s.gate->verify(node, p.nonce, p.proof)) {
          spdlog::warn("membership: {} '{}' failed to prove the cluster secret", hello.role, hello.name);
          return {false, "wrong cluster secret: give the coordinator's secret with --secret-file"};
        }
        if (hello.role != "worker") return {true, "authenticated"};
        auto why = s.members.add(hello.name, sender_actor(self), hello.listen_host, hello.listen_port,
                                 runtime_clock::now());
        if (!why.empty()) {
          s.gate->revoke(node);
          return {false, why};
        }
        auto handle = caf::actor_cast<caf::actor>(self->current_sender());
        s.handles[hello.name] = handle;
        self->monitor(handle);
        spdlog::info("membership: worker {} joined from {}:{}; {} workers", hello.name, hello.listen_host,
                     hello.listen_port, s.members.size());
        try_start(self);
        return {true, "registered as " + hello.name};
      },
      [self](heartbeat_atom, const worker_stats& st) {
        if (!admitted(self)) return;
        self->state.members.heartbeat(sender_actor(self), st, runtime_clock::now());
      },
      [self](leave_atom) {
        if (!admitted(self)) return;
        auto m = self->state.members.remove_node(sender_actor(self));
        if (!m.name.empty()) worker_lost(self, m, "left");
      },
      [self](tick_atom) {
        auto& s = self->state;
        for (const auto& m : s.members.expire(runtime_clock::now(), s.opts.heartbeat_timeout))
          worker_lost(self, m,
                      "stopped answering (no heartbeat for " + std::to_string(s.opts.heartbeat_timeout.count()) +
                          " ms)");
        self->delayed_send(self, s.opts.tick, tick_atom::value);
      },
      [self](const step_report& rep) {
        auto& s = self->state;
        auto* r = current_run(self, rep.tag);
        if (!r) return;
        auto* j = s.jobs->find(r->id);
        if (!rep.error.empty())
          return end_job(self, *j, "unit " + rep.worker + " failed at step " + std::to_string(rep.tag.step) + ": " +
                                        rep.error);
        if (auto why = r->driver->add_report(rep); !why.empty()) {
          spdlog::warn("job {}: dropped {}", r->id, why);
          ++s.dropped_stale;
          return;
        }
        if (!r->driver->all_reported()) return;
        if (!r->driver->current().train) return complete_round(self);
        const bool apply = r->driver->apply();
        for (const auto& a : r->plan.placement)
          if (auto h = s.handles.find(a.worker); h != s.handles.end())
            self->send(h->second, finish_atom::value, rep.tag, apply);
      },
      [self](applied_atom, const step_tag& tag, const std::string& worker) {
        auto* r = current_run(self, tag);
        if (!r || tag.step != r->driver->current().wire()) return;
        if (auto why = r->driver->add_applied(worker); !why.empty()) {
          spdlog::warn("job {}: dropped {}", r->id, why);
          return;
        }
        if (r->driver->all_applied()) complete_round(self);
      },
      [self](const checkpoint_report& rep) {
        auto& s = self->state;
        auto* r = current_run(self, rep.tag);
        if (!r || rep.tag.step != r->checkpoint_step || !r->checkpoint_waiting.erase(rep.worker)) return;
        auto* j = s.jobs->find(r->id);
        if (!rep.error.empty())
          return end_job(self, *j, "unit " + rep.worker + " could not write its files for the checkpoint of step " +
                                        std::to_string(rep.tag.step) + ": " + rep.error);
        r->checkpoint_files.insert(r->checkpoint_files.end(), rep.files.begin(), rep.files.end());
        if (!r->checkpoint_waiting.empty()) return;
        try {
          finish_checkpoint(self);
        } catch (const std::exception& e) {
          end_job(self, *j, std::string("cannot write the checkpoint manifest: ") + e.what());
        }
        if (s.shutdown.pending()) return (void)s.shutdown.deliver(shut_down(self));
        if (s.run) start_round(self);
      },
      [self](deadline_atom, const std::string& id, std::int64_t serial) {
        auto& s = self->state;
        if (!s.run || s.run->id != id || serial != s.run->round_serial) return;
        auto* j = s.jobs->find(id);
        const auto what = s.run->checkpoint_step >= 0
                              ? "the checkpoint of step " + std::to_string(s.run->checkpoint_step) + " was not written"
                              : "step " + std::to_string(s.run->driver->current().wire()) + " did not complete";
        end_job(self, *j,
                 what + " within " + std::to_string(s.opts.step_timeout.count()) +
                     " ms; the last checkpoint is kept");
        if (s.shutdown.pending()) s.shutdown.deliver(shut_down(self));
      },
      [self](const tensor_chunk& c) {
        if (!admitted(self)) return;
        self->state.tensor_bytes_received += static_cast<std::int64_t>(c.data.size() * sizeof(float));
      },
      [self](submit_atom, const std::string& toml, const std::string& source) -> result_msg {
        if (!admitted(self)) return {false, "not authenticated"};
        auto& s = self->state;
        config c;
        try {
          c = parse_config_string(toml, source);
        } catch (const std::exception& e) {
          return {false, e.what()};
        }
        if (auto* a = s.jobs->active())
          return {false, "job " + a->id + " is " + to_string(a->state) + ": stop it first (glam stop)"};
        try {
          auto& j = s.jobs->add(c.name, toml, c.train.steps);
          spdlog::info("job {} submitted ({} shards, {} experts, {} steps)", j.id, c.cluster.shards,
                       c.model.experts, c.train.steps);
          auto id = j.id;
          try_start(self);
          return {true, id};
        } catch (const std::exception& e) {
          return {false, e.what()};
        }
      },
      [self](status_atom) -> std::string {
        if (!admitted(self)) return "{}";
        return status_json(self->state);
      },
      [self](job_status_atom, const std::string& id) -> std::string {
        if (!admitted(self)) return "{}";
        auto* j = self->state.jobs->find(id);
        return j ? job_json(*j) : "{}";
      },
      [self](stop_atom, const std::string& id) -> result_msg {
        if (!admitted(self)) return {false, "not authenticated"};
        auto* j = self->state.jobs->find(id);
        if (!j) return {false, "no job '" + id + "': see glam status for the job ids"};
        if (is_final(j->state)) return {false, "job " + id + " is already " + to_string(j->state)};
        end_job(self, *j, "stopped by a client at step " + std::to_string(j->step), job_state::stopped);
        return {true, "job " + id + " stopped at step " + std::to_string(j->step)};
      },
      [self](shutdown_atom) -> caf::result<result_msg> {
        auto& s = self->state;
        if (caf::to_string(self->current_sender() ? self->current_sender()->node() : caf::node_id{}) !=
            caf::to_string(self->system().node()))
          return result_msg{false, "shutdown is local only"};
        // A checkpoint being written is finished first (bounded by the round deadline);
        // a step in flight is aborted: the job resumes from its last checkpoint.
        if (s.run && s.run->checkpoint_step >= 0) {
          spdlog::info("coordinator: finishing the checkpoint of step {} before shutting down", s.run->checkpoint_step);
          s.shutdown = self->make_response_promise<result_msg>();
          return s.shutdown;
        }
        return shut_down(self);
      },
  };
}

}  // namespace glam
