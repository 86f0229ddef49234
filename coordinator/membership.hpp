#pragma once
// The coordinator's view of its workers: who registered (by name), where peers reach them,
// what they last reported, and when they were last heard from. Plain class: time is
// passed in, so failure detection is tested without sockets or sleeps.
#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "actors/messages.hpp"

namespace glam {

using runtime_clock = std::chrono::steady_clock;

struct member {
  std::string name;
  std::string node;  // the worker actor (CAF node and actor id), as text
  std::string host;
  std::uint16_t port = 0;
  worker_stats stats;
  runtime_clock::time_point joined;
  runtime_clock::time_point last_seen;
};

// A coordinator takes at most this many workers (its tables are bounded).
inline constexpr std::size_t max_workers = 1024;

class membership {
 public:
  // Adds a worker; returns the reason when it cannot join (its name is taken by a live
  // worker on another node). A worker that re-registers from the same node replaces itself.
  std::string add(const std::string& name, const std::string& node, const std::string& host,
                  std::uint16_t port, runtime_clock::time_point now);
  // Records a heartbeat from node; false when the node is not a member (stale or fenced).
  bool heartbeat(const std::string& node, const worker_stats& stats, runtime_clock::time_point now);
  // Workers silent for longer than timeout, removed from the table, by name. Checks come
  // every `interval`; silence the coordinator did not watch does not count: when a check
  // comes later than that (the coordinator was busy, starved or stopped, and the heartbeats
  // may be waiting in its mailbox), every worker's silence is shortened by the delay.
  std::vector<member> expire(runtime_clock::time_point now, std::chrono::milliseconds timeout,
                             std::chrono::milliseconds interval);
  // Removes the worker on node; returns it (name empty when there was none).
  member remove_node(const std::string& node);

  const member* by_node(const std::string& node) const;
  const member* by_name(const std::string& name) const;
  // Live workers in name order (the order placement sees them in).
  std::vector<const member*> workers() const;
  std::size_t size() const { return by_name_.size(); }
  // When a worker last joined or left (placement waits for the members to settle).
  runtime_clock::time_point changed_at() const { return changed_at_; }
  void touch(runtime_clock::time_point now = runtime_clock::now()) { changed_at_ = now; }

 private:
  std::map<std::string, member> by_name_;
  runtime_clock::time_point changed_at_{};
  runtime_clock::time_point checked_at_{};
};

}  // namespace glam
