#include "worker/worker_actor.hpp"

#include <filesystem>
#include <set>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/daemon.hpp"
#include "actors/errors.hpp"
#include "actors/fingerprint.hpp"
#include "actors/security.hpp"
#include "configs/plan.hpp"
#include "kernels/check.hpp"

namespace glam {

const char* to_string(worker_phase p) {
  switch (p) {
    case worker_phase::registering: return "registering";
    case worker_phase::idle: return "idle";
    case worker_phase::connecting: return "connecting";
    case worker_phase::hosting: return "hosting";
  }
  return "unknown";
}

namespace {

namespace fs = std::filesystem;
using self_ptr = worker_actor::stateful_pointer<worker_state>;

std::string sender_node(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->node()) : std::string();
}

bool is_local(self_ptr self) { return sender_node(self) == caf::to_string(self->node()); }

bool from_self(self_ptr self) {
  auto& s = self->current_sender();
  if (s && s->address() == self->address()) return true;
  ++self->state.refused.not_allowed;
  return false;
}

bool admitted(self_ptr self) { return self->state.gate->admit_or_count(sender_node(self)); }

// From the coordinator this worker registered with (and only from it).
bool from_coordinator(self_ptr self) {
  auto& s = self->state;
  auto& sender = self->current_sender();
  if (!admitted(self)) return false;
  if (s.coordinator && sender && sender->address() == s.coordinator.address()) return true;
  ++s.refused.not_allowed;
  return false;
}

// A step order for the hosted job, from the coordinator, of the current epoch.
bool order_for_hosted_job(self_ptr self, const job_tag& tag) {
  auto& s = self->state;
  if (!from_coordinator(self)) return false;
  if (tag.epoch != s.epoch || s.phase != worker_phase::hosting || tag.job != s.plan.tag.job) {
    ++s.refused.stale;
    return false;
  }
  return true;
}

// From the node of a worker of the plan (a peer, connected and authenticated).
bool from_peer(self_ptr self) {
  auto& s = self->state;
  const auto node = sender_node(self);
  for (const auto& [name, p] : s.peers)
    if (caf::to_string(p.handle.node()) == node) return true;
  ++s.refused.not_allowed;
  return false;
}

// The worker that keeps copies of this worker's snapshots: the next worker of the plan that
// hosts units (it stays for the job; one without units may be drained), else the next one;
// none with a single worker.
std::string buddy_of(const job_plan& plan, const std::string& worker) {
  const auto n = plan.units.size();
  const auto me = std::find_if(plan.units.begin(), plan.units.end(), [&](const auto& a) { return a.worker == worker; });
  if (me == plan.units.end() || n < 2) return {};
  const auto i = static_cast<std::size_t>(me - plan.units.begin());
  for (std::size_t k = 1; k < n; ++k) {
    const auto& a = plan.units[(i + k) % n];
    if (!a.shards.empty() || !a.experts.empty()) return a.worker;
  }
  return plan.units[(i + 1) % n].worker;
}

void transition(self_ptr self, worker_phase to) {
  auto& s = self->state;
  using p = worker_phase;
  const bool ok = (s.phase == p::registering && to == p::idle) ||
                  (s.phase == p::idle && (to == p::connecting || to == p::registering)) ||
                  (s.phase == p::connecting && (to == p::hosting || to == p::idle || to == p::connecting ||
                                                to == p::registering)) ||
                  (s.phase == p::hosting && (to == p::idle || to == p::connecting || to == p::registering));
  GLAM_CHECK(ok, std::string("worker phase ") + to_string(s.phase) + " -> " + to_string(to) + " is not in the table");
  s.phase = to;
}

worker_stats current_stats(self_ptr self) {
  auto& s = self->state;
  auto st = s.stats;
  st.name = s.opts.name;
  st.tokens_computed = s.counters->tokens_computed;
  st.bytes_sent = s.counters->bytes_sent;
  st.peers = static_cast<std::int64_t>(s.peers.size());
  st.memory_bytes = resident_bytes();
  st.refused = s.refused;
  st.refused.unauthenticated = s.gate->dropped();
  st.refused.not_allowed += s.counters->not_allowed;
  st.refused.stale += s.counters->wrong_phase;
  if (s.opts.relay) st.relay = relay_refusals_of(*s.opts.relay);
  return st;
}

void finish_registration(self_ptr self, caf::error failure, std::string message = {}) {
  auto& s = self->state;
  if (!failure) {
    // Registered already (a retry's answer after another attempt got through): nothing to do.
    if (s.phase != worker_phase::registering) return;
    spdlog::info("worker {}: {}", s.opts.name, message);
    transition(self, worker_phase::idle);
    if (!s.ticking) self->send(self, tick_atom::value);
    s.ticking = true;
    if (s.registered.pending()) s.registered.deliver(std::move(message));
    // The snapshots it still holds (a coordinator that restarted restores from them).
    for (const auto& [unit, step] : s.store.inventory(s.plan.tag.job))
      self->send(s.coordinator, snapshot_held{s.plan.tag, s.opts.name, step, {unit}});
    return;
  }
  // Registering again (after an eviction or a reconnect), a failure of the transport (no
  // answer in time, the connection gone) is not a refusal: look for the coordinator again,
  // within coordinator_timeout. Only the coordinator's own answer ends the worker.
  if (!s.registered.pending() && failure.category() == caf::atom("system")) {
    spdlog::warn("worker {}: the registration did not reach the coordinator ({}); trying again", s.opts.name,
                 error_text(failure));
    if (!s.lost_since) s.lost_since = std::chrono::steady_clock::now();
    self->delayed_send(self, s.backoff, reconnect_atom::value);
    s.backoff = std::min(2 * s.backoff, std::chrono::milliseconds(5000));
    return;
  }
  spdlog::error("worker {}: registration refused: {}", s.opts.name, error_text(failure));
  if (s.registered.pending()) s.registered.deliver(failure);
  self->quit(failure);
}

// A snapshot is held here: tell the coordinator; the owner's copy also goes to the buddy.
void keep_snapshot(self_ptr self, unit_snapshot st, bool own) {
  auto& s = self->state;
  const auto unit = st.unit;
  const auto step = st.step;
  if (own) {
    const auto buddy = buddy_of(s.plan, s.opts.name);
    if (auto p = s.peers.find(buddy); p != s.peers.end())
      for (auto& chunk : split_state(st, s.plan.tag)) self->send(p->second.handle, std::move(chunk));
  }
  s.store.put(s.plan.tag.job, std::move(st));
  if (s.coordinator && !s.opts.faults->coordinator_cut())
    self->send(s.coordinator, snapshot_held{s.plan.tag, s.opts.name, step, {unit}});
}

void stop_units(self_ptr self) {
  auto& s = self->state;
  for (auto& [n, unit] : s.units) {
    self->unlink_from(unit);
    self->send_exit(unit, caf::exit_reason::user_shutdown);
  }
  s.units.clear();
  s.layout.reset();
}

// The plan's unit actors hosted here, each on a thread of its own, which learn by number
// the worker actor hosting every unit actor: their peers' (connected directly) or this one.
void start_units(self_ptr self) {
  auto& s = self->state;
  stop_units(self);
  const config c = parse_config_string(s.plan.config_toml, s.plan.tag.job);
  s.layout = unit_layout::of(s.plan.units, c.cluster.shards, c.model.moe_as_dense_relu ? 0 : c.model.experts);
  std::vector<worker_actor> hosts;
  for (const auto& a : s.layout->actors()) {
    auto p = s.peers.find(a.worker);
    hosts.push_back(a.worker == s.opts.name ? caf::actor_cast<worker_actor>(self)
                                            : p == s.peers.end() ? worker_actor() : p->second.handle);
  }
  // Each unit actor gets the states of its own units ("dense" for a shard actor), moved, not
  // copied (hundreds of MiB, while this actor must keep up its heartbeats): the dense state
  // is copied for every shard actor here but the last.
  const auto mine = s.layout->actors_of_worker(s.opts.name);
  auto dense_users = std::count_if(mine.begin(), mine.end(), [&](int u) { return !s.layout->actor(u).shards.empty(); });
  for (int u : mine) {
    unit_options uo{s.opts.name, u, s.plan, caf::actor_cast<worker_actor>(self), s.coordinator, s.counters, {},
                    s.opts.faults};
    const auto& spec = s.layout->actor(u);
    if (auto d = s.gathered.find(dense_state_name()); !spec.shards.empty() && d != s.gathered.end())
      uo.states[d->first] = --dense_users == 0 ? std::move(d->second) : d->second;
    for (auto e : spec.experts)
      if (auto i = s.gathered.find(unit_id::expert(e).name()); i != s.gathered.end())
        uo.states[i->first] = std::move(i->second);
    auto unit = self->system().spawn<caf::detached>(unit_behavior, std::move(uo));
    // Linked: a unit actor ends with this actor, and this actor hears when one ends.
    self->link_to(unit);
    self->send(unit, peers_atom::value, hosts);
    s.units[u] = unit;
  }
  s.gathered.clear();
}

// Ends the serving sessions hosted here (their inference actors).
void stop_sessions(self_ptr self) {
  for (auto& [id, actor] : self->state.sessions) {
    self->unlink_from(actor);
    self->send_exit(actor, caf::exit_reason::user_shutdown);
  }
  self->state.sessions.clear();
}

template <class... Ts>
void to_units(self_ptr self, Ts&&... xs) {
  for (auto& [n, unit] : self->state.units) self->send(unit, xs...);
}

void check_host_done(self_ptr self);

// The largest state a unit of this job can have: its parameters and at most as many
// optimizer values, in the unit file format (an incoming state over it is refused before
// anything is allocated).
std::uint64_t max_state_bytes(const job_plan& plan) {
  const config c = parse_config_string(plan.config_toml, plan.tag.job);
  const auto p = make_plan(c, 1);
  const auto largest = std::max<std::int64_t>(p.params_dense, p.params_per_expert);
  return static_cast<std::uint64_t>(2 * largest) * sizeof(float) + (std::uint64_t{4} << 20);
}

// A state came in for the plan being hosted.
void state_gathered(self_ptr self, unit_snapshot st) {
  auto& s = self->state;
  if (!s.wanted.erase(st.unit)) return;
  s.gathered[st.unit] = std::move(st);
  check_host_done(self);
}

// The states the plan's units restore from: this worker's own snapshots, else fetched from
// the holder the plan names (a peer of the plan, connected by now).
void gather_states(self_ptr self) {
  auto& s = self->state;
  const auto step = s.plan.start_step;
  s.opts.faults->at(fault_phase::migration, step);
  for (const auto& unit : std::vector<std::string>(s.wanted.begin(), s.wanted.end())) {
    if (const auto* own = s.store.find(s.plan.tag.job, unit, step)) {
      state_gathered(self, *own);
      continue;
    }
    auto source = std::find_if(s.plan.sources.begin(), s.plan.sources.end(),
                               [&](const unit_source& x) { return x.unit == unit; });
    auto peer = source == s.plan.sources.end() ? s.peers.end() : s.peers.find(source->holder);
    if (peer == s.peers.end()) {
      s.host_failure = "no snapshot of " + unit + " at step " + std::to_string(step) + " here, and no holder to fetch it from";
      return check_host_done(self);
    }
    const auto holder = source->holder;
    // The chunks come before the answer (one sender, one receiver: in order).
    self->request(peer->second.handle, s.opts.request_timeout, fetch_atom::value, s.plan.tag, unit, step)
        .then([](std::uint64_t) {},
              [self, unit, holder](const caf::error& e) {
                auto& st = self->state;
                if (!st.wanted.count(unit) || !st.host_failure.empty()) return;
                st.host_failure = "cannot fetch the snapshot of " + unit + " from " + holder + ": " + error_text(e);
                check_host_done(self);
              });
  }
}

// Answers the coordinator's host request once every peer of the plan is connected and every
// state the plan's units restore from is in, or with the first failure.
void check_host_done(self_ptr self) {
  auto& s = self->state;
  if (!s.host_promise.pending()) return;
  if (!s.host_failure.empty()) {
    spdlog::warn("worker {}: {}", s.opts.name, s.host_failure);
    transition(self, worker_phase::idle);
    s.host_promise.deliver(make_error(glam_errc::unreachable, s.host_failure));
    return;
  }
  for (const auto& [name, address] : s.expected_peers)
    if (!s.peers.count(name)) return;
  if (!s.wanted.empty()) return gather_states(self);
  try {
    start_units(self);
  } catch (const std::exception& e) {
    transition(self, worker_phase::idle);
    s.host_promise.deliver(make_error(glam_errc::cannot_host, e.what()));
    return;
  }
  transition(self, worker_phase::hosting);
  s.host_promise.deliver(s.fetched_bytes);
}

hello_msg own_hello(self_ptr self) {
  auto& s = self->state;
  hello_msg h;
  h.role = "worker";
  h.name = s.opts.name;
  h.version = protocol_version;
  h.fingerprint = local_fingerprint();
  h.client_nonce = random_hex(32);
  h.listen_host = s.opts.listen_host;
  h.listen_port = s.listen_port;
  return h;
}

// The client side of the actor-level handshake with `server` (the coordinator, or a peer
// this worker dials): hello, check its proof, send ours (even when its proof failed, so
// that both sides report the mismatch: an HMAC reveals nothing of the secret). done gets an
// error, or none and the server's answer; on success the server's node is admitted.
template <class Server>
void prove_secret_to(self_ptr self, const Server& server, std::chrono::milliseconds timeout,
                     std::function<void(caf::error, std::string)> done) {
  auto hello = own_hello(self);
  auto nonce = hello.client_nonce;
  self->request(server, timeout, hello_atom::value, hello)
      .then(
          [self, server, timeout, done, nonce](const challenge_msg& c) {
            const bool server_ok = self->state.gate->check_server_proof(nonce, c.server_proof);
            self->request(server, timeout, auth_atom::value, proof_msg{c.nonce, client_proof(self->state.opts.secret, c.nonce)})
                .then(
                    [self, server, done, server_ok](std::string& answer) {
                      if (!server_ok)
                        return done(make_error(glam_errc::wrong_secret, "it could not prove the cluster secret: wrong "
                                                                        "--secret-file on one side"),
                                    {});
                      self->state.gate->grant(caf::to_string(server.node()));
                      done(caf::none, std::move(answer));
                    },
                    [done](const caf::error& e) { done(e, {}); });
          },
          [done](const caf::error& e) { done(e, {}); });
}

void start_registration(self_ptr self);

// Looks for a lost coordinator again (a restart on the same address), with a backoff that
// doubles up to 5 s, for at most coordinator_timeout; then gives up with the reason.
void reach_coordinator(self_ptr self) {
  auto& s = self->state;
  const auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - *s.lost_since);
  const auto where = s.opts.coordinator_host + ":" + std::to_string(s.opts.coordinator_port);
  if (waited > s.opts.coordinator_timeout) {
    spdlog::error("worker {}: the coordinator at {} did not come back within {} s; giving up", s.opts.name, where,
                  s.opts.coordinator_timeout.count() / 1000);
    self->quit(make_error(glam_errc::not_allowed, "lost the coordinator at " + where + " for more than " +
                                                      std::to_string(s.opts.coordinator_timeout.count() / 1000) + " s"));
    return;
  }
  self->request(s.opts.connector, s.opts.request_timeout, caf::connect_atom::value, s.opts.coordinator_host,
                static_cast<std::uint16_t>(s.opts.coordinator_port))
      .then(
          [self, waited](caf::strong_actor_ptr found) {
            auto& s = self->state;
            spdlog::info("worker {}: reached the coordinator again after {} ms; registering", s.opts.name, waited.count());
            s.coordinator = caf::actor_cast<coordinator_actor>(found);
            self->monitor(s.coordinator);
            s.lost_since.reset();
            start_registration(self);
          },
          [self, where](const caf::error& e) {
            auto& s = self->state;
            spdlog::info("worker {}: the coordinator at {} is not back yet ({}); next try in {} ms", s.opts.name, where,
                         error_text(e), s.backoff.count());
            self->delayed_send(self, s.backoff, reconnect_atom::value);
            s.backoff = std::min(2 * s.backoff, std::chrono::milliseconds(5000));
          });
}

