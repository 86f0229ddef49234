#pragma once
// A unit actor's protocol (worker/unit_actor.hpp). It takes messages from its own worker
// actor only: the worker checks every message from the network (secret, epoch, sender)
// before handing it on, and a unit actor drops anything sent to it directly.
#include <vector>

#include <caf/typed_actor.hpp>

#include "actors/worker_protocol.hpp"

namespace glam {

using peers_atom = caf::atom_constant<caf::atom("peers")>;

using unit_actor = caf::typed_actor<
    // By unit actor number: the worker actor hosting it (a peer's, or its own).
    caf::reacts_to<peers_atom, std::vector<worker_actor>>,
    // A round (once per round), a checked chunk, the decision of a training round (once,
    // after the report; then a snapshot when asked), the checkpoint of a step (once, between
    // rounds).
    caf::reacts_to<begin_atom, job_tag, round_id>,
    caf::reacts_to<tensor_chunk>,
    caf::reacts_to<finish_atom, job_tag, round_id, bool, bool>,
    caf::reacts_to<checkpoint_atom, job_tag, std::int64_t>>;

}  // namespace glam
