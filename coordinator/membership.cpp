#include "coordinator/membership.hpp"

#include <algorithm>

namespace glam {

std::string membership::add(const std::string& name, const std::string& node, const std::string& host,
                            std::uint16_t port, runtime_clock::time_point now) {
  auto i = by_name_.find(name);
  if (i != by_name_.end() && i->second.node != node)
    return "worker name '" + name + "' is taken by a live worker at " + i->second.host + ":" +
           std::to_string(i->second.port) + ": give another --name";
  // A node registers one worker: drop an older name it used.
  for (auto j = by_name_.begin(); j != by_name_.end();)
    j = (j->second.node == node && j->first != name) ? by_name_.erase(j) : std::next(j);
  member m;
  m.name = name;
  m.node = node;
  m.host = host;
  m.port = port;
  m.stats.name = name;
  m.joined = now;
  m.last_seen = now;
  by_name_[name] = m;
  changed_at_ = now;
  return {};
}

bool membership::heartbeat(const std::string& node, const worker_stats& stats,
                           runtime_clock::time_point now) {
  for (auto& [name, m] : by_name_)
    if (m.node == node) {
      m.stats = stats;
      m.stats.name = name;  // the registered name, not what the message claims
      m.last_seen = now;
      return true;
    }
  return false;
}

std::vector<member> membership::expire(runtime_clock::time_point now, std::chrono::milliseconds timeout,
                                       std::chrono::milliseconds interval) {
  if (checked_at_ != runtime_clock::time_point{} && now - checked_at_ > interval) {
    const auto unwatched = now - checked_at_ - interval;
    for (auto& [name, m] : by_name_) m.last_seen = std::min(now, m.last_seen + unwatched);
  }
  checked_at_ = now;
  std::vector<member> dead;
  for (auto i = by_name_.begin(); i != by_name_.end();) {
    if (now - i->second.last_seen > timeout) {
      dead.push_back(i->second);
      i = by_name_.erase(i);
      changed_at_ = now;
    } else {
      ++i;
    }
  }
  return dead;
}

member membership::remove_node(const std::string& node) {
  for (auto i = by_name_.begin(); i != by_name_.end(); ++i)
    if (i->second.node == node) {
      member m = i->second;
      by_name_.erase(i);
      changed_at_ = runtime_clock::now();
      return m;
    }
  return {};
}

const member* membership::by_node(const std::string& node) const {
  for (auto& [name, m] : by_name_)
    if (m.node == node) return &m;
  return nullptr;
}

const member* membership::by_name(const std::string& name) const {
  auto i = by_name_.find(name);
  return i == by_name_.end() ? nullptr : &i->second;
}

std::vector<const member*> membership::workers() const {
  std::vector<const member*> out;
  for (auto& [name, m] : by_name_) out.push_back(&m);
  return out;
}

}  // namespace glam
