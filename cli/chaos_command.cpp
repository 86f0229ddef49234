// `glam chaos CONFIG --workers N --minutes M --seed S [--kill-every SECONDS]`: trains CONFIG
// on a coordinator and N worker processes started here while faults drawn from the seed
// strike them (workers killed, hung past the heartbeat timeout, started again, joining,
// drained; the coordinator killed and restarted), then trains it again undisturbed, and
// prints what happened and whether the result is the same, bit for bit.
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include "cli/commands.hpp"
#include "cli/local_cluster.hpp"
#include "configs/config.hpp"
#include "kernels/parallel.hpp"
#include "model/checkpoint.hpp"
#include "model/optimizer.hpp"
#include "model/params.hpp"
#include "model/step_schedule.hpp"
#include "model/unit_id.hpp"

namespace glam::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct chaos_options {
  std::string config_path;
  int workers = 3;
  double minutes = 5;
  std::uint64_t seed = 1;
  double kill_every = 0;  // seconds; 0: the run's length / 8, at least 2 s
  std::int64_t steps = -1;
  bool synthetic = false;
  int heartbeat_timeout_ms = 3000;
  bool keep = false;
};

enum class fault_kind { kill, hang, restart, join, drain, coordinator };
constexpr fault_kind all_faults[] = {fault_kind::kill,  fault_kind::hang,  fault_kind::restart,
                                     fault_kind::join,  fault_kind::drain, fault_kind::coordinator};

const char* fault_label(fault_kind k) {
  switch (k) {
    case fault_kind::kill: return "worker killed (SIGKILL)";
    case fault_kind::hang: return "worker hung past the timeout (SIGSTOP, SIGCONT)";
    case fault_kind::restart: return "killed or drained worker started again";
    case fault_kind::join: return "new worker joined";
    case fault_kind::drain: return "worker drained (glam drain)";
    case fault_kind::coordinator: return "coordinator killed and restarted";
  }
  return "?";
}

double seconds_since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

// Rounds the coordinator runs for the job: every training step and every validation batch.
std::int64_t rounds_of(const config& c) {
  const step_schedule schedule(c);
  std::int64_t rounds = c.train.steps;
  for (std::int64_t k = 0; k < c.train.steps; ++k)
    if (schedule.evaluates_after(k)) rounds += c.train.eval_batches;
  return rounds;
}

bool steady_activity(const nlohmann::json& job) {
  const auto a = job.value("activity", "");
  return job.value("state", "") == "running" && (a == "computing" || a == "applying" || a == "checkpointing");
}

// How one run of the job went.
struct run_result {
  std::string id;
  std::string state = "unfinished";
  std::string error;
  double wall_seconds = 0;  // from the submit to the job's end as status first showed it
  std::vector<nlohmann::json> metrics;
  std::string checkpoint_root;
};

local_cluster_options cluster_options(const chaos_options& o, const config& c, const std::string& dir, int min_round_ms) {
  local_cluster_options lo;
  lo.dir = dir;
  lo.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
  lo.heartbeat_ms = std::max(50, std::min(500, o.heartbeat_timeout_ms / 6));
  lo.min_round_ms = min_round_ms;
  // Worker processes share the machine's cores; joined ones take the same share.
  lo.worker_threads = std::max(1, compute_threads() / o.workers);
  if (!c.data.synthetic) lo.data_root = c.data.dir;
  return lo;
}

std::string worker_name(int i) { return "w" + std::to_string(i); }

// The faults: drawn from the seed, applied to the cluster's current state.
class chaos_driver {
 public:
  chaos_driver(local_cluster& cluster, const chaos_options& o, std::mt19937_64& rng, steady::time_point t0)
      : cluster_(cluster), o_(o), rng_(rng), t0_(t0), next_name_(o.workers) {
    for (int i = 0; i < o.workers; ++i) names_.push_back(worker_name(i));
  }

  std::map<fault_kind, int> counts;
  std::int64_t steps_replayed_after_restarts = 0;

