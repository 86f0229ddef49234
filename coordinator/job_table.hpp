#pragma once
// The coordinator's jobs and epoch, persisted in its state directory (STATE/jobs.json,
// written to a temporary file, fsynced and renamed, so a crash leaves the old or the new
// table, never a torn one). Each job has STATE/jobs/<id>/ with its config (job.toml, read
// back on load: the table itself stays small however many jobs there were) and metrics.
// Job ids are "<name>-<n>"; names are validated (configs/config.hpp, name_problem), so an
// id is a safe directory name.
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace glam {

enum class job_state { pending, running, finished, failed, stopped };
const char* to_string(job_state s);
std::optional<job_state> job_state_from_string(const std::string& s);
inline bool is_final(job_state s) {
  return s == job_state::finished || s == job_state::failed || s == job_state::stopped;
}

// What a job's metrics lines said since this coordinator started: the counters and gauges
// of /metrics and the dashboard. Not persisted: a process's counters start at zero.
struct job_progress {
  std::int64_t steps_committed = 0;  // step lines, replayed steps included
  std::int64_t tokens = 0;
  std::int64_t skipped_steps = 0;
  std::int64_t dropped_choices = 0;  // expert choices over capacity
  std::map<std::string, std::int64_t> events;  // "recovery", "join", "drain", "rebalance" -> how many
  // Of the newest step line (val_loss: of the newest line that had one).
  std::optional<double> tokens_per_second, mfu, exchange_share, val_loss;
};
nlohmann::json to_json(const job_progress& p);

struct job_record {
  std::string id;
  std::string name;
  job_state state = job_state::pending;
  std::string config_toml;
  std::int64_t steps = 0;      // total steps of the job
  std::int64_t step = 0;       // last committed step
  double loss = 0;
  double tokens_per_s = 0;
  std::string error;           // why it failed or stopped
  std::string waiting;         // why a pending job has not started (not persisted)
  std::vector<std::string> workers;  // the workers of its last placement (they hold its snapshots)
  job_progress progress;             // not persisted
};

class job_table {
 public:
  // Loads STATE/jobs.json when it exists (creating STATE when it does not); throws
  // std::runtime_error naming the file when it cannot be read or parsed.
  explicit job_table(std::string state_dir);

  const std::string& state_dir() const { return dir_; }
  std::int64_t epoch() const { return epoch_; }
  // Bumps and persists the epoch (every membership failure fences older messages).
  std::int64_t bump_epoch();

  // A new pending job with a fresh id ("<name>-<n>"); its directory and config are written.
  job_record& add(const std::string& name, const std::string& config_toml, std::int64_t steps);
  job_record* find(const std::string& id);
  const std::vector<job_record>& jobs() const { return jobs_; }
  // The job being run (pending or running), if any.
  job_record* active();

  std::string job_dir(const std::string& id) const;
  // Appends one JSON line to STATE/jobs/<id>/metrics.jsonl and counts it in the job's progress.
  void append_metrics(const std::string& id, const std::string& json_line);
  // Drops the metrics lines of steps >= step (a job resumed from a checkpoint replays them).
  void truncate_metrics(const std::string& id, std::int64_t step) const;
  // Writes the table; throws std::runtime_error naming the file on failure.
  void persist() const;

 private:
  std::string dir_;
  std::int64_t epoch_ = 0;
  std::int64_t next_id_ = 1;
  std::vector<job_record> jobs_;
};

}  // namespace glam
