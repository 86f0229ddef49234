#include "actors/unit_layout.hpp"

#include <algorithm>
#include <stdexcept>

namespace glam {

namespace {

std::vector<int> distinct_sorted(std::vector<int> v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
  return v;
}

void claim(std::vector<int>& owner, index unit, int actor, const char* what) {
  if (unit < 0 || unit >= static_cast<index>(owner.size()))
    throw std::invalid_argument(std::string("the placement names ") + what + " " + std::to_string(unit) +
                                ", which the job does not have (0.." + std::to_string(owner.size()) + ")");
  auto& o = owner[static_cast<std::size_t>(unit)];
  if (o >= 0) throw std::invalid_argument(std::string("the placement hosts ") + what + " " + std::to_string(unit) + " twice");
  o = actor;
}

}  // namespace

unit_layout unit_layout::of(const placement& p, index shards, index experts) {
  unit_layout l;
  l.shard_actor_.assign(static_cast<std::size_t>(shards), -1);
  l.expert_actor_.assign(static_cast<std::size_t>(experts), -1);
  for (const auto& a : p) {
    for (auto s : a.shards) {
      claim(l.shard_actor_, s, l.size(), "shard");
      l.actors_.push_back({a.worker + "/" + unit_id::shard(s).name(), a.worker, {s}, {}});
    }
    if (!a.experts.empty()) {
      for (auto e : a.experts) claim(l.expert_actor_, e, l.size(), "expert");
      l.actors_.push_back({a.worker + "/experts", a.worker, {}, a.experts});
    }
  }
  for (std::size_t s = 0; s < l.shard_actor_.size(); ++s)
    if (l.shard_actor_[s] < 0) throw std::invalid_argument("the placement leaves shard " + std::to_string(s) + " unhosted");
  for (std::size_t e = 0; e < l.expert_actor_.size(); ++e)
    if (l.expert_actor_[e] < 0) throw std::invalid_argument("the placement leaves expert " + std::to_string(e) + " unhosted");
  return l;
}

std::vector<int> unit_layout::shard_actors() const { return distinct_sorted(shard_actor_); }
std::vector<int> unit_layout::expert_actors() const { return distinct_sorted(expert_actor_); }

std::vector<int> unit_layout::actors_of_worker(const std::string& worker) const {
  std::vector<int> out;
  for (int a = 0; a < size(); ++a)
    if (actors_[static_cast<std::size_t>(a)].worker == worker) out.push_back(a);
  return out;
}

int unit_layout::dense_keeper(const std::string& worker) const {
  for (int a : actors_of_worker(worker))
    if (!actors_[static_cast<std::size_t>(a)].shards.empty()) return a;
  return -1;
}

std::vector<std::string> unit_layout::snapshot_units_of(const std::string& worker) const {
  std::vector<std::string> out;
  if (dense_keeper(worker) >= 0) out.push_back(dense_state_name());
  for (int a : actors_of_worker(worker))
    for (auto e : actors_[static_cast<std::size_t>(a)].experts) out.push_back(unit_id::expert(e).name());
  return out;
}

std::vector<std::string> unit_names(const worker_assignment& a) {
  std::vector<std::string> out;
  for (auto s : a.shards) out.push_back(unit_id::shard(s).name());
  for (auto e : a.experts) out.push_back(unit_id::expert(e).name());
  return out;
}

}  // namespace glam
