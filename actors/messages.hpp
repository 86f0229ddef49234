#pragma once
// Message types shared by every actor of the runtime (coordinator, worker, clients), with
// their inspect overloads. Type names are registered by runtime_config and must match on
// every node: an unregistered type arrives empty.
#include <cstdint>
#include <string>
#include <vector>

#include <caf/meta/type_name.hpp>

#include "model/checkpoint.hpp"
#include "model/units.hpp"

namespace glam {

// Bumped on every incompatible change of any message below.
inline constexpr std::uint32_t protocol_version = 3;

// What must match for two processes to compute the same bits (design.md section 3).
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
  return f(caf::meta::type_name("glam_hello"), x.role, x.name, x.version, x.fingerprint,
           x.client_nonce, x.listen_host, x.listen_port);
}

// The answer to a hello: refused (ok = false, reason says which field), or a nonce to
// prove the secret on plus the server's own proof over the client's nonce.
struct challenge_msg {
  bool ok = false;
  std::string reason;
  std::string nonce;
  std::string server_proof;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, challenge_msg& x) {
  return f(caf::meta::type_name("glam_challenge"), x.ok, x.reason, x.nonce, x.server_proof);
}

struct proof_msg {
  std::string nonce;
  std::string proof;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, proof_msg& x) {
  return f(caf::meta::type_name("glam_proof"), x.nonce, x.proof);
}

// A yes/no answer with the reason; errors between actors are values.
struct result_msg {
  bool ok = false;
  std::string message;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, result_msg& x) {
  return f(caf::meta::type_name("glam_result"), x.ok, x.message);
}

// What a worker reports with every heartbeat.
struct worker_stats {
  std::string name;
  std::int64_t tokens_computed = 0;
  std::int64_t bytes_sent = 0;
  std::int64_t bytes_received = 0;
  std::int64_t memory_bytes = 0;         // resident set size of the process
  double gflops = 0;                     // measured speed
  std::int64_t dropped_unauthenticated = 0;
  std::int64_t dropped_stale_epoch = 0;
  std::int64_t peers = 0;  // workers this one is connected to directly, authenticated
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, worker_stats& x) {
  return f(caf::meta::type_name("glam_wstats"), x.name, x.tokens_computed, x.bytes_sent,
           x.bytes_received, x.memory_bytes, x.gflops, x.dropped_unauthenticated,
           x.dropped_stale_epoch, x.peers);
}

// Every message of a job carries (job, step, epoch): a message of an older epoch is
// dropped and counted.
struct step_tag {
  std::string job;
  std::int64_t step = 0;
  std::int64_t epoch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_tag& x) {
  return f(caf::meta::type_name("glam_steptag"), x.job, x.step, x.epoch);
}

// A job as the coordinator hands it to the workers: the config TOML, the units each worker
// hosts, and the addresses workers reach each other on.
struct unit_assignment {
  std::string worker;  // registered name
  std::string host;
  std::uint16_t port = 0;
  std::vector<std::int64_t> shards;
  std::vector<std::int64_t> experts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unit_assignment& x) {
  return f(caf::meta::type_name("glam_assign"), x.worker, x.host, x.port, x.shards, x.experts);
}

struct job_plan {
  step_tag tag;  // step = the step the job resumes from
  std::string config_toml;
  std::vector<unit_assignment> placement;
  std::string checkpoint_root;  // where the job's checkpoints live (every worker reaches it)
  std::int64_t resume_step = -1;  // the checkpoint the units load (-1: initial parameters)
  std::int64_t inject_nonfinite_step = -1;  // fault injection for tests
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, job_plan& x) {
  return f(caf::meta::type_name("glam_jobplan"), x.tag, x.config_toml, x.placement, x.checkpoint_root,
           x.resume_step, x.inject_nonfinite_step);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, unit_file_info& x) {
  return f(caf::meta::type_name("glam_unitfile"), x.unit, x.file, x.size, x.checksum);
}

// A worker's answer to a checkpoint order: the unit files it wrote (fsynced), or why not.
struct checkpoint_report {
  step_tag tag;  // step = steps completed (the checkpoint's step)
  std::string worker;
  std::vector<unit_file_info> files;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, checkpoint_report& x) {
  return f(caf::meta::type_name("glam_ckptreport"), x.tag, x.worker, x.files, x.error);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, loss_parts& x) {
  return f(caf::meta::type_name("glam_lossparts"), x.cross_entropy_sum, x.aux_sum, x.z_sum, x.tokens,
           x.tokens_per_expert, x.dropped);
}

// A worker's report of one round (a training step or a validation batch): every hosted
// shard's loss parts, and whether every hosted unit's gradients are finite. The
// coordinator combines the shards' parts in shard order. error: the round failed here.
struct shard_loss {
  std::int64_t shard = 0;
  loss_parts parts;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shard_loss& x) {
  return f(caf::meta::type_name("glam_shardloss"), x.shard, x.parts);
}

struct step_report {
  step_tag tag;  // step = the round: training step k, or -1 - i for validation batch i
  std::string worker;     // the unit actor ("<worker>/shard<s>", "<worker>/experts")
  std::string host;       // the worker that runs it
  bool train = true;
  bool finite = true;
  std::int64_t tokens_computed = 0;  // rows this worker's units computed in the round
  double compute_seconds = 0;        // time in the units' kernels (the rest is waiting and messaging)
  std::vector<shard_loss> shards;
  std::string error;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, step_report& x) {
  return f(caf::meta::type_name("glam_report"), x.tag, x.worker, x.host, x.train, x.finite, x.tokens_computed,
           x.compute_seconds, x.shards, x.error);
}

}  // namespace glam
