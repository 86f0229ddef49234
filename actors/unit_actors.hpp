#pragma once
// How a job's units map onto actors, the same on the coordinator and on every worker.
#include <string>
#include <vector>

#include "actors/messages.hpp"

namespace glam {

// The unit actors of a placement: one per attention shard ("<worker>/shard<s>"), and one
// per expert-hosting worker for that worker's experts ("<worker>/experts": they run as one
// group, so a shard sends one buffer per expert-hosting worker and layer). Step engines
// lay their exchanges out over these actors; the results do not depend on how.
struct unit_actors {
  std::vector<unit_assignment> placement;  // one entry per actor; .worker = the actor's name
  std::vector<std::string> host;           // the worker that runs each actor
};
unit_actors unit_actors_of(const std::vector<unit_assignment>& placement);

}  // namespace glam
