#pragma once
// The coordinator's messages (besides the handshake of handshake_protocol.hpp). Every
// request has a deadline on the sender's side; every handler answers at once.
//   (heartbeat_atom, worker_stats)            worker -> coordinator, no reply
//   (leave_atom)                              worker -> coordinator: it is leaving
//   (step_report)                             worker -> coordinator: a round is done here
//   (applied_atom, step_tag, worker)          worker -> coordinator: the decision is applied
//   (checkpoint_report)                       worker -> coordinator: its unit files are written
//   (submit_atom, toml, source_name)  -> result_msg   ok: message = the job id
//   (status_atom)                     -> std::string  the cluster as JSON
//   (job_status_atom, job_id)         -> std::string  one job as JSON ({} when unknown)
//   (stop_atom, job_id)               -> result_msg
//   (shutdown_atom)                   -> result_msg   local only: abort the job in flight,
//                                                     persist, and quit
#include <caf/atom.hpp>

#include "actors/handshake_protocol.hpp"

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

}  // namespace glam
