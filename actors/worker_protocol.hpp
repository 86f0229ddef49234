#pragma once
// The worker's messages (besides the handshake of handshake_protocol.hpp). Only the
// coordinator the worker registered with, and peers that authenticated, are answered.
//   (host_atom, job_plan)        -> result_msg    coordinator: host these units
//   (release_atom, step_tag)     -> result_msg    coordinator: drop the job's units
//                                                 (tag.epoch fences a stale release)
//   (ping_atom)                  -> worker_stats  anyone admitted: liveness and counters
//   (tensor_chunk)                                peers: a chunk of a step's exchange
//                                                 (worker/step_engine.hpp says which)
//   (begin_atom, step_tag, bool train)            coordinator: run round tag.step (a
//                                                 training step, or validation batch
//                                                 -1 - tag.step when !train); the worker
//                                                 answers with a step_report
//   (finish_atom, step_tag, bool apply)           coordinator: apply the step's update or
//                                                 skip it; the worker confirms with
//                                                 (applied_atom, step_tag, name)
//   (checkpoint_atom, step_tag)                   coordinator: write the hosted units' files
//                                                 of checkpoint tag.step (steps completed);
//                                                 the worker answers with a checkpoint_report
//   (shutdown_atom)              -> result_msg    local only: leave and quit
#include <caf/atom.hpp>

#include "actors/handshake_protocol.hpp"
#include "actors/tensor_chunk.hpp"

namespace glam {

using host_atom = caf::atom_constant<caf::atom("host")>;
using release_atom = caf::atom_constant<caf::atom("release")>;
using ping_atom = caf::atom_constant<caf::atom("ping")>;
using begin_atom = caf::atom_constant<caf::atom("begin")>;
using finish_atom = caf::atom_constant<caf::atom("finish")>;
using checkpoint_atom = caf::atom_constant<caf::atom("checkpoint")>;

}  // namespace glam
