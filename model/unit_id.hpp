#pragma once
// The one naming of a job's logical units (docs/runtime.md, "Units"), used by checkpoints,
// placement, status and logs alike:
//   "shard<s>"   attention shard s (a replica of the dense parameters and one slice of
//                every global batch)
//   "expert<e>"  expert e of every MoE layer
//   "dense"      the dense state as a checkpoint stores it: once, since every shard's
//                replica is the same
#include <cstdint>
#include <optional>
#include <string>

namespace glam {

struct unit_id {
  enum class kind : std::uint8_t { shard, expert };
  kind type = kind::shard;
  std::int64_t index = 0;

  static unit_id shard(std::int64_t s) { return {kind::shard, s}; }
  static unit_id expert(std::int64_t e) { return {kind::expert, e}; }
  std::string name() const;
  // nullopt when `name` is not a unit name.
  static std::optional<unit_id> parse(const std::string& name);

  friend bool operator==(const unit_id& a, const unit_id& b) { return a.type == b.type && a.index == b.index; }
  friend bool operator!=(const unit_id& a, const unit_id& b) { return !(a == b); }
  // Shards before experts, then by index: the order of every sum and every listing.
  friend bool operator<(const unit_id& a, const unit_id& b) {
    return a.type != b.type ? a.type < b.type : a.index < b.index;
  }
};

// The checkpoint name of the dense state (one file for all shards).
inline const char* dense_state_name() { return "dense"; }

}  // namespace glam