  // Draws a fault the cluster can take now and applies it. `job` is the job's status entry.
  void strike(const std::string& job_id, const nlohmann::json& job) {
    std::vector<fault_kind> allowed;
    const auto live = live_workers(), down = down_workers();
    for (auto k : all_faults) {
      const bool ok = (k == fault_kind::kill || k == fault_kind::hang || k == fault_kind::drain) ? live.size() >= 2
                      : k == fault_kind::restart                                                 ? !down.empty()
                      : k == fault_kind::join ? live.size() < std::size_t(o_.workers) + 2
                                              : true;
      if (ok) allowed.push_back(k);
    }
    const auto kind = allowed[std::uniform_int_distribution<std::size_t>(0, allowed.size() - 1)(rng_)];
    const auto step = job.value("step", std::int64_t(0));
    switch (kind) {
      case fault_kind::kill: {
        const auto& w = pick(live);
        log(step, "kill " + w + " (SIGKILL)");
        cluster_.worker(w)->signal(SIGKILL);
        cluster_.worker(w)->wait_exit(10s);
        break;
      }
      case fault_kind::hang: {
        const auto& w = pick(live);
        const int stopped_ms = o_.heartbeat_timeout_ms + 1000;
        log(step, "stop " + w + " (SIGSTOP) for " + std::to_string(stopped_ms) + " ms, past the heartbeat timeout");
        cluster_.worker(w)->signal(SIGSTOP);
        sleep_checked(std::chrono::milliseconds(stopped_ms));
        cluster_.worker(w)->signal(SIGCONT);
        log(step, "continue " + w + " (SIGCONT): it was evicted and registers again");
        // It hears it was evicted and registers anew (bounded; the table shows the rest).
        if (!wait_listed(w, true, 30s)) log(step, "note: " + w + " is not registered again after 30 s");
        break;
      }
      case fault_kind::restart: {
        const auto& w = pick(down);
        // The coordinator must have let go of the name (a kill is seen at once; a process
        // that exited by itself may take a heartbeat timeout).
        wait_listed(w, false, std::chrono::milliseconds(o_.heartbeat_timeout_ms) + 10s);
        log(step, "start " + w + " again");
        start(w, step);
        break;
      }
      case fault_kind::join: {
        const auto w = worker_name(next_name_++);
        names_.push_back(w);
        log(step, "start new worker " + w);
        start(w, step);
        break;
      }
      case fault_kind::drain: {
        const auto& w = pick(live);
        log(step, "drain " + w);
        try {
          // Its units move at the next step boundary; bounded by a generous multiple of a round.
          const auto said = cluster_.drain(w, 300s);
          log(step, said);
        } catch (const interrupted_error&) {
          throw;
        } catch (const std::exception& e) {
          log(step, std::string("note: ") + e.what());
        }
        if (!cluster_.worker(w)->wait_exit(30s)) log(step, "note: " + w + " still runs 30 s after it was drained");
        break;
      }
      case fault_kind::coordinator: {
        const auto before = committed_steps(job_id);
        log(step, "kill the coordinator (SIGKILL) and start it again on the same port and state");
        cluster_.restart_coordinator();
        // The job resumes once the workers are back: from their memory snapshots, else the
        // newest checkpoint. What it redoes is seen in its step once it runs again.
        auto s = cluster_.wait_status(
            [&](const nlohmann::json& s) {
              const auto j = job_in(s, job_id);
              return j.is_object() && j.value("state", "") != "pending";
            },
            120s);
        if (s && job_in(*s, job_id).is_object()) {
          const auto resumed = job_in(*s, job_id).value("step", std::int64_t(0));
          steps_replayed_after_restarts += std::max<std::int64_t>(0, before - resumed);
          log(resumed, "job resumed at step " + std::to_string(resumed) + " (" + std::to_string(before) +
                           " steps were committed)");
        }
        break;
      }
    }
    ++counts[kind];
  }

