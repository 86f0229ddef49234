#include "worker/worker_actor.hpp"

#include <functional>
#include <set>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <spdlog/spdlog.h>

#include "actors/coordinator_protocol.hpp"
#include "actors/daemon.hpp"
#include "actors/fingerprint.hpp"
#include "actors/security.hpp"

namespace glam {

namespace {

using self_ptr = caf::stateful_actor<worker_state>*;

std::string sender_node(self_ptr self) {
  auto& s = self->current_sender();
  return s ? caf::to_string(s->node()) : std::string();
}

bool admitted(self_ptr self) { return self->state.gate->admit_or_count(sender_node(self)); }

bool is_local(self_ptr self) { return sender_node(self) == caf::to_string(self->system().node()); }

// A step order for the hosted job, from the coordinator, of the current epoch.
bool from_coordinator(self_ptr self, const step_tag& tag) {
  auto& s = self->state;
  if (!admitted(self) || !s.coordinator || sender_node(self) != caf::to_string(s.coordinator.node())) return false;
  if (tag.epoch < s.epoch || !s.hosting || tag.job != s.plan.tag.job) {
    ++s.stats.dropped_stale_epoch;
    return false;
  }
  return true;
}

worker_stats current_stats(self_ptr self) {
  auto st = self->state.stats;
  st.tokens_computed = self->state.counters->tokens_computed;
  st.bytes_sent = self->state.counters->bytes_sent;
  st.peers = static_cast<std::int64_t>(self->state.peers.size());
  st.name = self->state.opts.name;
  st.memory_bytes = resident_bytes();
  st.dropped_unauthenticated = self->state.gate->dropped();
  return st;
}

void finish_registration(self_ptr self, result_msg r) {
  auto& s = self->state;
  if (r.ok) {
    spdlog::info("worker {}: {}", s.opts.name, r.message);
    self->send(self, tick_atom::value);
  } else {
    spdlog::error("worker {}: registration refused: {}", s.opts.name, r.message);
  }
  if (s.registered.pending()) s.registered.deliver(r);
  if (!r.ok) self->quit(caf::make_error(caf::sec::runtime_error, r.message));
}


void stop_units(self_ptr self) {
  auto& s = self->state;
  for (auto& [n, unit] : s.units) self->send_exit(unit, caf::exit_reason::user_shutdown);
  s.units.clear();
}

// The plan's units hosted here, each in a unit actor of its own thread (one per attention
// shard, one for this worker's experts), which learn by unit number the worker actor
// hosting every unit: their peers' (connected directly) or this one.
void start_units(self_ptr self) {
  auto& s = self->state;
  stop_units(self);
  s.actors = unit_actors_of(s.plan.placement);
  std::vector<caf::actor> peers;
  for (const auto& host : s.actors.host) {
    auto p = s.peers.find(host);
    peers.push_back(host == s.opts.name ? caf::actor_cast<caf::actor>(self)
                                        : p == s.peers.end() ? caf::actor() : p->second.handle);
  }
  for (std::size_t u = 0; u < s.actors.host.size(); ++u) {
    if (s.actors.host[u] != s.opts.name) continue;
    unit_options co{s.opts.name, static_cast<int>(u), s.plan, s.coordinator, s.counters};
    auto unit = self->system().spawn<caf::detached>(unit_actor, co);
    // A unit's thread ends with this actor, whatever ends it.
    self->attach_functor([addr = unit.address()](const caf::error&) {
      caf::anon_send_exit(addr, caf::exit_reason::user_shutdown);
    });
    self->send(unit, peers_atom::value, peers);
    s.units[static_cast<int>(u)] = unit;
  }
}

template <class... Ts>
void to_units(self_ptr self, Ts&&... xs) {
  for (auto& [n, unit] : self->state.units) self->send(unit, xs...);
}

// Answers the coordinator's host request once every peer of the plan is connected, or
// with the first failure.
void check_host_done(self_ptr self) {
  auto& s = self->state;
  if (!s.host_promise.pending()) return;
  if (!s.host_failure.empty()) {
    spdlog::warn("worker {}: {}", s.opts.name, s.host_failure);
    s.host_promise.deliver(result_msg{false, s.host_failure});
    return;
  }
  for (const auto& [name, address] : s.expected_peers)
    if (!s.peers.count(name)) return;
  start_units(self);
  s.host_promise.deliver(result_msg{true, "hosting"});
}

// Connects to one peer through the middleman actor (a blocking remote_actor would stall
// this actor), then proves the secret to it and checks its proof; done(reason) follows,
// with an empty reason on success.
void connect_peer(self_ptr self, const unit_assignment& a, std::function<void(std::string)> done) {
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
    done("cannot reach peer " + name + " at " + address + ": " + self->system().render(e));
  };
  self->request(self->system().middleman().actor_handle(), timeout, caf::connect_atom::value, a.host, a.port)
      .then(
          [self, name, address, timeout, done, fail](const caf::node_id&, caf::strong_actor_ptr ptr,
                                                     const std::set<std::string>&) {
            if (!ptr) return done("peer " + name + " at " + address + " publishes no actor");
            auto peer = caf::actor_cast<caf::actor>(ptr);
            hello_msg h;
            h.role = "worker";
            h.name = self->state.opts.name;
            h.version = protocol_version;
            h.fingerprint = local_fingerprint();
            h.client_nonce = random_hex(32);
            h.listen_host = self->state.opts.listen_host;
            h.listen_port = self->state.opts.listen_port;
            auto nonce = h.client_nonce;
            self->request(peer, timeout, hello_atom::value, h)
                .then(
                    [self, name, address, timeout, done, fail, peer, nonce](const challenge_msg& c) {
                      if (!c.ok) return done("peer " + name + " refused: " + c.reason);
                      const bool peer_ok = self->state.gate->check_server_proof(nonce, c.server_proof);
                      self->request(peer, timeout, auth_atom::value,
                                    proof_msg{c.nonce, client_proof(self->state.opts.secret, c.nonce)})
                          .then(
                              [self, name, address, done, peer, peer_ok](const result_msg& r) {
                                if (!peer_ok) return done("peer " + name + " could not prove the cluster secret");
                                if (!r.ok) return done("peer " + name + " refused: " + r.message);
                                self->state.gate->grant(caf::to_string(peer.node()));
                                self->state.peers[name] = {address, peer};
                                self->monitor(peer);
                                done({});
                              },
                              fail);
                    },
                    fail);
          },
          fail);
}

}  // namespace

