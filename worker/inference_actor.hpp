#pragma once
// A worker's inference actor (protocol: actors/inference_protocol.hpp): the units of one
// serving session hosted by this worker, around a plain inference_host. Spawned detached by
// the worker actor, linked to it, and taking messages from it only (the worker checks that
// they come from its coordinator); anything else is dropped. Compute takes turns with the
// other units of the process (compute_guard). Errors are values: a call that does not fit
// is answered with glam_errc::bad_request, a load that fails with cannot_host.
#include <caf/stateful_actor.hpp>

#include "actors/inference_protocol.hpp"
#include "worker/inference_host.hpp"

namespace glam {

struct inference_actor_state {
  static inline const char* name = "glam.inference";
  caf::actor_addr worker;
  inference_host host;
  std::int64_t dropped = 0;  // messages not from the worker actor
};

inference_unit_actor::behavior_type inference_actor_behavior(
    inference_unit_actor::stateful_pointer<inference_actor_state> self, caf::actor_addr worker);

}  // namespace glam