 private:
  std::vector<std::string> live_workers() {
    std::vector<std::string> out;
    for (const auto& n : names_)
      if (auto* p = cluster_.worker(n); p && !p->exited()) out.push_back(n);
    return out;
  }
  std::vector<std::string> down_workers() {
    std::vector<std::string> out;
    for (const auto& n : names_)
      if (auto* p = cluster_.worker(n); p && p->exited()) out.push_back(n);
    return out;
  }
  const std::string& pick(const std::vector<std::string>& from) {
    return from[std::uniform_int_distribution<std::size_t>(0, from.size() - 1)(rng_)];
  }
  void log(std::int64_t step, const std::string& what) {
    std::printf("[%7.1f s] step %lld: %s\n", seconds_since(t0_), static_cast<long long>(step), what.c_str());
    std::fflush(stdout);
  }
  void start(const std::string& w, std::int64_t step) {
    try {
      cluster_.start_worker(w);
    } catch (const interrupted_error&) {
      throw;
    } catch (const std::exception& e) {
      log(step, std::string("note: could not start ") + w + ": " + e.what());
    }
  }
  // Waits until status lists worker `name` (or no longer does); false on timeout.
  bool wait_listed(const std::string& name, bool listed, std::chrono::milliseconds timeout) {
    auto has = [&](const nlohmann::json& s) {
      for (const auto& w : s.value("workers", nlohmann::json::array()))
        if (w.value("name", "") == name) return true;
      return false;
    };
    auto s = cluster_.wait_status([&](const nlohmann::json& s) { return has(s) == listed; }, timeout);
    return s && has(*s) == listed;
  }
  // Steps committed, from the job's metrics (status may lag a commit behind).
  std::int64_t committed_steps(const std::string& job_id) {
    std::int64_t n = 0;
    for (const auto& line : read_metrics_lines(cluster_.metrics_path(job_id)))
      if (!line.contains("event") && line.contains("step")) n = std::max(n, line["step"].get<std::int64_t>() + 1);
    return n;
  }

  local_cluster& cluster_;
  const chaos_options& o_;
  std::mt19937_64& rng_;
  steady::time_point t0_;
  int next_name_;
  std::vector<std::string> names_;
};

// Submits the job and waits for its end; with a driver, faults strike meanwhile.
run_result run_job(local_cluster& cluster, const config& c, const chaos_options& o, std::mt19937_64* rng,
                   std::chrono::seconds limit, std::unique_ptr<chaos_driver>& driver) {
  run_result r;
  r.checkpoint_root = cluster.checkpoint_root() + "/" + c.name;
  const auto t0 = steady::now();
  r.id = cluster.submit(to_toml(c), o.config_path);
  if (rng) driver = std::make_unique<chaos_driver>(cluster, o, *rng, t0);
  const double mean_gap = o.kill_every;
  auto draw_gap = [&] {
    return std::chrono::duration_cast<steady::duration>(
        std::chrono::duration<double>(std::uniform_real_distribution<double>(0.5, 1.5)(*rng) * mean_gap));
  };
  auto next_fault = rng ? t0 + draw_gap() : steady::time_point::max();
  // After a fault the next waits until the job runs again and has committed a step since.
  bool gated = false;
  std::int64_t gate_step = -1;
  steady::time_point gate_after{};
  for (;;) {
    if (steady::now() - t0 > limit) {
      r.error = "the job did not end within " + std::to_string(limit.count()) + " s";
      break;
    }
    auto s = cluster.status();
    const auto job = s ? job_in(*s, r.id) : nlohmann::json(nullptr);
    const auto state = job.is_null() ? std::string() : job.value("state", "");
    if (state == "finished" || state == "failed" || state == "stopped") {
      r.state = state;
      r.error = job.value("error", "");
      break;
    }
    if (driver && !job.is_null() && steady_activity(job)) {
      const auto step = job.value("step", std::int64_t(0));
      if (gated && gate_step < 0 && steady::now() >= gate_after) gate_step = step;
      if (gated && gate_step >= 0 && step > gate_step) gated = false;
      if (!gated && steady::now() >= next_fault && step < c.train.steps) {
        driver->strike(r.id, job);
        gated = true;
        gate_step = -1;
        gate_after = steady::now() + 500ms;
        next_fault = steady::now() + draw_gap();
      }
    }
    sleep_checked(100ms);
  }
  r.wall_seconds = seconds_since(t0);
  r.metrics = read_metrics_lines(cluster.metrics_path(r.id));
  return r;
}