void start_registration(self_ptr self) {
  const auto attempt = ++self->state.registration_attempt;
  prove_secret_to(self, self->state.coordinator, self->state.opts.request_timeout,
                  [self, attempt](caf::error e, std::string answer) {
                    if (attempt != self->state.registration_attempt) {
                      spdlog::info("worker {}: an earlier registration attempt ended ({}); a newer one counts",
                                   self->state.opts.name, e ? error_text(e) : answer);
                      return;
                    }
                    finish_registration(self, std::move(e), std::move(answer));
                  });
}

// Connects to one peer through the connector (the relay authenticates the connection; a
// blocking connect would stall this actor), then proves the secret to it and checks its
// proof; done(reason) follows, with an empty reason on success.
void connect_peer(self_ptr self, const worker_assignment& a, std::function<void(std::string)> done) {
  auto& s = self->state;
  const auto address = a.host + ":" + std::to_string(a.port);
  auto known = s.peers.find(a.worker);
  if (known != s.peers.end() && known->second.address == address) return done({});
  if (s.opts.local_peers) {
    auto local = s.opts.local_peers->find(a.worker);
    if (local == s.opts.local_peers->end()) return done("no local worker named " + a.worker);
    s.peers[a.worker] = {address, local->second};
    return done({});
  }
  auto timeout = s.opts.request_timeout / 2;
  auto name = a.worker;
  auto fail = [self, name, address, done](const caf::error& e) {
    done("cannot reach peer " + name + " at " + address + ": " + error_text(e));
  };
  self->request(s.opts.connector, timeout, caf::connect_atom::value, a.host, a.port)
      .then(
          [self, name, address, timeout, done, fail](caf::strong_actor_ptr ptr) {
            auto peer = caf::actor_cast<worker_actor>(ptr);
            prove_secret_to(self, peer, timeout, [self, name, address, done, fail, peer](caf::error e, std::string) {
              if (e) return fail(e);
              self->state.peers[name] = {address, peer};
              self->monitor(peer);
              done({});
            });
          },
          fail);
}

