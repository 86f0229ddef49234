#pragma once
// How a job's units map onto unit actors, the same on the coordinator and on every worker:
// one unit actor per attention shard ("<worker>/shard<s>"), and one per expert-hosting worker
// for that worker's experts ("<worker>/experts": they run as one group, so a shard sends one
// buffer per expert-hosting worker and MoE layer). Unit actors are numbered in placement
// order; step engines address their exchanges by these numbers, and no result depends on the
// layout (placement invariance). Unit names themselves are model/unit_id.hpp's.
#include <string>
#include <vector>

#include "actors/messages.hpp"
#include "model/unit_id.hpp"

namespace glam {

// The unit actors one worker process runs at most (each is a thread): its shards, and one
// for its experts. A job that would put more on one worker waits for more workers.
inline constexpr int max_unit_actors_per_worker = 32;
inline constexpr int max_shards_per_worker = max_unit_actors_per_worker - 1;

struct unit_actor_spec {
  std::string name;    // "<worker>/shard<s>" or "<worker>/experts"
  std::string worker;  // the worker process that runs it
  std::vector<index> shards;
  std::vector<index> experts;
};

class unit_layout {
 public:
  // The layout of a placement for a job of `shards` shards and `experts` experts; throws
  // std::invalid_argument naming the unit when one is hosted twice, out of range, or not at
  // all (a dense baseline, experts = 0, hosts none).
  static unit_layout of(const placement& p, index shards, index experts);

  const std::vector<unit_actor_spec>& actors() const { return actors_; }
  int size() const { return static_cast<int>(actors_.size()); }
  const unit_actor_spec& actor(int a) const { return actors_.at(static_cast<std::size_t>(a)); }
  int shard_actor(index shard) const { return shard_actor_.at(static_cast<std::size_t>(shard)); }
  int expert_actor(index expert) const { return expert_actor_.at(static_cast<std::size_t>(expert)); }
  index shards() const { return static_cast<index>(shard_actor_.size()); }
  index experts() const { return static_cast<index>(expert_actor_.size()); }
  std::vector<int> shard_actors() const;   // unit actors hosting shards, ascending
  std::vector<int> expert_actors() const;  // unit actors hosting experts, ascending
  // The unit actors a worker runs, ascending.
  std::vector<int> actors_of_worker(const std::string& worker) const;
  // The unit actor that snapshots the dense state on `worker`: its first shard's (-1 when the
  // worker hosts no shard).
  int dense_keeper(const std::string& worker) const;
  // The snapshot units ("dense", "expert<e>") a worker keeps for the units it hosts.
  std::vector<std::string> snapshot_units_of(const std::string& worker) const;

 private:
  std::vector<unit_actor_spec> actors_;
  std::vector<int> shard_actor_;   // shard -> unit actor
  std::vector<int> expert_actor_;  // expert -> unit actor
};

// The units a placement entry hosts, by name ("shard0 shard1 expert3"), for status and logs.
std::vector<std::string> unit_names(const worker_assignment& a);

}  // namespace glam
