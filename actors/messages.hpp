#pragma once
// Message types shared by every actor of the runtime (coordinator, worker, unit actors,
// clients), with their inspect overloads. Type names are registered by runtime_config and
// must match on every node: an unregistered type arrives empty. Which actor takes which
// message is in its protocol header (coordinator_protocol.hpp, worker_protocol.hpp,
// unit_protocol.hpp); failures travel as glam errors (errors.hpp), never as strings.
#include <cstdint>
#include <string>
#include <vector>

#include <caf/error.hpp>
#include <caf/meta/type_name.hpp>

#include "model/checkpoint.hpp"
#include "model/units.hpp"

namespace glam {

// Bumped on every incompatible change of any message below.
inline constexpr std::uint32_t protocol_version = 5;

// Bounds on what a peer may put in a field; a message over them is refused before it is
// stored (docs/runtime.md, "Limits").
inline constexpr std::size_t max_name_chars = 64;       // worker names, job names
inline constexpr std::size_t max_host_chars = 255;      // a listen host
inline constexpr std::size_t max_job_file_bytes = 64 * 1024;

// What must match for two processes to compute the same bits (docs/architecture.md,
// "Determinism").
struct build_fingerprint {
  std::string build_id;
  std::string blis;
  std::string cpu_family;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, build_fingerprint& x) {
  return f(caf::meta::type_name("glam_fingerprint"), x.build_id, x.blis, x.cpu_family);
}

// Who is joining and what it runs. role: "worker" or "client".
struct hello_msg {
  std::string role;
  std::string name;
  std::uint32_t version = 0;
  build_fingerprint fingerprint;
  std::string client_nonce;  // the peer proves the secret back on it (mutual)
  std::string listen_host;   // workers: where peers reach this worker's actor
  std::uint16_t listen_port = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hello_msg& x) {
  return f(caf::meta::type_name("glam_hello"), x.role, x.name, x.version, x.fingerprint, x.client_nonce,
           x.listen_host, x.listen_port);
}

// The answer to an acceptable hello: a nonce to prove the secret on, plus the server's own
// proof over the client's nonce.
struct challenge_msg {
  std::string nonce;
  std::string server_proof;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, challenge_msg& x) {
  return f(caf::meta::type_name("glam_challenge"), x.nonce, x.server_proof);
}

struct proof_msg {
  std::string nonce;
  std::string proof;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, proof_msg& x) {
  return f(caf::meta::type_name("glam_proof"), x.nonce, x.proof);
}

// What a daemon refused, by reason: every refusal is counted, and status shows the counts.
struct refusal_counts {
  std::int64_t unauthenticated = 0;  // from a node that has not proved the secret
  std::int64_t not_allowed = 0;      // from a sender that may not send it (self-messages, ...)
  std::int64_t system_messages = 0;  // a CAF exit or down message not from where it may come
  std::int64_t stale = 0;            // of an older epoch, another job, or a round that is over
  std::int64_t malformed = 0;        // a field out of range, a tensor that does not fit
  std::int64_t unexpected = 0;       // a message type the actor does not take
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, refusal_counts& x) {
  return f(caf::meta::type_name("glam_refusals"), x.unauthenticated, x.not_allowed, x.system_messages, x.stale,
           x.malformed, x.unexpected);
}

// What the relay of a process refused (relay.hpp's counters, as a message).
struct relay_refusals {
  std::int64_t secret = 0;       // could not prove the cluster secret
  std::int64_t handshake = 0;    // not the handshake, or too slow
  std::int64_t connections = 0;  // over the connection bound
  std::int64_t evicted = 0;      // unproved, pushed out by a newer connection
  std::int64_t frames = 0;       // a BASP header over the bound
  std::int64_t idle = 0;         // closed after the idle timeout
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, relay_refusals& x) {
  return f(caf::meta::type_name("glam_relayrefusals"), x.secret, x.handshake, x.connections, x.evicted, x.frames,
           x.idle);
}

// What a worker reports with every heartbeat.
struct worker_stats {
  std::string name;
  std::int64_t tokens_computed = 0;
  std::int64_t bytes_sent = 0;      // tensor bytes to other workers
  std::int64_t bytes_received = 0;  // tensor bytes from other workers
  std::int64_t memory_bytes = 0;    // resident set size of the process
  std::int64_t memory_limit = 0;    // what it offers for units and their snapshots (0: no limit)
  double gflops = 0;                // measured speed
  std::int64_t peers = 0;           // workers connected directly, authenticated
  refusal_counts refused;
  relay_refusals relay;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_stats& x) {
  return f(caf::meta::type_name("glam_wstats"), x.name, x.tokens_computed, x.bytes_sent, x.bytes_received,
           x.memory_bytes, x.memory_limit, x.gflops, x.peers, x.refused, x.relay);
}

// Which job a message belongs to, and its epoch: a message of an older epoch is dropped and
// counted (the epoch fences everything sent before a failure).
struct job_tag {
  std::string job;
  std::int64_t epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_tag& x) {
  return f(caf::meta::type_name("glam_jobtag"), x.job, x.epoch);
}

inline bool operator==(const job_tag& a, const job_tag& b) { return a.job == b.job && a.epoch == b.epoch; }
inline bool operator!=(const job_tag& a, const job_tag& b) { return !(a == b); }

// One round of the step protocol: training step `step`, or validation batch `step` of the
// evaluation that follows a training step (forward only).
struct round_id {
  std::int64_t step = 0;
  bool train = true;