// The committed steps of a run's metrics whose line is missing, repeated or different from
// the undisturbed run's (every field that does not measure time).
std::int64_t steps_lost(const run_result& chaos, const run_result& calm, std::int64_t steps) {
  static const char* fields[] = {"loss",    "cross_entropy", "aux_loss",          "z_loss",  "tokens",
                                 "skipped", "dropped",       "tokens_per_expert", "val_loss"};
  auto by_step = [](const run_result& r) {
    std::map<std::int64_t, std::vector<nlohmann::json>> out;
    for (const auto& line : r.metrics)
      if (!line.contains("event") && line.contains("step")) out[line["step"].get<std::int64_t>()].push_back(line);
    return out;
  };
  const auto a = by_step(chaos), b = by_step(calm);
  std::int64_t lost = 0;
  for (std::int64_t k = 0; k < steps; ++k) {
    auto i = a.find(k), j = b.find(k);
    if (i == a.end() || j == b.end() || i->second.size() != 1 || j->second.size() != 1) {
      ++lost;
      continue;
    }
    const auto &x = i->second.front(), &y = j->second.front();
    for (const char* f : fields)
      if (x.contains(f) != y.contains(f) || (x.contains(f) && x[f] != y[f])) {
        ++lost;
        break;
      }
  }
  // A step line past the job's end is a step recorded that should not be.
  for (const auto& [k, lines] : a) lost += k >= steps ? std::int64_t(lines.size()) : 0;
  return lost;
}

// "" when both runs' final checkpoints hold the same parameters and optimizer state, bit
// for bit; else what differs.
std::string final_state_difference(const run_result& chaos, const run_result& calm, const config& c) {
  auto a = latest_valid_checkpoint(chaos.checkpoint_root, c);
  auto b = latest_valid_checkpoint(calm.checkpoint_root, c);
  if (!a || a->step != c.train.steps) return "the disturbed run left no valid checkpoint of its last step";
  if (!b || b->step != c.train.steps) return "the undisturbed run left no valid checkpoint of its last step";
  std::vector<std::string> units{dense_state_name()};
  for (index e = 0; e < (c.model.moe_as_dense_relu ? 0 : c.model.experts); ++e) units.push_back(unit_id::expert(e).name());
  for (const auto& unit : units) {
    auto load = [&](const std::string& root, const checkpoint_manifest& m, param_set& p, optimizer_state& opt) {
      p = unit == dense_state_name() ? init_dense_params(c.model, c.train.seed)
                                     : init_expert_params(c.model, unit_id::parse(unit)->index, c.train.seed);
      opt.init(p);
      const auto* f = m.find(unit);
      if (!f) throw std::runtime_error("unit " + unit + " is missing from the checkpoint in " + root);
      read_unit_file(root, m.step, *f, p, opt);
    };
    param_set pa, pb;
    optimizer_state oa, ob;
    load(chaos.checkpoint_root, *a, pa, oa);
    load(calm.checkpoint_root, *b, pb, ob);
    if (!bitwise_equal(pa, pb)) return unit + ": parameters differ";
    if (oa.applied_steps != ob.applied_steps || !bitwise_equal(oa.to_tensors(), ob.to_tensors()))
      return unit + ": optimizer state differs";
  }
  return {};
}

std::string number(double v) {
  char text[32];
  std::snprintf(text, sizeof text, "%g", v);
  return text;
}

void check_options(const chaos_options& o) {
  if (o.workers < 1)
    throw std::invalid_argument("--workers " + std::to_string(o.workers) +
                                ": the cluster needs at least 1 worker (3 or more make the faults interesting)");
  if (o.workers > 32) throw std::invalid_argument("--workers " + std::to_string(o.workers) + ": at most 32 on one machine");
  if (!(o.minutes > 0) || o.minutes > 24 * 60)
    throw std::invalid_argument("--minutes " + number(o.minutes) +
                                ": give how long the disturbed run should last, more than 0 and at most 1440 (a day)");
  if (o.kill_every < 0 || o.kill_every > 86400)
    throw std::invalid_argument("--kill-every " + number(o.kill_every) +
                                ": give the mean seconds between faults, more than 0 (0 or absent: the run's length / 8)");
  if (o.steps == 0 || o.steps < -1) throw std::invalid_argument("--steps must be at least 1");
}