std::string path_outside(const std::string& path, const std::string& root, const char* what, const char* option) {
  if (root.empty())
    return std::string("the job's ") + what + " '" + path + "' needs a " + option +
           " on this worker, which has none: start it with " + option + " DIR";
  std::error_code ec;
  const auto p = fs::weakly_canonical(fs::absolute(path), ec).lexically_normal();
  const auto r = fs::weakly_canonical(fs::absolute(root), ec).lexically_normal();
  auto rel = p.lexically_relative(r);
  if (!ec && !rel.empty() && *rel.begin() != "..") return {};
  return std::string("the job's ") + what + " '" + path + "' is outside this worker's " + option + " '" + root +
         "': start the worker with " + option + " covering it";
}

}  // namespace

std::string plan_problem(const job_plan& plan, const std::string& name, const std::string& data_root,
                         const std::string& checkpoint_root) {
  config c;
  try {
    c = parse_config_string(plan.config_toml, plan.tag.job);
  } catch (const std::exception& e) {
    return e.what();
  }
  try {
    auto layout = unit_layout::of(plan.units, c.cluster.shards, c.model.moe_as_dense_relu ? 0 : c.model.experts);
    // A worker of the plan may host no unit (it still holds snapshots others fetch).
    if (std::none_of(plan.units.begin(), plan.units.end(), [&](const worker_assignment& a) { return a.worker == name; }))
      return "worker " + name + " is not in the plan";
    const auto mine = layout.actors_of_worker(name).size();
    if (mine > static_cast<std::size_t>(max_unit_actors_per_worker))
      return "the plan gives worker " + name + " " + std::to_string(mine) + " unit actors; a worker runs at most " +
             std::to_string(max_unit_actors_per_worker);
  } catch (const std::exception& e) {
    return e.what();
  }
  if (!c.data.synthetic)
    if (auto why = path_outside(c.data.dir, data_root, "data directory", "--data-root"); !why.empty()) return why;
  if (!plan.checkpoint_dir.empty())
    if (auto why = path_outside(plan.checkpoint_dir, checkpoint_root, "checkpoint directory", "--checkpoint-root");
        !why.empty())
      return why;
  return {};
}