caf::behavior worker_actor(self_ptr self, worker_options opts) {
  auto& s = self->state;
  s.opts = opts;
  s.gate = std::make_unique<auth_gate>(opts.secret, caf::to_string(self->system().node()));
  s.stats.gflops = opts.gflops;
  self->set_down_handler([self](const caf::down_msg& dm) {
    if (dm.source == self->state.coordinator.address()) {
      spdlog::error("worker {}: lost the coordinator ({})", self->state.opts.name, self->system().render(dm.reason));
      self->quit(caf::make_error(caf::sec::runtime_error, "coordinator lost"));
      return;
    }
    auto& peers = self->state.peers;
    for (auto i = peers.begin(); i != peers.end(); ++i)
      if (i->second.handle.address() == dm.source) {
        spdlog::warn("worker {}: lost peer {} ({})", self->state.opts.name, i->first, i->second.address);
        self->state.gate->revoke(caf::to_string(dm.source.node()));
        peers.erase(i);
        break;
      }
  });
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view&) -> caf::result<caf::message> {
    self->state.gate->admit_or_count(sender_node(self));
    return caf::sec::unexpected_message;
  });
  return {
      [self](register_atom, caf::actor coordinator, std::uint16_t port) -> caf::result<result_msg> {
        auto& s = self->state;
        s.opts.listen_port = port;
        if (!is_local(self)) return result_msg{false, "register is local only"};
        s.coordinator = coordinator;
        self->monitor(coordinator);
        s.registered = self->make_response_promise();
        hello_msg h;
        h.role = "worker";
        h.name = s.opts.name;
        h.version = protocol_version;
        h.fingerprint = local_fingerprint();
        h.client_nonce = random_hex(32);
        h.listen_host = s.opts.listen_host;
        h.listen_port = s.opts.listen_port;
        s.client_nonce = h.client_nonce;
        self->request(coordinator, s.opts.request_timeout, hello_atom::value, h)
            .then(
                [self](const challenge_msg& c) {
                  auto& s = self->state;
                  if (!c.ok) return finish_registration(self, {false, c.reason});
                  // Our proof goes out even when the coordinator's fails, so that both
                  // sides report the mismatch (an HMAC reveals nothing of the secret).
                  const bool server_ok = s.gate->check_server_proof(s.client_nonce, c.server_proof);
                  // The coordinator proved the secret: admit its node.
                  if (server_ok) s.gate->grant(caf::to_string(s.coordinator.node()));
                  self->request(s.coordinator, s.opts.request_timeout, auth_atom::value,
                                proof_msg{c.nonce, client_proof(s.opts.secret, c.nonce)})
                      .then([self, server_ok](const result_msg& r) {
                              if (!server_ok)
                                return finish_registration(self, {false, "the coordinator could not prove the cluster "
                                                                         "secret: wrong --secret-file on one side"});
                              finish_registration(self, r);
                            },
                            [self](const caf::error& e) {
                              finish_registration(self, {false, "authentication: " + self->system().render(e)});
                            });
                },
                [self](const caf::error& e) {
                  finish_registration(self, {false, "no answer to hello: " + self->system().render(e)});
                });
        return s.registered;
      },
      // Peers (other workers, clients) authenticate with the same handshake.
      [self](hello_atom, const hello_msg& h) -> challenge_msg {
        auto& s = self->state;
        challenge_msg c;
        if (h.version != protocol_version) {
          c.reason = "protocol version " + std::to_string(h.version) + " differs from this worker's " +
                     std::to_string(protocol_version);
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
        if (!s.gate->verify(node, p.nonce, p.proof)) return {false, "wrong cluster secret"};
        // A worker dialled us (possibly before our plan arrived): it is our peer now.
        if (hello.role == "worker" && !hello.name.empty() && hello.name < s.opts.name) {
          auto peer = caf::actor_cast<caf::actor>(self->current_sender());
          s.peers[hello.name] = {hello.listen_host + ":" + std::to_string(hello.listen_port), peer};
          self->monitor(peer);
          check_host_done(self);
        }
        return {true, "authenticated"};
      },
      [self](tick_atom) {
        auto& s = self->state;
        self->send(s.coordinator, heartbeat_atom::value, current_stats(self));
        self->delayed_send(self, s.opts.heartbeat, tick_atom::value);
      },
      [self](ping_atom) -> caf::result<worker_stats> {
        if (!admitted(self)) return caf::make_error(caf::sec::runtime_error, "not authenticated");
        return current_stats(self);
      },
      [self](host_atom, const job_plan& plan) -> caf::result<result_msg> {
        auto& s = self->state;
        if (!admitted(self)) return result_msg{false, "not authenticated"};
        if (plan.tag.epoch < s.epoch) {
          ++s.stats.dropped_stale_epoch;
          return result_msg{false, "stale epoch " + std::to_string(plan.tag.epoch)};
        }
        s.epoch = plan.tag.epoch;
        s.plan = plan;
        s.hosting = true;
        std::string units;
        for (const auto& a : plan.placement)
          if (a.worker == s.opts.name) {
            for (auto sh : a.shards) units += " shard" + std::to_string(sh);
            for (auto e : a.experts) units += " expert" + std::to_string(e);
          }
        spdlog::info("worker {}: hosting job {} epoch {}:{}", s.opts.name, plan.tag.job, plan.tag.epoch, units);
        // One connection per pair: the worker with the smaller name dials, the other one
        // learns the peer when it authenticates (two nodes dialling each other at once
        // can leave CAF 0.17's handshake hanging).
        if (s.host_promise.pending()) s.host_promise.deliver(result_msg{false, "superseded by a newer plan"});
        s.host_promise = self->make_response_promise<result_msg>();
        s.expected_peers.clear();
        s.host_failure.clear();
        for (const auto& a : plan.placement)
          if (a.worker != s.opts.name) s.expected_peers[a.worker] = a.host + ":" + std::to_string(a.port);
        for (const auto& a : plan.placement)
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
        if (!is_local(self) || !s.host_promise.pending() || s.plan.tag.job != job || s.plan.tag.epoch != epoch) return;
        std::string missing;
        for (const auto& [name, address] : s.expected_peers)
          if (!s.peers.count(name)) missing += (missing.empty() ? "" : ", ") + name + " (" + address + ")";
        if (s.host_failure.empty()) s.host_failure = "peers did not connect in time: " + missing;
        check_host_done(self);
      },
      [self](release_atom, const step_tag& tag) -> result_msg {
        auto& s = self->state;
        if (!admitted(self)) return {false, "not authenticated"};
        if (tag.epoch < s.epoch) {
          ++s.stats.dropped_stale_epoch;
          return {false, "stale epoch " + std::to_string(tag.epoch)};
        }
        s.epoch = tag.epoch;
        if (s.hosting && s.plan.tag.job == tag.job) {
          s.hosting = false;
          stop_units(self);
        }
        return {true, "released"};
      },
      [self](tensor_chunk& c) {
        auto& s = self->state;
        if (!admitted(self)) return;
        // Bytes over the network: a unit's chunks to a unit of the same worker do not count.
        if (!is_local(self)) s.stats.bytes_received += static_cast<std::int64_t>(c.data.size() * sizeof(float));
        if (c.tag.epoch < s.epoch || !s.hosting || c.tag.job != s.plan.tag.job) {
          ++s.stats.dropped_stale_epoch;
          return;
        }
        // The sender must be the worker that hosts the unit the chunk says it is from.
        const auto& hosts = s.actors.host;
        if (c.from < 0 || static_cast<std::size_t>(c.from) >= hosts.size()) return;
        const auto& host = hosts[static_cast<std::size_t>(c.from)];
        auto p = s.peers.find(host);
        const auto node = host == s.opts.name ? caf::to_string(self->system().node())
                                              : p == s.peers.end() ? std::string() : caf::to_string(p->second.handle.node());
        if (node.empty() || node != sender_node(self)) return;
        // Moved on, not copied: a chunk holds up to 4 MiB.
        if (auto unit = s.units.find(c.to); unit != s.units.end()) self->send(unit->second, std::move(c));
      },
      [self](begin_atom a, const step_tag& tag, bool train) {
        if (from_coordinator(self, tag)) to_units(self, a, tag, train);
      },
      [self](finish_atom a, const step_tag& tag, bool apply) {
        if (from_coordinator(self, tag)) to_units(self, a, tag, apply);
      },
      [self](checkpoint_atom a, const step_tag& tag) {
        if (from_coordinator(self, tag)) to_units(self, a, tag);
      },
      [self](shutdown_atom) -> result_msg {
        if (!is_local(self)) {
          self->state.gate->admit_or_count(sender_node(self));
          return {false, "shutdown is local only"};
        }
        if (self->state.coordinator) self->send(self->state.coordinator, leave_atom::value);
        self->quit();
        return {true, "left"};
      },
  };
}

}  // namespace glam