int run_chaos(chaos_options o) {
  check_options(o);
  config c = load_cluster_job(o.config_path, o.synthetic);
  if (o.steps > 0) c.train.steps = o.steps;
  validate_config(c);
  if (o.kill_every <= 0) o.kill_every = std::max(2.0, o.minutes * 60 / 8);
  const std::int64_t rounds = rounds_of(c);
  const double pace_ms = o.minutes * 60000.0 / double(std::max<std::int64_t>(rounds, 1));
  if (pace_ms > 600000)
    throw std::invalid_argument("--minutes " + number(o.minutes) + " over " + std::to_string(rounds) +
                                " rounds is more than 10 minutes a round: raise --steps");
  const int min_round_ms = static_cast<int>(std::lround(pace_ms));

  interrupt_guard guard;
  const auto dir = (fs::temp_directory_path() / ("glam-chaos-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  fs::create_directories(dir);
  bool keep = o.keep;
  std::printf("glam chaos %s: %lld steps (%lld rounds) paced at %d ms a round, %d workers, seed %llu, a fault every "
              "~%.1f s; work in %s\n",
              c.name.c_str(), (long long)c.train.steps, (long long)rounds, min_round_ms, o.workers,
              (unsigned long long)o.seed, o.kill_every, dir.c_str());
  std::fflush(stdout);
  try {
    std::mt19937_64 rng(o.seed);
    const auto limit = std::chrono::seconds(static_cast<std::int64_t>(o.minutes * 60 * 3) + 300);
    run_result chaos, calm;
    std::map<fault_kind, int> counts;
    std::int64_t replayed_after_restarts = 0;
    {
      local_cluster cluster(cluster_options(o, c, dir + "/chaos", min_round_ms));
      for (int i = 0; i < o.workers; ++i) cluster.start_worker(worker_name(i));
      std::unique_ptr<chaos_driver> driver;
      chaos = run_job(cluster, c, o, &rng, limit, driver);
      counts = driver->counts;
      replayed_after_restarts = driver->steps_replayed_after_restarts;
    }
    std::printf("disturbed run: job %s %s after %.1f s%s%s\n", chaos.id.c_str(), chaos.state.c_str(),
                chaos.wall_seconds, chaos.error.empty() ? "" : ": ", chaos.error.c_str());
    std::fflush(stdout);
    if (chaos.state == "finished") {
      local_cluster cluster(cluster_options(o, c, dir + "/undisturbed", min_round_ms));
      for (int i = 0; i < o.workers; ++i) cluster.start_worker(worker_name(i));
      std::unique_ptr<chaos_driver> none;
      calm = run_job(cluster, c, o, nullptr, limit, none);
      std::printf("undisturbed run: job %s %s after %.1f s%s%s\n", calm.id.c_str(), calm.state.c_str(),
                  calm.wall_seconds, calm.error.empty() ? "" : ": ", calm.error.c_str());
    }

    // The table.
    int recoveries = 0, joins = 0, drains = 0;
    std::int64_t replayed = 0;
    std::map<std::string, int> restored;
    for (const auto& line : chaos.metrics) {
      if (!line.contains("event")) continue;
      const auto kind = line["event"].get<std::string>();
      recoveries += kind == "recovery";
      joins += kind == "join";
      drains += kind == "drain";
      replayed += line.value("steps_replayed", std::int64_t(0));
      if (kind == "recovery") ++restored[line.value("restored_from", "?")];
    }
    const bool both = chaos.state == "finished" && calm.state == "finished";
    const std::int64_t lost = both ? steps_lost(chaos, calm, c.train.steps) : -1;
    const std::string difference = both ? final_state_difference(chaos, calm, c) : "a run did not finish";
    int faults = 0;
    std::printf("\n%-50s %s\n", "faults injected", "count");
    for (auto k : all_faults) {
      std::printf("  %-48s %d\n", fault_label(k), counts[k]);
      faults += counts[k];
    }
    std::printf("  %-48s %d\n", "total", faults);
    std::string from;
    for (const auto& [what, n] : restored) from += (from.empty() ? "" : ", ") + std::to_string(n) + " from " + what;
    std::printf("%-50s %d%s%s%s\n", "recoveries (event lines \"recovery\")", recoveries, from.empty() ? "" : " (",
                from.c_str(), from.empty() ? "" : ")");
    std::printf("%-50s %d / %d\n", "migrations (event lines \"join\" / \"drain\")", joins, drains);
    std::printf("%-50s %lld (in event lines) + %lld (after coordinator restarts)\n", "steps replayed",
                (long long)replayed, (long long)replayed_after_restarts);
    if (lost >= 0)
      std::printf("%-50s %lld\n", "committed steps lost:", (long long)lost);
    else
      std::printf("%-50s unknown (a run did not finish)\n", "committed steps lost:");
    std::printf("%-50s disturbed %.1f s, undisturbed %.1f s\n", "wall time (submit to finished)", chaos.wall_seconds,
                calm.wall_seconds);
    if (both)
      std::printf("%-50s %.3f\n", "goodput (undisturbed / disturbed wall time)", calm.wall_seconds / chaos.wall_seconds);
    std::printf("final parameters bitwise equal: %s%s%s\n", difference.empty() ? "yes" : "no",
                difference.empty() ? "" : " - ", difference.c_str());
    std::printf("%s\n", load_average().c_str());
    const bool ok = both && lost == 0 && difference.empty();
    if (!ok) {
      keep = true;
      std::printf("logs and state kept in %s\n", dir.c_str());
    } else if (keep) {
      std::printf("logs and state kept in %s\n", dir.c_str());
    }
    std::fflush(stdout);
    if (!keep) fs::remove_all(dir);
    return ok ? 0 : 1;
  } catch (const interrupted_error&) {
    std::fprintf(stderr, "glam chaos: interrupted; every process it started was killed\n");
    if (!keep) fs::remove_all(dir);
    return 130;
  } catch (...) {
    std::fprintf(stderr, "glam chaos: logs and state kept in %s\n", dir.c_str());
    throw;
  }
}

}  // namespace

void add_chaos_command(CLI::App& app) {
  auto o = std::make_shared<chaos_options>();
  auto* cmd = app.add_subcommand(
      "chaos",
      "Train CONFIG on a local cluster while random faults strike it, train it again undisturbed, and compare");
  cmd->footer(
      "The cluster: a coordinator and --workers worker processes on 127.0.0.1 (free ports), with their own state\n"
      "directory and HOME under the temporary directory (your ~/.glam is not touched). The job runs the config's\n"
      "train.steps (or --steps); the coordinator paces its rounds (every training step and validation batch) at\n"
      "minutes x 60 / rounds seconds each, so that the disturbed run lasts about --minutes when a step computes\n"
      "faster than that (else about steps x step time). Data: the config's data.dir, prepared (glam data\n"
      "prepare), or synthetic tokens (--synthetic).\n"
      "Faults, drawn from --seed (mt19937_64) about every --kill-every seconds (uniform in 0.5x to 1.5x), once the\n"
      "job runs and has committed a step since the last one: a worker killed (SIGKILL); a worker stopped (SIGSTOP)\n"
      "past --heartbeat-timeout-ms, then continued (SIGCONT); a killed or drained worker started again; a new\n"
      "worker; a worker drained (glam drain); the coordinator killed and restarted on the same state. Kills,\n"
      "stops and drains need 2 live workers: the cluster never goes down to none.\n"
      "Then the same job runs on a fresh coordinator and --workers workers with the same pacing, undisturbed.\n"
      "The table: faults by kind; recoveries, joins and drains (the job's event lines); steps replayed; committed\n"
      "steps lost (steps whose metrics line is missing, repeated or differs from the undisturbed run's in any\n"
      "field but timings: must be 0); goodput = undisturbed wall time / disturbed wall time, both from submit to\n"
      "finished; and whether the final checkpoints hold the same parameters and optimizer state bit for bit.\n"
      "Exit status 0 only when they do and no committed step was lost.");
  cmd->add_option("config", o->config_path, "The job's TOML config")->required();
  cmd->add_option("--workers", o->workers, "Worker processes to start with")->capture_default_str();
  cmd->add_option("--minutes", o->minutes, "About how long the disturbed run lasts (it sets the pacing)")
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "Seed of the fault draws")->capture_default_str();
  cmd->add_option("--kill-every", o->kill_every, "Mean seconds between faults (default: the run's length / 8, >= 2)");
  cmd->add_option("--steps", o->steps, "Steps of the job (default: the config's train.steps)");
  cmd->add_flag("--synthetic", o->synthetic, "Train on synthetic tokens instead of the config's data.dir");
  cmd->add_option("--heartbeat-timeout-ms", o->heartbeat_timeout_ms,
                  "The coordinator's heartbeat timeout (a stopped worker counts as dead after it)")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  cmd->add_flag("--keep", o->keep, "Keep the state and logs (kept anyway when the check fails)");
  cmd->callback([o] {
    const int rc = run_chaos(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
