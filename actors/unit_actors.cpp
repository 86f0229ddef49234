#include "actors/unit_actors.hpp"

namespace glam {

unit_actors unit_actors_of(const std::vector<unit_assignment>& placement) {
  unit_actors out;
  for (const auto& a : placement) {
    for (auto sh : a.shards) {
      out.placement.push_back({a.worker + "/shard" + std::to_string(sh), a.host, a.port, {sh}, {}});
      out.host.push_back(a.worker);
    }
    if (!a.experts.empty()) {
      out.placement.push_back({a.worker + "/experts", a.host, a.port, {}, a.experts});
      out.host.push_back(a.worker);
    }
  }
  return out;
}

}  // namespace glam
