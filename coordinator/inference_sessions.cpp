#include "coordinator/inference_sessions.hpp"

#include <algorithm>
#include <stdexcept>

#include "model/unit_id.hpp"

namespace glam {

std::vector<std::string> session_units(std::int64_t experts) {
  std::vector<std::string> out{unit_id::shard(0).name()};
  for (std::int64_t e = 0; e < experts; ++e) out.push_back(unit_id::expert(e).name());
  return out;
}

std::map<std::string, std::string> place_session_units(const std::vector<std::string>& workers, std::int64_t experts,
                                                       const std::map<std::string, int>& load) {
  if (workers.empty()) throw std::runtime_error("no workers to place the session's units on: start one with glam worker");
  auto units_of = [&](const std::string& w) {
    auto it = load.find(w);
    return it == load.end() ? 0 : it->second;
  };
  std::size_t first = 0;
  for (std::size_t i = 1; i < workers.size(); ++i)
    if (units_of(workers[i]) < units_of(workers[first])) first = i;
  std::map<std::string, std::string> owner;
  owner[unit_id::shard(0).name()] = workers[first];
  for (std::int64_t e = 0; e < experts; ++e)
    owner[unit_id::expert(e).name()] = workers[(first + 1 + static_cast<std::size_t>(e)) % workers.size()];
  return owner;
}

infer_assignment inference_session::view() const {
  infer_assignment v = spec;
  v.units.clear();
  v.workers.clear();
  v.generations.clear();
  for (const auto& u : session_units(spec.experts)) {
    v.units.push_back(u);
    auto o = owner.find(u);
    v.workers.push_back(o == owner.end() ? std::string() : o->second);
    auto g = generation.find(u);
    v.generations.push_back(g == generation.end() ? 0 : g->second);
  }
  return v;
}

infer_assignment inference_session::assignment_for(const std::string& worker) const {
  infer_assignment a = spec;
  a.units.clear();
  a.workers.clear();
  a.generations.clear();
  for (const auto& u : loading)
    if (auto o = owner.find(u); o != owner.end() && o->second == worker) {
      a.units.push_back(u);
      a.workers.push_back(worker);
      a.generations.push_back(generation.at(u));
    }
  return a;
}

std::vector<std::string> inference_session::workers_loading() const {
  std::set<std::string> out;
  for (const auto& u : loading)
    if (auto o = owner.find(u); o != owner.end()) out.insert(o->second);
  return {out.begin(), out.end()};
}

inference_session& inference_sessions::start(infer_assignment spec, const std::string& client,
                                             const std::string& client_node, const std::vector<std::string>& workers) {
  auto owner = place_session_units(workers, spec.experts, load());
  spec.session = "serve-" + std::to_string(next_++);
  inference_session s;
  s.spec = spec;
  s.client = client;
  s.client_node = client_node;
  s.owner = std::move(owner);
  for (const auto& [unit, worker] : s.owner) {
    s.generation[unit] = 1;
    s.loading.insert(unit);
  }
  return sessions_[spec.session] = std::move(s);
}

inference_session* inference_sessions::find(const std::string& id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : &it->second;
}

void inference_sessions::end(const std::string& id) { sessions_.erase(id); }

std::map<std::string, int> inference_sessions::load() const {
  std::map<std::string, int> out;
  for (const auto& [id, s] : sessions_)
    for (const auto& [unit, worker] : s.owner) ++out[worker];
  return out;
}

std::vector<std::string> inference_sessions::lose_worker(const std::string& lost,
                                                         const std::vector<std::string>& survivors) {
  std::vector<std::string> changed;
  for (auto& [id, s] : sessions_) {
    std::vector<std::string> moving;
    for (const auto& [unit, worker] : s.owner)
      if (worker == lost) moving.push_back(unit);
    if (moving.empty()) continue;
    changed.push_back(id);
    // The survivors, least loaded (by this session's units) first, ties by name.
    std::map<std::string, int> count;
    for (const auto& w : survivors) count[w] = 0;
    for (const auto& [unit, worker] : s.owner)
      if (count.count(worker)) ++count[worker];
    for (const auto& unit : moving) {
      ++s.generation[unit];
      s.loading.insert(unit);
      if (survivors.empty()) {
        s.owner.erase(unit);
        continue;
      }
      auto best = std::min_element(count.begin(), count.end(),
                                   [](const auto& a, const auto& b) { return a.second < b.second; });
      s.owner[unit] = best->first;
      ++best->second;
    }
  }
  return changed;
}

void inference_sessions::loaded(const std::string& id, const std::string& worker, const std::vector<std::string>& units) {
  auto* s = find(id);
  if (!s) return;
  for (const auto& u : units)
    if (auto o = s->owner.find(u); o != s->owner.end() && o->second == worker) s->loading.erase(u);
}

}  // namespace glam
