#pragma once
// Checkpoints on disk (docs/checkpoints.md). A checkpoint of step k
// (k steps completed: the next step to run is k) is the directory ROOT/step-<k, 8 digits>/
// holding one file per logical unit and a manifest:
//   "dense"       the dense replica and its Adafactor state, written once (every attention
//                 shard holds the same replica; the owner of shard 0 writes it)
//   "expert<e>"   expert e of every MoE layer and its Adafactor state
// (the unit names of model/unit_id.hpp).
// A unit file is "<unit>.e<epoch>.bin": the epoch in the name keeps a fenced worker from
// overwriting a live file. Owners write their units in parallel; the coordinator writes the
// manifest last (temp file, fsync, rename, fsync of the directory). A checkpoint without a
// complete, valid manifest does not exist. Files are per logical unit, so a checkpoint
// loads whatever the placement that wrote it.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "configs/config.hpp"
#include "model/optimizer.hpp"
#include "model/params.hpp"
#include "model/unit_id.hpp"

namespace glam {

class reference_trainer;

// Every checkpoint failure: the message names the file and what to do about it.
class checkpoint_error : public std::runtime_error {
 public:
  explicit checkpoint_error(const std::string& message) : std::runtime_error(message) {}
};

// 2: experts are named "expert<e>" (model/unit_id.hpp).
constexpr std::uint32_t checkpoint_format_version = 2;

struct unit_file_info {
  std::string unit, file;  // file: a bare name inside the step directory
  std::uint64_t size = 0, checksum = 0;
};

struct checkpoint_manifest {
  std::uint32_t format_version = checkpoint_format_version;
  std::uint64_t config_hash = 0;  // model_config_hash (configs/config.hpp)
  std::int64_t step = 0;          // steps completed: the next step to run
  std::int64_t epoch = 0;
  std::vector<unit_file_info> units;
  // The job, so that a checkpoint alone says what it holds (record_job): its config as TOML
  // (to_toml, data.dir absolute) and the checksum64 of its data's tokenizer model. Empty / 0
  // when not recorded.
  std::string job_config;
  std::uint64_t tokenizer_checksum = 0;

  // The entry of `unit`, or nullptr.
  const unit_file_info* find(const std::string& unit) const;
};

// ROOT/step-<step, 8 digits>
std::string checkpoint_dir_for(const std::string& root, std::int64_t step);

// The steps of the step directories under root, newest first (complete or not).
std::vector<std::int64_t> checkpoint_steps(const std::string& root);

// Fills m.job_config and m.tokenizer_checksum from the job's config (the tokenizer's
// checksum from the data directory's manifest when it can be read; else 0). Every writer
// of a manifest calls it, so that `glam generate` finds the model and its tokenizer from
// the checkpoint alone (docs/serving.md).
void record_job(checkpoint_manifest& m, const config& c);

// Writes one unit's parameters and optimizer state into the step's directory (created if
// needed) as "<unit>.e<epoch>.bin", durably (temp file, fsync, rename, fsync of the
// directory), and returns what the manifest records of it.
unit_file_info write_unit_file(const std::string& root, std::int64_t step, std::int64_t epoch, const std::string& unit,
                               const param_set& params, const optimizer_state& opt);

// A unit's state in memory (a snapshot): the bytes of its unit file and their checksum.
struct unit_snapshot {
  std::string unit;
  std::int64_t step = 0;  // steps completed
  std::uint64_t checksum = 0;
  std::string bytes;
};
// How many snapshot steps of a unit a worker keeps (its own and its buddy's copies): the
// newest one every unit shares, and the one being taken.
inline constexpr int snapshot_steps_kept = 2;
// The state of one unit as write_unit_file writes it, into memory.
unit_snapshot encode_unit(std::int64_t step, std::int64_t epoch, const std::string& unit, const param_set& params,
                       const optimizer_state& opt);
// Loads a snapshot into params/opt with every check of read_unit_file (its checksum too).
void decode_unit(const unit_snapshot& state, param_set& params, optimizer_state& opt);

// Loads a unit file into params/opt, which must already have the unit's layout (names and
// shapes). Checks size and checksum against f, the magic, the format version, the unit name,
// the step and every tensor's name and shape; throws checkpoint_error naming the file and
// what differs, leaving params/opt untouched.
void read_unit_file(const std::string& root, std::int64_t step, const unit_file_info& f, param_set& params,
                    optimizer_state& opt);

// Writes ROOT/step-XXXXXXXX/manifest.capnp durably, then keeps the newest `keep` complete
// checkpoints at or before m.step and deletes the older step directories (keep <= 0: keep all).
void write_manifest(const std::string& root, const checkpoint_manifest& m, std::int64_t keep);

// Reads and parses one step directory's manifest; a missing, torn or unparsable manifest is
// a checkpoint_error saying so.
checkpoint_manifest read_manifest(const std::string& root, std::int64_t step);

// Why m does not hold exactly the units of c's model ("dense" and every expert, once each);
// empty when it does.
std::string manifest_unit_problem(const checkpoint_manifest& m, const config& c);

// The newest checkpoint under root whose manifest parses, lists every unit of c's model, and
// whose every unit file exists with the recorded size and checksum; older ones are tried in
// turn, and each one passed over is logged and, when `skipped` is given, described there.
// nullopt when there is none. A manifest of another model (config hash differs) is a
// checkpoint_error naming both hashes.
std::optional<checkpoint_manifest> latest_valid_checkpoint(const std::string& root, const config& c,
                                                           std::vector<std::string>* skipped = nullptr);

// Deletes the step directories after `step`: once a job resumes from `step`, the newer ones
// (passed over as invalid, or left by the timeline the rollback abandoned) are never
// loaded, and the replay writes its own. Returns how many were deleted.
std::int64_t remove_checkpoints_after(const std::string& root, std::int64_t step);

// The single-process trainer's whole layout: "dense" from shard 0, each expert its file,
// then the manifest (keeping the config's fault.keep_checkpoints).
checkpoint_manifest save_checkpoint(reference_trainer& t, const std::string& root, std::int64_t steps_done,
                                    std::int64_t epoch);
// Every shard loads "dense", each expert its own file. The next step to train is m.step.
void restore_checkpoint(reference_trainer& t, const std::string& root, const checkpoint_manifest& m);

// Total bytes of a checkpoint's unit files.
std::uint64_t checkpoint_bytes(const checkpoint_manifest& m);

}  // namespace glam
