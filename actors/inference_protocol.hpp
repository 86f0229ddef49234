#pragma once
// The atoms of inference on the actor runtime and the protocol of a worker's inference actor
// (worker/inference_actor.hpp). The coordinator's and the worker's protocols take the same
// messages (coordinator_protocol.hpp, worker_protocol.hpp); who may send what is checked in
// each handler: a session's calls only from the client that started it (coordinator), from
// the coordinator (worker), from the worker actor (inference actor).
#include <string>

#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/inference_messages.hpp"

namespace glam {

using infer_start_atom = caf::atom_constant<caf::atom("inferstart")>;
using infer_wait_atom = caf::atom_constant<caf::atom("inferwait")>;
using infer_end_atom = caf::atom_constant<caf::atom("inferend")>;
using infer_host_atom = caf::atom_constant<caf::atom("inferhost")>;
using infer_atom = caf::atom_constant<caf::atom("infer")>;

// A worker's inference actor: one per session hosted there, on a thread of its own (loading
// and compute never keep the worker actor from answering heartbeats). Phases: loading
// (host, answered once the units are loaded) then serving (calls, one at a time; the
// pass's phases are inference_host's). Host may come again to add units (a unit placed
// here after its worker died).
using inference_unit_actor =
    caf::typed_actor<caf::replies_to<infer_host_atom, infer_assignment>::with<std::string>,
                     caf::replies_to<infer_atom, infer_request>::with<infer_reply>>;

}  // namespace glam
