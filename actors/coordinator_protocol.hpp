#pragma once
// The coordinator's protocol. Every request has a deadline on the sender's side; every
// handler answers at once (the coordinator never computes). Failures are glam errors
// (errors.hpp). Who may send what is checked in each handler: the handshake is answered to
// any node; everything else only to nodes that proved the secret, and each message only to
// its sender (the coordinator_actor.hpp header says which).
#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/typed_actor.hpp>

#include "actors/handshake_protocol.hpp"
#include "actors/inference_protocol.hpp"

namespace glam {

using heartbeat_atom = caf::atom_constant<caf::atom("heartbeat")>;
using leave_atom = caf::atom_constant<caf::atom("leave")>;
using submit_atom = caf::atom_constant<caf::atom("submit")>;
using status_atom = caf::atom_constant<caf::atom("status")>;
using job_status_atom = caf::atom_constant<caf::atom("jobstatus")>;
using stop_atom = caf::atom_constant<caf::atom("stop")>;
using shutdown_atom = caf::atom_constant<caf::atom("shutdown")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using applied_atom = caf::atom_constant<caf::atom("applied")>;
using deadline_atom = caf::atom_constant<caf::atom("deadline")>;
using drain_atom = caf::atom_constant<caf::atom("drain")>;
using pace_atom = caf::atom_constant<caf::atom("pace")>;

using coordinator_actor = caf::typed_actor<
    // The handshake (any node).
    caf::replies_to<hello_atom, hello_msg>::with<challenge_msg>,
    caf::replies_to<auth_atom, proof_msg>::with<std::string>,
    // Registered workers: liveness and counters; leaving; the snapshots they hold.
    caf::reacts_to<heartbeat_atom, worker_stats>,
    caf::reacts_to<leave_atom>,
    caf::reacts_to<snapshot_held>,
    // Unit actors of the running job: a round is done there; the decision is applied
    // there (job, round, unit actor); checkpoint files are written there.
    caf::reacts_to<step_report>,
    caf::reacts_to<applied_atom, job_tag, round_id, std::string>,
    caf::reacts_to<checkpoint_report>,
    // Clients: submit (job TOML, its file name) -> the job id; the cluster and one job as
    // JSON; stop a job -> what happened; drain a worker -> answered once it is released.
    caf::replies_to<submit_atom, std::string, std::string>::with<std::string>,
    caf::replies_to<status_atom>::with<std::string>,
    caf::replies_to<job_status_atom, std::string>::with<std::string>,
    caf::replies_to<stop_atom, std::string>::with<std::string>,
    caf::replies_to<drain_atom, std::string>::with<std::string>,
    // Clients: serving sessions (docs/serving.md, "The actor backend"). Start one (the
    // checkpoint and the model; answered with every unit's worker and generation once all are
    // loaded); wait until its units are all hosted again (after a worker died); a call on a
    // unit, routed to the worker hosting it (from the client that started the session only);
    // end it.
    caf::replies_to<infer_start_atom, infer_assignment>::with<infer_assignment>,
    caf::replies_to<infer_wait_atom, std::string>::with<infer_assignment>,
    caf::replies_to<infer_atom, infer_request>::with<infer_reply>,
    caf::reacts_to<infer_end_atom, std::string>,
    // This process only: abort the job in flight (finishing a checkpoint being written),
    // persist, and quit.
    caf::replies_to<shutdown_atom>::with<std::string>,
    // The actor itself only: failure detection every tick; a round's deadline (job, serial).
    caf::reacts_to<tick_atom>,
    caf::reacts_to<deadline_atom, std::string, std::int64_t>,
    caf::reacts_to<pace_atom, std::string, std::int64_t>>;

}  // namespace glam
