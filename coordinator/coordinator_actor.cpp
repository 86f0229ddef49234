#include "coordinator/coordinator_actor.hpp"

#include <caf/all.hpp>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include "actors/fingerprint.hpp"
#include "actors/worker_protocol.hpp"
#include "configs/config.hpp"
#include "coordinator/placement.hpp"

namespace glam {

namespace {

using self_ptr = caf::stateful_actor<coordinator_state>*;

std::string sender_node(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->node()) : std::string();
}

// Every handler but the handshake starts here: messages from nodes that have not proved
// the secret are dropped and counted.
bool admitted(self_ptr self) { return self->state.gate->admit_or_count(sender_node(self)); }

void fail_job(self_ptr self, job_record& j, const std::string& why, job_state st = job_state::failed) {
  auto& s = self->state;
  j.state = st;
  j.error = why;
  s.jobs->persist();
  spdlog::warn("job {} {}: {}", j.id, to_string(st), why);
  // Release the job's units on the workers still alive; the epoch fences stale messages.
  step_tag tag{j.id, j.step, s.jobs->epoch()};
  for (auto& [name, h] : s.handles) {
    self->request(h, s.opts.request_timeout, release_atom::value, tag).then([](const result_msg&) {});
    s.hosted[name].clear();
  }
}

void worker_lost(self_ptr self, const member& m, const std::string& how) {
  auto& s = self->state;
  s.handles.erase(m.name);
  s.hosted.erase(m.name);
  s.gate->revoke(m.node);
  spdlog::warn("membership: worker {} ({}:{}) {}; {} workers left", m.name, m.host, m.port, how,
               s.members.size());
  if (auto* j = s.jobs->active(); j && j->state == job_state::running) {
    auto epoch = s.jobs->bump_epoch();
    fail_job(self, *j,
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
    fail_job(self, *j, e.what());
    return;
  }
  std::vector<worker_capacity> caps;
  for (const auto* m : s.members.workers())
    caps.push_back({m->name, m->host, m->port, m->stats.gflops > 0 ? m->stats.gflops : 1.0, 0});
  std::vector<unit_assignment> placement;
  try {
    placement = place_units(caps, c.cluster.shards, c.model.experts, unit_costs{});
  } catch (const std::exception& e) {
    fail_job(self, *j, e.what());
    return;
  }
  j->state = job_state::running;
  s.jobs->persist();
  job_plan plan{{j->id, j->step, s.jobs->epoch()}, j->config_toml, placement};
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
              auto* jj = self->state.jobs->find(id);
              if (!r.ok && jj && !is_final(jj->state))
                fail_job(self, *jj, "worker " + worker + " cannot host its units: " + r.message);
            },
            [self, id, worker](const caf::error& e) {
              auto* jj = self->state.jobs->find(id);
              if (jj && !is_final(jj->state))
                fail_job(self, *jj, "worker " + worker + " did not confirm its units: " +
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
                      // The coordinator relays no token batch: it never sends or receives
                      // a tensor chunk (it drops and counts any that arrive).
                      {"tensor_bytes_relayed", 0}};
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
    auto node = dm.source ? caf::to_string(dm.source.node()) : std::string();
    auto m = self->state.members.remove_node(node);
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
        auto why = s.members.add(hello.name, node, hello.listen_host, hello.listen_port, runtime_clock::now());
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
        self->state.members.heartbeat(sender_node(self), st, runtime_clock::now());
      },
      [self](leave_atom) {
        if (!admitted(self)) return;
        auto m = self->state.members.remove_node(sender_node(self));
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
        fail_job(self, *j, "stopped by a client at step " + std::to_string(j->step), job_state::stopped);
        return {true, "job " + id + " stopped at step " + std::to_string(j->step)};
      },
      [self](shutdown_atom) -> result_msg {
        auto& s = self->state;
        if (caf::to_string(self->current_sender() ? self->current_sender()->node() : caf::node_id{}) !=
            caf::to_string(self->system().node()))
          return {false, "shutdown is local only"};
        s.jobs->persist();
        spdlog::info("coordinator shutting down; epoch {} persisted", s.jobs->epoch());
        self->quit();
        return {true, "bye"};
      },
  };
}

}  // namespace glam