  static round_id training(std::int64_t step) { return {step, true}; }
  static round_id validation(std::int64_t batch) { return {batch, false}; }
  std::string describe() const {
    return (train ? "step " : "validation batch ") + std::to_string(step);
  }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, round_id& x) {
  return f(caf::meta::type_name("glam_round"), x.step, x.train);
}

inline bool operator==(const round_id& a, const round_id& b) { return a.step == b.step && a.train == b.train; }
inline bool operator!=(const round_id& a, const round_id& b) { return !(a == b); }
inline bool operator<(const round_id& a, const round_id& b) {
  return a.train != b.train ? a.train < b.train : a.step < b.step;
}

// Which units one worker hosts, and where its peers reach it. A job's placement is one
// entry per worker that hosts units.
struct worker_assignment {
  std::string worker;  // registered name
  std::string host;
  std::uint16_t port = 0;
  std::vector<std::int64_t> shards;
  std::vector<std::int64_t> experts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_assignment& x) {
  return f(caf::meta::type_name("glam_assign"), x.worker, x.host, x.port, x.shards, x.experts);
}

using placement = std::vector<worker_assignment>;

// Where the units of a job get their state from when a placement starts: the one restore
// path of a new job, a resubmitted one, a coordinator restart, a recovery and a migration
// (docs/fault-tolerance.md).
enum class restore_kind : std::uint8_t {
  initial,     // the initial parameters (start_step 0)
  checkpoint,  // the checkpoint of start_step in checkpoint_dir
  snapshot,    // the in-memory snapshots of start_step, held by workers (sources)
};

// A unit's snapshot ("dense" or "expert<e>") and the worker holding it; a worker that
// holds one itself uses its own.
struct unit_source {
  std::string unit;
  std::string holder;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unit_source& x) {
  return f(caf::meta::type_name("glam_source"), x.unit, x.holder);
}

// A job as the coordinator hands it to its workers: every live worker, its units (none for
// some: they still hold snapshots others may fetch), and where the state comes from.
struct job_plan {
  job_tag tag;
  std::string config_toml;
  glam::placement units;
  std::string checkpoint_dir;  // the job's checkpoints (every worker reaches it); empty: none
  std::int64_t start_step = 0;  // the first step to run (steps completed)
  restore_kind from = restore_kind::initial;
  std::vector<unit_source> sources;  // restore_kind::snapshot
  std::int64_t inject_nonfinite_step = -1;  // fault injection for tests
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_plan& x) {
  return f(caf::meta::type_name("glam_jobplan"), x.tag, x.config_toml, x.units, x.checkpoint_dir, x.start_step,
           x.from, x.sources, x.inject_nonfinite_step);
}

// A worker holds snapshots of `step` for these units (its own, or a buddy's copies).
struct snapshot_held {
  job_tag tag;
  std::string worker;
  std::int64_t step = 0;
  std::vector<std::string> units;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, snapshot_held& x) {
  return f(caf::meta::type_name("glam_held"), x.tag, x.worker, x.step, x.units);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unit_snapshot& x) {
  return f(caf::meta::type_name("glam_snapshot"), x.unit, x.step, x.checksum, x.bytes);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unit_file_info& x) {
  return f(caf::meta::type_name("glam_unitfile"), x.unit, x.file, x.size, x.checksum);
}

// A unit actor's answer to a checkpoint order: the unit files it wrote (fsynced), or why not.
struct checkpoint_report {
  job_tag tag;
  std::int64_t step = 0;  // the checkpoint's step (steps completed)
  std::string unit_actor;
  std::vector<unit_file_info> files;
  caf::error error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkpoint_report& x) {
  return f(caf::meta::type_name("glam_ckptreport"), x.tag, x.step, x.unit_actor, x.files, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, loss_parts& x) {
  return f(caf::meta::type_name("glam_lossparts"), x.cross_entropy_sum, x.aux_sum, x.z_sum, x.tokens,
           x.tokens_per_expert, x.dropped);
}

// One shard's loss parts of a round; the coordinator combines them in shard order.
struct shard_loss {
  std::int64_t shard = 0;
  loss_parts parts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_loss& x) {
  return f(caf::meta::type_name("glam_shardloss"), x.shard, x.parts);
}

// A unit actor's report of one round: its shards' loss parts, and whether every unit's
// gradients are finite. error: the round failed here.
struct step_report {
  job_tag tag;
  round_id round;
  std::string unit_actor;  // "<worker>/shard<s>" or "<worker>/experts" (unit_layout.hpp)
  std::string worker;      // the worker that runs it
  bool finite = true;
  std::int64_t tokens_computed = 0;  // rows the unit actor computed in the round
  double compute_seconds = 0;        // time in kernels (the rest is waiting and messaging)
  std::vector<shard_loss> shards;
  caf::error error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_report& x) {
  return f(caf::meta::type_name("glam_report"), x.tag, x.round, x.unit_actor, x.worker, x.finite,
           x.tokens_computed, x.compute_seconds, x.shards, x.error);
}

}  // namespace glam