worker_actor::behavior_type worker_behavior(self_ptr self, worker_options opts) {
  auto& s = self->state;
  s.opts = opts;
  s.gate = std::make_unique<auth_gate>(opts.secret, caf::to_string(self->node()));
  s.stats.gflops = opts.gflops;
  s.stats.memory_limit = opts.memory_limit;
  // CAF's system messages never reach a handler's gate: check them here. An exit from this
  // process ends the worker (the daemon stopping it) or is a unit actor ending; from
  // anywhere else it is dropped.
  self->set_exit_handler([self](caf::exit_msg& m) {
    auto& s = self->state;
    if (!is_local(self)) {
      ++s.refused.system_messages;
      return;
    }
    for (auto i = s.units.begin(); i != s.units.end(); ++i)
      if (i->second.address() == m.source) {
        if (m.reason != caf::exit_reason::user_shutdown && m.reason)
          spdlog::error("worker {}: unit actor {} ended: {}", s.opts.name, i->first, self->system().render(m.reason));
        s.units.erase(i);
        return;
      }
    for (auto i = s.sessions.begin(); i != s.sessions.end(); ++i)
      if (i->second.address() == m.source) {
        if (m.reason != caf::exit_reason::user_shutdown && m.reason)
          spdlog::error("worker {}: inference actor of session {} ended: {}", s.opts.name, i->first,
                        self->system().render(m.reason));
        s.sessions.erase(i);
        return;
      }
    self->quit(m.reason);
  });
  // A down message counts only from the very actor it names, which this worker monitors
  // (CAF's own notice of a lost connection comes from the proxy of that actor).
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& s = self->state;
    auto& sender = self->current_sender();
    if (!sender || sender->address() != dm.source) {
      ++s.refused.system_messages;
      return;
    }
    if (s.coordinator && dm.source == s.coordinator.address()) {
      spdlog::warn("worker {}: lost the coordinator ({})", s.opts.name, self->system().render(dm.reason));
      // A registration in flight on the dropped connection cannot succeed: the one after the
      // reconnect counts.
      ++s.registration_attempt;
      if (s.opts.coordinator_timeout.count() == 0) {
        self->quit(make_error(glam_errc::not_allowed, "lost the coordinator"));
        return;
      }
      // Its units stop (the coordinator that comes back restores them from the snapshots,
      // which stay here); the worker looks for it again.
      if (s.host_promise.pending()) s.host_promise.deliver(make_error(glam_errc::stale_epoch, "lost the coordinator"));
      stop_units(self);
      stop_sessions(self);
      s.gate->revoke(caf::to_string(s.coordinator.node()));
      s.coordinator = nullptr;
      if (s.phase != worker_phase::registering) transition(self, worker_phase::registering);
      s.lost_since = std::chrono::steady_clock::now();
      s.backoff = std::chrono::milliseconds(200);
      reach_coordinator(self);
      return;
    }
    for (auto i = s.peers.begin(); i != s.peers.end(); ++i)
      if (i->second.handle.address() == dm.source) {
        spdlog::warn("worker {}: lost peer {} ({})", s.opts.name, i->first, i->second.address);
        s.gate->revoke(caf::to_string(dm.source.node()));
        s.peers.erase(i);
        return;
      }
    ++s.refused.system_messages;
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
    if (self->state.gate->admit_or_count(sender_node(self))) ++self->state.refused.unexpected;
    return caf::sec::unexpected_message;
  });
  self->set_exception_handler(
      [self](std::exception_ptr& e) { return exit_reason_of(e, "worker " + self->state.opts.name); });
  return {
      [self](register_atom, coordinator_actor coordinator, std::uint16_t port) -> caf::result<std::string> {
        auto& s = self->state;
        if (!is_local(self)) {
          ++s.refused.not_allowed;
          return make_error(glam_errc::not_allowed, "register is local only");
        }
        if (s.phase != worker_phase::registering || s.registered.pending())
          return make_error(glam_errc::wrong_phase, "already registered");
        s.listen_port = port;
        s.coordinator = coordinator;
        self->monitor(coordinator);
        s.registered = self->make_response_promise<std::string>();
        auto rp = s.registered;
        start_registration(self);
        return rp;
      },
      // The coordinator declared this worker dead (it was silent past the timeout): its
      // units belong to an older epoch now. Drop them and register again, as a new member.
      [self](evict_atom, const std::string& why) {
        auto& s = self->state;
        if (!from_coordinator(self)) return;
        spdlog::warn("worker {}: evicted by the coordinator ({}); registering again", s.opts.name, why);
        if (s.host_promise.pending()) s.host_promise.deliver(make_error(glam_errc::stale_epoch, "evicted"));
        stop_units(self);
        stop_sessions(self);
        s.gate->revoke(caf::to_string(s.coordinator.node()));
        transition(self, worker_phase::registering);
        start_registration(self);
      },
      // Peers (other workers) authenticate with the same handshake.
      [self](hello_atom, const hello_msg& h) -> caf::result<challenge_msg> {
        auto& s = self->state;
        if (auto why = hello_problem(h); !why.empty()) {
          ++s.refused.malformed;
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
          return make_error(glam_errc::wrong_secret, "wrong cluster secret (or no hello before the proof)");
        }
        // The answer goes out first: the dialling peer admits this node when it reads it,
        // and must have before any request of ours (a snapshot fetch) reaches it. (Making
        // the promise takes the sender out of the current message: read it before.)
        auto peer = caf::actor_cast<worker_actor>(self->current_sender());
        auto rp = self->make_response_promise<std::string>();
        rp.deliver(std::string("authenticated"));
        // A worker dialled us (the smaller name dials; possibly before our plan arrived):
        // it is our peer now.
        if (hello->role == "worker" && hello->name < s.opts.name) {
          s.gate->grant(node);
          if (auto old = s.peers.find(hello->name); old != s.peers.end()) self->demonitor(old->second.handle.address());
          s.peers[hello->name] = {hello->listen_host + ":" + std::to_string(hello->listen_port), peer};
          self->monitor(peer);
          check_host_done(self);
        }
        return rp;
      },
      [self](tick_atom) {
        auto& s = self->state;
        if (!from_self(self)) return;
        if (s.coordinator && s.phase != worker_phase::registering && !s.opts.faults->coordinator_cut())
          self->send(s.coordinator, heartbeat_atom::value, current_stats(self));
        self->delayed_send(self, s.opts.heartbeat, tick_atom::value);
      },
      [self](ping_atom) -> caf::result<worker_stats> {
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        return current_stats(self);
      },
      [self](host_atom, const job_plan& plan) -> caf::result<std::uint64_t> {
        auto& s = self->state;
        if (!from_coordinator(self)) return make_error(glam_errc::not_allowed, "host is for the coordinator only");
        if (s.phase == worker_phase::registering) return make_error(glam_errc::wrong_phase, "not registered yet");
        if (plan.tag.epoch < s.epoch) {
          ++s.refused.stale;
          return make_error(glam_errc::stale_epoch, "stale epoch " + std::to_string(plan.tag.epoch));
        }
        if (auto why = plan_problem(plan, s.opts.name, s.opts.data_root, s.opts.checkpoint_root); !why.empty()) {
          ++s.refused.malformed;
          return make_error(glam_errc::cannot_host, why);
        }
        s.epoch = plan.tag.epoch;
        s.plan = plan;
        s.gathered.clear();
        s.wanted.clear();
        s.incoming.clear();
        if (plan.from == restore_kind::snapshot) {
          const config c = parse_config_string(plan.config_toml, plan.tag.job);
          const auto layout = unit_layout::of(plan.units, c.cluster.shards, c.model.moe_as_dense_relu ? 0 : c.model.experts);
          for (const auto& u : layout.snapshot_units_of(s.opts.name)) s.wanted.insert(u);
        }
        std::string units;
        for (const auto& a : plan.units)
          if (a.worker == s.opts.name)
            for (const auto& u : unit_names(a)) units += " " + u;
        spdlog::info("worker {}: hosting job {} epoch {}:{}", s.opts.name, plan.tag.job, plan.tag.epoch, units);
        if (s.host_promise.pending())
          s.host_promise.deliver(make_error(glam_errc::stale_epoch, "superseded by a newer plan"));
        stop_units(self);
        transition(self, worker_phase::connecting);
        s.host_promise = self->make_response_promise<std::uint64_t>();
        s.fetched_bytes = 0;
        s.expected_peers.clear();
        s.host_failure.clear();
        for (const auto& a : plan.units)
          if (a.worker != s.opts.name) s.expected_peers[a.worker] = a.host + ":" + std::to_string(a.port);
        // One connection per pair: the worker with the smaller name dials, the other one
        // learns the peer when it authenticates (two nodes dialling each other at once
        // can leave CAF 0.17's handshake hanging).
        for (const auto& a : plan.units)
          if (a.worker > s.opts.name || (s.opts.local_peers && a.worker != s.opts.name))
            connect_peer(self, a, [self](std::string why) {
              auto& st = self->state;
              if (!why.empty() && st.host_failure.empty()) st.host_failure = why;
              check_host_done(self);
            });
        self->delayed_send(self, s.opts.request_timeout, host_deadline_atom::value, plan.tag.job, plan.tag.epoch);
        auto rp = s.host_promise;
        check_host_done(self);
        return rp;
      },
      [self](host_deadline_atom, const std::string& job, std::int64_t epoch) {
        auto& s = self->state;
        if (!from_self(self)) return;
        if (!s.host_promise.pending() || s.plan.tag.job != job || s.plan.tag.epoch != epoch) return;
        std::string missing;
        for (const auto& [name, address] : s.expected_peers)
          if (!s.peers.count(name)) missing += (missing.empty() ? "" : ", ") + name + " (" + address + ")";
        if (s.host_failure.empty()) s.host_failure = "peers did not connect in time: " + missing;
        check_host_done(self);
      },
      [self](release_atom, const job_tag& tag) -> caf::result<std::string> {
        auto& s = self->state;
        if (!from_coordinator(self)) return make_error(glam_errc::not_allowed, "release is for the coordinator only");
        if (tag.epoch < s.epoch) {
          ++s.refused.stale;
          return make_error(glam_errc::stale_epoch, "stale epoch " + std::to_string(tag.epoch));
        }
        s.epoch = tag.epoch;
        if (s.plan.tag.job == tag.job && (s.phase == worker_phase::hosting || s.phase == worker_phase::connecting)) {
          if (s.host_promise.pending()) s.host_promise.deliver(make_error(glam_errc::stale_epoch, "released"));
          stop_units(self);
          transition(self, worker_phase::idle);
        }
        return std::string("released");
      },
      [self](tensor_chunk& c) {
        auto& s = self->state;
        if (!admitted(self)) return;
        if (c.tag.epoch != s.epoch || s.phase != worker_phase::hosting || c.tag.job != s.plan.tag.job || !s.layout) {
          ++s.refused.stale;
          return;
        }
        // The sender must be on the node of the worker hosting the unit actor the chunk
        // says it is from, and the chunk for a unit actor hosted here.
        if (c.from < 0 || c.from >= s.layout->size() || !s.units.count(c.to)) {
          ++s.refused.malformed;
          return;
        }
        const auto& host = s.layout->actor(c.from).worker;
        auto p = s.peers.find(host);
        const auto node = host == s.opts.name ? caf::to_string(self->node())
                                              : p == s.peers.end() ? std::string() : caf::to_string(p->second.handle.node());
        if (node.empty() || node != sender_node(self)) {
          ++s.refused.not_allowed;
          return;
        }
        // Bytes over the network: a unit's chunks to a unit of the same worker do not count.
        if (host != s.opts.name) s.stats.bytes_received += static_cast<std::int64_t>(c.data.size() * sizeof(float));
        // Moved on, not copied: a chunk holds up to 4 MiB.
        self->send(s.units[c.to], std::move(c));
      },
      [self](begin_atom a, const job_tag& tag, const round_id& round) {
        if (order_for_hosted_job(self, tag)) to_units(self, a, tag, round);
      },
      [self](finish_atom a, const job_tag& tag, const round_id& round, bool apply, bool snapshot) {
        if (order_for_hosted_job(self, tag)) to_units(self, a, tag, round, apply, snapshot);
      },
      [self](checkpoint_atom a, const job_tag& tag, std::int64_t step) {
        if (order_for_hosted_job(self, tag)) to_units(self, a, tag, step);
      },
      [self](snapshot_atom, const job_tag& tag, unit_snapshot& st) {
        auto& s = self->state;
        auto& sender = self->current_sender();
        const bool own_unit = sender && std::any_of(s.units.begin(), s.units.end(), [&](const auto& u) {
                                return u.second.address() == sender->address();
                              });
        if (!own_unit) {
          ++s.refused.not_allowed;
          return;
        }
        if (tag != s.plan.tag) {
          ++s.refused.stale;
          return;
        }
        keep_snapshot(self, std::move(st), true);
      },
      [self](blob_chunk& c) {
        auto& s = self->state;
        if (!admitted(self)) return;
        if (!from_peer(self)) return;
        if (c.tag.job != s.plan.tag.job || c.tag.epoch != s.epoch || s.phase == worker_phase::registering) {
          ++s.refused.stale;
          return;
        }
        // A state comes in for the plan being gathered (a fetch's answer), or as a buddy's copy.
        const auto key = std::make_tuple(sender_node(self), c.unit, c.step);
        auto it = s.incoming.find(key);
        if (it == s.incoming.end()) {
          if (s.incoming.size() >= 64) {
            ++s.refused.malformed;
            return;
          }
          it = s.incoming.emplace(key, state_assembler(max_state_bytes(s.plan))).first;
        }
        if (auto why = it->second.add(std::move(c)); !why.empty()) {
          ++s.refused.malformed;
          spdlog::warn("worker {}: {}", s.opts.name, why);
          s.incoming.erase(it);
          return;
        }
        if (!it->second.complete()) return;
        std::string why;
        auto st = it->second.take(&why);
        s.incoming.erase(it);
        if (!why.empty()) {
          ++s.refused.malformed;
          spdlog::warn("worker {}: {}", s.opts.name, why);
          return;
        }
        if (s.wanted.count(st.unit) && st.step == s.plan.start_step) {
          s.fetched_bytes += st.bytes.size();
          return state_gathered(self, std::move(st));
        }
        keep_snapshot(self, std::move(st), false);
      },
      [self](fetch_atom, const job_tag& tag, const std::string& unit, std::int64_t step) -> caf::result<std::uint64_t> {
        auto& s = self->state;
        if (!admitted(self)) return make_error(glam_errc::not_authenticated, "not authenticated");
        if (!from_peer(self)) return make_error(glam_errc::not_allowed, "fetch is for peers of the job");
        const auto* st = s.store.find(tag.job, unit, step);
        if (!st) return make_error(glam_errc::unknown_job, "no snapshot of " + unit.substr(0, 80) + " at step " + std::to_string(step) + " here");
        auto to = caf::actor_cast<worker_actor>(self->current_sender());
        for (auto& chunk : split_state(*st, tag)) self->send(to, std::move(chunk));
        return static_cast<std::uint64_t>(st->bytes.size());
      },
      [self](drained_atom) {
        auto& s = self->state;
        if (!from_coordinator(self)) return;
        spdlog::info("worker {}: drained", s.opts.name);
        stop_units(self);
        self->quit();
      },
      // Serving sessions: the coordinator places a session's units here; the session's
      // inference actor loads them and serves the calls the coordinator routes here.
      [self](infer_host_atom a, infer_assignment& assignment) -> caf::result<std::string> {
        auto& s = self->state;
        if (!from_coordinator(self)) return make_error(glam_errc::not_allowed, "for the coordinator only");
        if (s.phase == worker_phase::registering) return make_error(glam_errc::wrong_phase, "not registered yet");
        if (auto why = path_outside(assignment.checkpoint, s.opts.checkpoint_root, "checkpoint directory",
                                    "--checkpoint-root");
            !why.empty()) {
          ++s.refused.malformed;
          return make_error(glam_errc::cannot_host, "session " + assignment.session.substr(0, 64) + ": " + why);
        }
        auto it = s.sessions.find(assignment.session);
        if (it == s.sessions.end()) {
          if (s.sessions.size() >= max_inference_sessions)
            return make_error(glam_errc::cannot_host, "worker " + s.opts.name + " hosts " +
                                                          std::to_string(max_inference_sessions) +
                                                          " serving sessions already, the most it takes");
          auto actor = self->system().spawn<caf::detached>(inference_actor_behavior, self->address());
          self->link_to(actor);
          it = s.sessions.emplace(assignment.session, actor).first;
          std::string units;
          for (const auto& u : assignment.units) units += " " + u;
          spdlog::info("worker {}: serving session {}:{}", s.opts.name, assignment.session, units);
        }
        auto rp = self->make_response_promise<std::string>();
        // Loading reads the checkpoint: give it the time a big model's files take.
        self->request(it->second, 10 * s.opts.request_timeout, a, std::move(assignment))
            .then([rp](std::string& units) mutable { rp.deliver(std::move(units)); },
                  [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [self](infer_atom a, infer_request& r) -> caf::result<infer_reply> {
        auto& s = self->state;
        if (!from_coordinator(self)) return make_error(glam_errc::not_allowed, "for the coordinator only");
        auto it = s.sessions.find(r.session);
        if (it == s.sessions.end())
          return make_error(glam_errc::bad_request, "no session '" + r.session.substr(0, 64) + "' on worker " + s.opts.name);
        const auto bytes = static_cast<std::int64_t>(r.data.data.size() * sizeof(float));
        s.stats.bytes_received += bytes;
        auto rp = self->make_response_promise<infer_reply>();
        auto counters = s.counters;
        self->request(it->second, 30 * s.opts.request_timeout, a, std::move(r))
            .then(
                [rp, counters](infer_reply& out) mutable {
                  counters->bytes_sent += static_cast<std::int64_t>(out.data.data.size() * sizeof(float));
                  rp.deliver(std::move(out));
                },
                [rp](caf::error& e) mutable { rp.deliver(std::move(e)); });
        return rp;
      },
      [self](infer_end_atom, const std::string& session) {
        auto& s = self->state;
        if (!from_coordinator(self)) return;
        auto it = s.sessions.find(session);
        if (it == s.sessions.end()) return;
        spdlog::info("worker {}: session {} ended", s.opts.name, session);
        self->unlink_from(it->second);
        self->send_exit(it->second, caf::exit_reason::user_shutdown);
        s.sessions.erase(it);
      },
      [self](reconnect_atom) {
        if (!from_self(self)) return;
        reach_coordinator(self);
      },
      [self](shutdown_atom) -> caf::result<std::string> {
        if (!is_local(self)) {
          ++self->state.refused.not_allowed;
          return make_error(glam_errc::not_allowed, "shutdown is local only");
        }
        if (self->state.coordinator) self->send(self->state.coordinator, leave_atom::value);
        self->quit();
        return std::string("left");
      },
  };
}

}  // namespace glam
