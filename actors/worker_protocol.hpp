#pragma once
// The worker's protocol. Who may send what is checked in each handler (worker_actor.hpp
// says which): the handshake is answered to any node; ping to nodes that proved the secret;
// job messages only to the coordinator this worker registered with; tensor chunks only to
// the peer worker that hosts the sending unit actor; register, shutdown and the timers only
// to this process and this actor.
#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/coordinator_protocol.hpp"
#include "actors/tensor_chunk.hpp"

namespace glam {

using register_atom = caf::atom_constant<caf::atom("register")>;
using host_atom = caf::atom_constant<caf::atom("host")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using begin_atom = caf::atom_constant<caf::atom("begin")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using checkpoint_atom = caf::atom_constant<caf::atom("checkpoint")>;
using host_deadline_atom = caf::atom_constant<caf::atom("hostdline")>;
using evict_atom = caf::atom_constant<caf::atom("evict")>;
using drained_atom = caf::atom_constant<caf::atom("drained")>;
using snapshot_atom = caf::atom_constant<caf::atom("snapshot")>;
using fetch_atom = caf::atom_constant<caf::atom("fetch")>;
using reconnect_atom = caf::atom_constant<caf::atom("reconnect")>;

using worker_actor = caf::typed_actor<
    // This process only: register with the coordinator at this handle, giving the port
    // peers reach this worker on (the worker runs the handshake itself, so the coordinator
    // monitors and messages this very actor); leave and quit.
    caf::replies_to<register_atom, coordinator_actor, std::uint16_t>::with<std::string>,
    caf::replies_to<shutdown_atom>::with<std::string>,
    // The handshake (any node): peer workers authenticate this way.
    caf::replies_to<hello_atom, hello_msg>::with<challenge_msg>,
    caf::replies_to<auth_atom, proof_msg>::with<std::string>,
    // Nodes that proved the secret: liveness and counters.
    caf::replies_to<ping_atom>::with<worker_stats>,
    // The coordinator: host a job's units, their state restored as the plan says (answered
    // with the state bytes fetched from peers, once every peer of the plan is connected and
    // every state is in); drop them; run a
    // round; apply or skip a training round, then snapshot the units when asked; write the
    // checkpoint of a step (steps completed); this worker was declared dead (why): drop the
    // units and register again; this worker was drained: leave.
    caf::replies_to<host_atom, job_plan>::with<std::uint64_t>,
    caf::replies_to<release_atom, job_tag>::with<std::string>,
    caf::reacts_to<begin_atom, job_tag, round_id>,
    caf::reacts_to<finish_atom, job_tag, round_id, bool, bool>,
    caf::reacts_to<checkpoint_atom, job_tag, std::int64_t>,
    caf::reacts_to<evict_atom, std::string>,
    caf::reacts_to<drained_atom>,
    // The coordinator: serving sessions. Host units of a session (loaded from its checkpoint
    // by the session's inference actor; answered with the units hosted); a call on one of
    // them; drop the session.
    caf::replies_to<infer_host_atom, infer_assignment>::with<std::string>,
    caf::replies_to<infer_atom, infer_request>::with<infer_reply>,
    caf::reacts_to<infer_end_atom, std::string>,
    // Peers of the job: a chunk of a round's exchange; a chunk of a unit's state (a buddy
    // copy, or the answer to a fetch); a unit's snapshot of a step, sent in chunks before the
    // answer (its size in bytes).
    caf::reacts_to<tensor_chunk>,
    caf::reacts_to<blob_chunk>,
    caf::replies_to<fetch_atom, job_tag, std::string, std::int64_t>::with<std::uint64_t>,
    // This worker's unit actors: a unit's snapshot after the step's update.
    caf::reacts_to<snapshot_atom, job_tag, unit_snapshot>,
    // The actor itself only: heartbeat timer; the deadline of a host request (job, epoch);
    // the next attempt to reach a lost coordinator.
    caf::reacts_to<tick_atom>,
    caf::reacts_to<host_deadline_atom, std::string, std::int64_t>,
    caf::reacts_to<reconnect_atom>>;

}  // namespace glam
