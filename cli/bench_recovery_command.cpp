// `glam bench recovery CONFIG`: what fault tolerance costs, measured on real processes (a
// coordinator and worker daemons on loopback, started here) with synthetic tokens: the time
// to detect a killed and a hung worker, the time from detection to the first committed step,
// the step-time overhead of in-memory snapshots, and the goodput of a job whose workers are
// killed now and then, against the undisturbed job and against recovery by resubmission.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "cli/commands.hpp"
#include "cli/local_cluster.hpp"
#include "configs/config.hpp"
#include "kernels/parallel.hpp"

namespace glam::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr std::int64_t snapshots_off = 1'000'000'000'000;  // fault.snapshot_every's largest value

struct recovery_options {
  std::string config_path;
  int workers = 2;
  int kills = 10;
  int hangs = 3;
  std::int64_t steps = 6;          // per steady-state run
  int repeats = 2;                 // steady-state runs with snapshots and without, alternating
  std::int64_t goodput_steps = 0;  // 0: about three kill periods' worth
  double kill_period = 60;         // seconds between kills in the goodput runs
  std::int64_t checkpoint_every = 0;  // goodput runs; 0: the config's, else half a kill period
  int heartbeat_timeout_ms = 3000;
  int min_round_ms = 0;
  std::uint64_t seed = 1;
  bool quick = false;
};

double seconds_since(steady::time_point t) { return std::chrono::duration<double>(steady::now() - t).count(); }

// Nearest-rank percentile (p in (0, 1]) of a non-empty sample.
double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p * double(v.size())));
  return v[std::min(v.size(), std::max<std::size_t>(rank, 1)) - 1];
}

double median(const std::vector<double>& v) { return percentile(v, 0.5); }

bool is_step(const nlohmann::json& line) { return !line.contains("event") && line.contains("step"); }

// A job name for one run: the config's, shortened, and what the run is.
std::string run_name(const config& c, const std::string& what) { return c.name.substr(0, 40) + "-" + what; }

config job_for(const config& base, const std::string& name, std::int64_t steps, std::int64_t snapshot_every,
               std::int64_t checkpoint_every) {
  config c = base;
  c.name = name;
  c.train.steps = steps;
  c.train.eval_every = 0;
  c.fault.snapshot_every = snapshot_every;
  c.fault.checkpoint_every = checkpoint_every;
  validate_config(c);
  return c;
}

// Everything the bench measures, on one local cluster.
class recovery_bench {
 public:
  recovery_bench(const recovery_options& o, const config& c, const std::string& dir)
      : o_(o), c_(c), rng_(o.seed), cluster_(cluster_options(o, dir)) {
    for (int i = 0; i < o.workers; ++i) cluster_.start_worker("w" + std::to_string(i));
  }

  // Snapshots on and off, alternating; returns the steady-state step time (snapshots on).
  double snapshot_overhead() {
    std::vector<double> on, off;
    double cpu_on = 0, cpu_off = 0;  // the workers' CPU seconds over the steps counted
    for (int r = 0; r < o_.repeats; ++r)
      for (bool snapshots : {false, true}) {
        const auto name = run_name(c_, std::string("steady-") + (snapshots ? "on-" : "off-") + std::to_string(r));
        const auto c = job_for(c_, name, o_.steps, snapshots ? 1 : snapshots_off, 0);
        wait_settled();
        const auto id = cluster_.submit(to_toml(c), o_.config_path);
        // Step 0 warms caches and allocators up: not counted, in time or in CPU.
        metrics_follower follower(cluster_.metrics_path(id));
        const auto limit = steady::now() + run_limit(o_.steps);
        auto committed = [&] {
          const auto& lines = follower.poll();
          return std::any_of(lines.begin(), lines.end(), [](const auto& l) { return is_step(l.json); });
        };
        while (!committed()) {
          if (steady::now() > limit) throw std::runtime_error("job " + id + " committed no step within the bound");
          sleep_checked(5ms);
        }
        const double cpu_from = workers_cpu_seconds();
        const auto end = cluster_.wait_job_end(id, run_limit(o_.steps));
        require_finished(id, end);
        (snapshots ? cpu_on : cpu_off) += workers_cpu_seconds() - cpu_from;
        for (const auto& line : read_metrics_lines(cluster_.metrics_path(id)))
          if (is_step(line) && line["step"].get<std::int64_t>() > 0)
            (snapshots ? on : off).push_back(line["seconds"].get<double>());
      }
    if (on.empty() || off.empty()) throw std::runtime_error("the steady-state runs recorded no step after the first: raise --steps");
    // The median, and the fastest step: other processes only ever slow a step down, so on a
    // shared machine the fastest is the closest to what the step costs.
    const double t_on = median(on), t_off = median(off);
    const double b_on = *std::min_element(on.begin(), on.end()), b_off = *std::min_element(off.begin(), off.end());
    std::printf("steady state, snapshots off (fault.snapshot_every = %lld): median step %.4f s, fastest %.4f s, over %zu "
                "steps  [%s]\n",
                (long long)snapshots_off, t_off, b_off, off.size(), load_average().c_str());
    std::printf("steady state, snapshot every step (fault.snapshot_every = 1): median step %.4f s, fastest %.4f s, over %zu "
                "steps  [%s]\n",
                t_on, b_on, on.size(), load_average().c_str());
    std::printf("snapshot overhead: step time ratio %.4f (%+.1f %%) of the medians, %.4f (%+.1f %%) of the fastest  "
                "[target <= 3 %%]\n",
                t_on / t_off, 100 * (t_on / t_off - 1), b_on / b_off, 100 * (b_on / b_off - 1));
    // The load-robust figure: what snapshots cost the workers' CPUs per step. Another
    // process's load stretches wall time, not the CPU time the workers' own work takes.
    const double per_on = cpu_on / double(on.size()), per_off = cpu_off / double(off.size());
    std::printf("snapshot overhead in the workers' CPU time: %.3f s per step on, %.3f s off, ratio %.4f (%+.1f %%)\n\n",
                per_on, per_off, per_on / per_off, 100 * (per_on / per_off - 1));
    std::fflush(stdout);
    step_seconds_ = t_on;
    return t_on;
  }

  // K kills and H hangs of workers hosting units, one at a time, each once the job is steady.
  void detection_and_recovery() {
    const auto c = job_for(c_, run_name(c_, "kills"), 1'000'000'000, 1, 0);
    wait_settled();
    const auto id = cluster_.submit(to_toml(c), o_.config_path);
    metrics_follower follower(cluster_.metrics_path(id));
    // Lines are found by what they say, not where they are: a rollback rewrites the file
    // (dropping step lines, never event lines).
    auto wait_for = [&](auto found, const std::string& what) {
      const auto end = steady::now() + wait_limit();
      for (;;) {
        const auto& lines = follower.poll();
        if (auto at = found(lines); at >= 0) return at;
        if (steady::now() > end) throw std::runtime_error("no " + what + " within the bound");
        sleep_checked(5ms);
      }
    };
    using lines_t = std::vector<metrics_follower::line>;
    // The nth event line (from 0); -1 when there are fewer.
    auto nth_event = [](const lines_t& lines, std::ptrdiff_t n) -> std::ptrdiff_t {
      for (std::size_t i = 0; i < lines.size(); ++i)
        if (lines[i].json.contains("event") && n-- == 0) return std::ptrdiff_t(i);
      return -1;
    };
    auto events_in = [](const lines_t& lines) {
      return std::ptrdiff_t(std::count_if(lines.begin(), lines.end(), [](const auto& l) { return l.json.contains("event"); }));
    };
    // The first step line after line `after` (-1: from the start) and `count` - 1 more; the
    // first one's index, or -1.
    auto steps_after = [](const lines_t& lines, std::ptrdiff_t after, int count) -> std::ptrdiff_t {
      std::ptrdiff_t first = -1;
      for (std::size_t i = std::size_t(after + 1); i < lines.size(); ++i)
        if (is_step(lines[i].json)) {
          if (first < 0) first = std::ptrdiff_t(i);
          if (--count == 0) return first;
        }
      return -1;
    };

    struct sample {
      std::string victim;
      double detection_ms, restore_s, first_commit_s, redone_s, replay_s;
      std::int64_t replayed;
      double gone_ms;  // a killed process: signal -> reaped (its sockets close as it ends)
    };
    std::vector<sample> kills, hangs;
    const double step = step_seconds_;
    std::printf("%-5s %-6s %12s %8s %10s %15s %12s %9s %15s\n", "fault", "worker", "detection ms", "gone ms",
                "restore s", "first commit s", "step redone s", "replayed", "replay compute s");
    for (int i = 0; i < o_.kills + o_.hangs; ++i) {
      const bool hang = i >= o_.kills;
      // Steady: two steps committed since the last event (the previous fault's recovery and
      // the victim's return), so that every worker hosts units again.
      wait_for([&](const lines_t& l) { return steps_after(l, nth_event(l, events_in(l) - 1), 2); }, "steady steps");
      const auto victim = pick_hosting_worker();
      const auto t0 = unix_ms();
      cluster_.worker(victim)->signal(hang ? SIGSTOP : SIGKILL);
      double gone_ms = -1;
      if (!hang) {
        // The kernel frees a process's memory before it closes its sockets: the end of a
        // large process, not the coordinator, may be what detection waits for.
        while (!cluster_.worker(victim)->exited() && unix_ms() - t0 < 10000) std::this_thread::sleep_for(1ms);
        gone_ms = double(unix_ms() - t0);
      }
      // This fault's recovery: the first one detected since the signal, and a step after it.
      std::ptrdiff_t ordinal = -1;
      const auto e = wait_for(
          [&](const lines_t& l) -> std::ptrdiff_t {
            std::ptrdiff_t n = 0;
            for (std::size_t k = 0; k < l.size(); ++k) {
              if (!l[k].json.contains("event")) continue;
              if (l[k].json.value("event", "") == "recovery" && l[k].json.value("detected_at_ms", std::int64_t(0)) >= t0 &&
                  steps_after(l, std::ptrdiff_t(k), 1) >= 0) {
                ordinal = n;
                return std::ptrdiff_t(k);
              }
              ++n;
            }
            return -1;
          },
          "recovery event and a committed step after the " + std::string(hang ? "SIGSTOP" : "SIGKILL"));
      const auto& lines = follower.lines();
      const auto event = lines[std::size_t(e)];
      const auto first = lines[std::size_t(steps_after(lines, e, 1))];
      const auto detected = event.json.value("detected_at_ms", std::int64_t(0));
      sample s;
      s.victim = victim;
      s.detection_ms = double(detected - t0);
      s.restore_s = event.json.value("seconds", 0.0);
      s.first_commit_s = double(first.seen_ms - detected) / 1000;
      s.redone_s = first.json.value("seconds", 0.0);
      s.replayed = event.json.value("steps_replayed", std::int64_t(0));
      s.replay_s = double(s.replayed) * step;
      s.gone_ms = gone_ms;
      std::printf("%-5s %-6s %12.0f %8s %10.3f %15.3f %12.3f %9lld %15.3f\n", hang ? "hang" : "kill", victim.c_str(),
                  s.detection_ms, hang ? "-" : std::to_string(std::lround(gone_ms)).c_str(), s.restore_s,
                  s.first_commit_s, s.redone_s, (long long)s.replayed, s.replay_s);
      std::fflush(stdout);
      (hang ? hangs : kills).push_back(s);
      // The victim comes back: a stopped one continues, hears it was evicted and registers
      // again; a killed one is started again. Either joins at a step boundary.
      const auto continued = steady::now();
      if (hang) {
        cluster_.worker(victim)->signal(SIGCONT);
      } else {
        cluster_.worker(victim)->wait_exit(10s);
        wait_unlisted(victim);
        cluster_.start_worker(victim);
      }
      wait_for(
          [&](const lines_t& l) -> std::ptrdiff_t {
            // A continued worker that exits instead of registering again is started anew.
            if (auto* p = cluster_.worker(victim); p->exited()) {
              std::printf("note: %s exited after SIGCONT instead of registering again: %s\n", victim.c_str(),
                          p->err_tail(300).c_str());
              wait_unlisted(victim);
              cluster_.start_worker(victim);
            }
            for (auto n = ordinal + 1;; ++n) {
              const auto at = nth_event(l, n);
              if (at < 0) return -1;
              if (l[std::size_t(at)].json.value("event", "") == "join") return at;
            }
          },
          "join event of " + victim);
      // A continued worker may still end when a registration request it sent before it
      // registered again times out (the workers' request timeout, 10 s): give it that long,
      // and start it again if it did, so that the next fault finds the cluster whole.
      if (hang) {
        sleep_checked(std::chrono::duration_cast<std::chrono::milliseconds>(continued + 12s - steady::now()));
        if (auto* p = cluster_.worker(victim); p->exited()) {
          std::printf("note: %s exited after it registered again: %s\n", victim.c_str(), p->err_tail(300).c_str());
          const auto joins = events_in(follower.poll());
          wait_unlisted(victim);
          cluster_.start_worker(victim);
          wait_for(
              [&](const lines_t& l) -> std::ptrdiff_t {
                for (auto n = joins;; ++n) {
                  const auto at = nth_event(l, n);
                  if (at < 0) return -1;
                  if (l[std::size_t(at)].json.value("event", "") == "join") return at;
                }
              },
              "join event of " + victim + " started again");
        }
      }
    }
    wait_for([&](const lines_t& l) { return steps_after(l, nth_event(l, events_in(l) - 1), 1); }, "step after the last fault");
    cluster_.stop(id);
    cluster_.wait_job_end(id, 30s);

    auto column = [](const std::vector<sample>& v, double sample::*field) {
      std::vector<double> out;
      for (const auto& s : v) out.push_back(s.*field);
      return out;
    };
    auto excluding = [](const std::vector<sample>& v) {
      std::vector<double> out;
      for (const auto& s : v) out.push_back(s.first_commit_s - s.redone_s);
      return out;
    };
    const auto load = load_average();
    std::printf("\n(p50 and p99 are nearest-rank over the faults; with 10 faults p99 is the largest)\n");
    if (!kills.empty()) {
      const auto d = column(kills, &sample::detection_ms);
      const auto g = column(kills, &sample::gone_ms);
      std::printf("kill detection (SIGKILL -> recovery started): p50 %.0f ms, p99 %.0f ms over %zu kills  [target <= 300 ms]  [%s]\n",
                  percentile(d, 0.5), percentile(d, 0.99), d.size(), load.c_str());
      std::printf("  of which the killed process took to end (SIGKILL -> reaped): p50 %.0f ms, p99 %.0f ms\n",
                  percentile(g, 0.5), percentile(g, 0.99));
    }
    if (!hangs.empty()) {
      const auto d = column(hangs, &sample::detection_ms);
      std::printf("hang detection (SIGSTOP -> recovery started), heartbeat timeout %d ms: p50 %.0f ms, p99 %.0f ms over %zu "
                  "hangs (%.2f and %.2f x the timeout)  [%s]\n",
                  o_.heartbeat_timeout_ms, percentile(d, 0.5), percentile(d, 0.99), d.size(),
                  percentile(d, 0.5) / o_.heartbeat_timeout_ms, percentile(d, 0.99) / o_.heartbeat_timeout_ms,
                  load.c_str());
    }
    std::vector<sample> all = kills;
    all.insert(all.end(), hangs.begin(), hangs.end());
    if (!all.empty()) {
      const auto restore = column(all, &sample::restore_s), first = column(all, &sample::first_commit_s),
                 replay = column(all, &sample::replay_s), ex = excluding(all);
      std::printf("restore (detection -> every unit hosted and restored): p50 %.3f s, p99 %.3f s\n",
                  percentile(restore, 0.5), percentile(restore, 0.99));
      std::printf("recovery (detection -> first committed step): p50 %.3f s, p99 %.3f s; steady step %.3f s "
                  "(ratio p50 / step %.2f)\n",
                  percentile(first, 0.5), percentile(first, 0.99), step, step > 0 ? percentile(first, 0.5) / step : 0.0);
      std::printf("replay compute (steps replayed x steady step): p50 %.3f s, p99 %.3f s\n", percentile(replay, 0.5),
                  percentile(replay, 0.99));
      std::printf("recovery excluding the compute of the step it commits (a redone or replayed step): p50 %.3f s, p99 %.3f s  "
                  "[target p50 <= 0.5 s, p99 <= 2 s]  [%s]\n\n",
                  percentile(ex, 0.5), percentile(ex, 0.99), load.c_str());
    }
    std::fflush(stdout);
  }

  // The same job undisturbed, with a worker killed and restarted every kill period, and with
  // recovery by resubmission (stop, restart the worker, submit again: the job resumes from
  // its newest checkpoint).
  void goodput() {
    // A round lasts its step, or the pacing when that is longer.
    const double round = std::max(step_seconds_, o_.min_round_ms / 1000.0);
    std::int64_t steps = o_.goodput_steps;
    if (steps <= 0) steps = std::max<std::int64_t>(4, std::llround(std::ceil(3 * o_.kill_period / round)));
    std::int64_t every = o_.checkpoint_every > 0 ? o_.checkpoint_every : c_.fault.checkpoint_every;
    if (every <= 0) every = std::max<std::int64_t>(1, std::llround(o_.kill_period / round / 2));
    std::printf("goodput: %lld steps, a checkpoint every %lld steps, a worker killed every %.1f s\n", (long long)steps,
                (long long)every, o_.kill_period);
    std::fflush(stdout);

    // Two goodputs: the wall-time ratio to the undisturbed run, and, since other processes
    // on a shared machine slow runs down unevenly, the ratio of each run's share of wall time
    // spent in its committed steps (the sum of their round times: of each step the line
    // that stands, the last job's when a resubmitted job redid it).
    struct run {
      std::optional<double> wall;
      double step_share = 0;
    };
    auto share_of = [&](const std::vector<std::string>& ids, double wall) {
      std::map<std::int64_t, double> seconds;
      for (const auto& id : ids)
        for (const auto& line : read_metrics_lines(cluster_.metrics_path(id)))
          if (is_step(line)) seconds[line["step"].get<std::int64_t>()] = line["seconds"].get<double>();
      double sum = 0;
      for (const auto& [step, s] : seconds) sum += s;
      return sum / wall;
    };

    const auto calm_cfg = job_for(c_, run_name(c_, "calm"), steps, 1, every);
    wait_settled();
    const auto t_calm = steady::now();
    const auto calm_id = cluster_.submit(to_toml(calm_cfg), o_.config_path);
    require_finished(calm_id, cluster_.wait_job_end(calm_id, run_limit(steps)));
    const double calm = seconds_since(t_calm);
    const double calm_share = share_of({calm_id}, calm);
    std::printf("undisturbed: %.2f s, time in committed steps / wall %.3f  [%s]\n", calm, calm_share,
                load_average().c_str());
    std::fflush(stdout);

    // A disturbed run that takes ten times the undisturbed one is given up: its goodput is
    // below 0.1 then, and so printed.
    const auto limit = std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(10 * calm + 30));
    auto report = [&](const char* what, int strikes, const run& r, const char* target) {
      if (r.wall)
        std::printf("%s (kills: %d): %.2f s, goodput %.3f (wall time ratio), %.3f (time in committed steps / wall, ratio)%s  [%s]\n",
                    what, strikes, *r.wall, calm / *r.wall, r.step_share / calm_share, target, load_average().c_str());
      else
        std::printf("%s (kills: %d): not finished after %.0f s, goodput < %.3f%s  [%s]\n", what, strikes,
                    std::chrono::duration<double>(limit).count(), calm / std::chrono::duration<double>(limit).count(),
                    target, load_average().c_str());
      std::fflush(stdout);
    };

    int kills = 0;
    const auto killed_cfg = job_for(c_, run_name(c_, "killed"), steps, 1, every);
    wait_settled();
    const auto t_killed = steady::now();
    const auto killed_id = cluster_.submit(to_toml(killed_cfg), o_.config_path);
    run killed;
    killed.wall = every_kill_period(killed_id, t_killed, steps, limit, [&](const std::string& victim) {
      kill_worker(victim);
      wait_unlisted(victim);
      cluster_.start_worker(victim);
      ++kills;
      return killed_id;
    });
    if (killed.wall) killed.step_share = share_of({killed_id}, *killed.wall);
    report("a worker killed and restarted every kill period, recovery in memory", kills, killed, "  [target >= 0.9]");

    // Without in-memory recovery a lost worker ends the job, which is submitted again; no
    // snapshots are taken, as such a system would not take them.
    const auto resubmit_cfg = job_for(c_, run_name(c_, "resubmitted"), steps, snapshots_off, every);
    const auto toml = to_toml(resubmit_cfg);
    wait_settled();
    const auto t_resubmit = steady::now();
    std::vector<std::string> ids{cluster_.submit(toml, o_.config_path)};
    run resubmitted;
    resubmitted.wall = every_kill_period(ids.back(), t_resubmit, steps, limit, [&](const std::string& victim) {
      cluster_.stop(ids.back());
      cluster_.wait_job_end(ids.back(), 30s);
      kill_worker(victim);
      wait_unlisted(victim);
      cluster_.start_worker(victim);
      ids.push_back(cluster_.submit(toml, o_.config_path));
      return ids.back();
    });
    if (resubmitted.wall) resubmitted.step_share = share_of(ids, *resubmitted.wall);
    report("the same kills, recovery by resubmission from the newest checkpoint", int(ids.size()) - 1, resubmitted, "");
    if (killed.wall && resubmitted.wall)
      std::printf("in-memory recovery against resubmission: wall time ratio %.3f, time in committed steps / wall ratio %.3f\n",
                  *killed.wall / *resubmitted.wall, killed.step_share / resubmitted.step_share);
    std::fflush(stdout);
  }

 private:
  static local_cluster_options cluster_options(const recovery_options& o, const std::string& dir) {
    local_cluster_options lo;
    lo.dir = dir;
    lo.heartbeat_timeout_ms = o.heartbeat_timeout_ms;
    lo.heartbeat_ms = std::max(50, std::min(500, o.heartbeat_timeout_ms / 6));
    lo.min_round_ms = o.min_round_ms;
    lo.worker_threads = std::max(1, compute_threads() / o.workers);
    return lo;
  }
  // Bounds: generous multiples of the measured step time, never unbounded.
  std::chrono::milliseconds wait_limit() const {
    return std::chrono::milliseconds(60000 + std::llround(20 * step_seconds_ * 1000));
  }
  std::chrono::milliseconds run_limit(std::int64_t steps) const {
    const double round = step_seconds_ > 0 ? std::max(step_seconds_, o_.min_round_ms / 1000.0) : 60.0;
    return std::chrono::milliseconds(120000 + std::llround(10 * double(steps) * round * 1000));
  }
  void require_finished(const std::string& id, const nlohmann::json& end) {
    if (end.is_null()) throw std::runtime_error("job " + id + " did not end in time");
    if (end.value("state", "") != "finished")
      throw std::runtime_error("job " + id + " " + end.value("state", "") + ": " + end.value("error", ""));
  }
  // A worker that hosts units now, drawn from the seed (waits, bounded, while none does).
  // User and system CPU seconds of the running worker processes (/proc/PID/stat).
  double workers_cpu_seconds() {
    double total = 0;
    for (const auto& name : cluster_.worker_names()) {
      auto* w = cluster_.worker(name);
      if (!w || w->exited()) continue;
      std::ifstream in("/proc/" + std::to_string(w->pid()) + "/stat");
      std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      // The fields after the command's closing parenthesis; utime and stime are the 12th and 13th.
      std::istringstream fields(stat.substr(stat.rfind(')') + 2));
      std::string field;
      unsigned long long utime = 0, stime = 0;
      for (int i = 1; i <= 13 && fields >> field; ++i) {
        if (i == 12) utime = std::stoull(field);
        if (i == 13) stime = std::stoull(field);
      }
      total += double(utime + stime) / double(::sysconf(_SC_CLK_TCK));
    }
    return total;
  }

  std::string pick_hosting_worker() {
    const auto end = steady::now() + wait_limit();
    for (;;) {
      std::vector<std::string> hosting;
      if (auto s = cluster_.status())
        for (const auto& w : s->value("workers", nlohmann::json::array()))
          if (!w["units"].empty()) {
            const auto name = w["name"].get<std::string>();
            if (auto* p = cluster_.worker(name); p && !p->exited()) hosting.push_back(name);
          }
      if (!hosting.empty()) return hosting[std::uniform_int_distribution<std::size_t>(0, hosting.size() - 1)(rng_)];
      if (steady::now() > end) throw std::runtime_error("no worker hosts units");
      sleep_checked(50ms);
    }
  }
  void kill_worker(const std::string& name) {
    cluster_.worker(name)->signal(SIGKILL);
    if (!cluster_.worker(name)->wait_exit(10s)) throw std::runtime_error("worker " + name + " outlived SIGKILL by 10 s");
  }
  // Waits until status lists the workers started here, all of them, unchanged for twice the
  // coordinator's settling time (1 s), so that a job submitted now starts at once on all.
  void wait_settled() {
    std::vector<std::string> want = cluster_.worker_names();
    std::sort(want.begin(), want.end());
    const auto end = steady::now() + wait_limit();
    std::string last;
    auto since = steady::now();
    for (;;) {
      std::vector<std::string> now;
      std::string seen;
      if (auto s = cluster_.status())
        for (const auto& w : s->value("workers", nlohmann::json::array())) {
          now.push_back(w.value("name", ""));
          seen += w.value("name", "") + "@" + w.value("address", "") + " ";
        }
      std::sort(now.begin(), now.end());
      if (seen != last) {
        last = seen;
        since = steady::now();
      }
      if (now == want && steady::now() - since >= 2s) return;
      if (steady::now() > end) throw std::runtime_error("the workers did not settle: the coordinator lists " + last);
      sleep_checked(100ms);
    }
  }
  // Waits until the coordinator has let go of the worker's name (bounded).
  void wait_unlisted(const std::string& name) {
    auto gone = [&](const nlohmann::json& s) {
      for (const auto& w : s.value("workers", nlohmann::json::array()))
        if (w.value("name", "") == name) return false;
      return true;
    };
    auto s = cluster_.wait_status(gone, std::chrono::milliseconds(o_.heartbeat_timeout_ms) + 10s);
    if (!s || !gone(*s)) throw std::runtime_error("the coordinator still lists worker " + name);
  }
  // Runs `strike(victim)` every kill period (a period missed while a strike took longer is
  // skipped) until job `id`, which strike may replace, is finished: the wall time since t0,
  // or nullopt when it did not finish within `limit` (the job is stopped then).
  template <class Strike>
  std::optional<double> every_kill_period(std::string id, steady::time_point t0, std::int64_t steps,
                                          steady::duration limit, Strike strike) {
    const auto period = std::chrono::duration_cast<steady::duration>(std::chrono::duration<double>(o_.kill_period));
    auto next = t0 + period;
    for (;;) {
      auto s = cluster_.status();
      const auto job = s ? job_in(*s, id) : nlohmann::json(nullptr);
      const auto state = job.is_object() ? job.value("state", "") : std::string();
      if (state == "finished") return seconds_since(t0);
      if (state == "failed" || state == "stopped")
        throw std::runtime_error("job " + id + " " + state + ": " + job.value("error", ""));
      if (steady::now() - t0 > limit) {
        cluster_.stop(id);
        cluster_.wait_job_end(id, 30s);
        return std::nullopt;
      }
      if (steady::now() >= next && state == "running" && job.value("step", std::int64_t(0)) < steps) {
        id = strike(pick_hosting_worker());
        next += period;
        if (next < steady::now()) next = steady::now() + period;
      }
      sleep_checked(20ms);
    }
  }

  const recovery_options& o_;
  config c_;
  std::mt19937_64 rng_;
  local_cluster cluster_;
  double step_seconds_ = 0;
};

int run_bench_recovery(recovery_options o) {
  if (o.workers < 2) throw std::invalid_argument("--workers " + std::to_string(o.workers) + ": a kill needs a survivor: at least 2");
  if (o.kills < 0 || o.hangs < 0) throw std::invalid_argument("--kills and --hangs must not be negative");
  if (!(o.kill_period > 0)) throw std::invalid_argument("--kill-period must be more than 0 seconds");
  // Timings only: the shapes matter, not the text.
  config c = load_cluster_job(o.config_path, true);
  validate_config(c);
  interrupt_guard guard;
  const auto dir = (fs::temp_directory_path() / ("glam-bench-recovery-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  std::printf("glam bench recovery %s: %d worker processes, %lld shards, %lld experts, synthetic tokens, heartbeat "
              "timeout %d ms%s  [%s]\n\n",
              c.name.c_str(), o.workers, (long long)c.cluster.shards, (long long)c.model.experts,
              o.heartbeat_timeout_ms,
              o.min_round_ms > 0 ? (", rounds paced at " + std::to_string(o.min_round_ms) + " ms").c_str() : "",
              load_average().c_str());
  std::fflush(stdout);
  try {
    {
      recovery_bench bench(o, c, dir);
      bench.snapshot_overhead();
      bench.detection_and_recovery();
      bench.goodput();
    }
    fs::remove_all(dir);
    return 0;
  } catch (const interrupted_error&) {
    std::fprintf(stderr, "glam bench recovery: interrupted; every process it started was killed\n");
    fs::remove_all(dir);
    return 130;
  } catch (...) {
    std::fprintf(stderr, "glam bench recovery: logs and state kept in %s\n", dir.c_str());
    throw;
  }
}

}  // namespace

void add_bench_recovery_command(CLI::App& bench) {
  auto o = std::make_shared<recovery_options>();
  auto* cmd = bench.add_subcommand(
      "recovery", "Failure detection, recovery time, snapshot overhead and goodput under kills, on real processes");
  cmd->footer(
      "A coordinator and --workers worker processes on 127.0.0.1, synthetic tokens. In order:\n"
      "1. snapshot overhead: --repeats runs of --steps steps with fault.snapshot_every = 1 and with snapshots off,\n"
      "   alternating; the median step time of each (step 0 left out) and their ratio, and the workers' CPU\n"
      "   seconds per step with and without snapshots (load-robust).\n"
      "2. --kills SIGKILLs and --hangs SIGSTOPs of a worker hosting units, one at a time once the job is steady\n"
      "   (snapshot_every = 1): detection = the recovery event's detected_at_ms - the signal's time; restore = the\n"
      "   event's seconds (detection -> every unit hosted and restored); first commit = detection -> the first\n"
      "   step line after the event, as this process saw it appear (polled every 5 ms); that step's own compute\n"
      "   (its line's seconds: the step in flight redone, or the first replayed one) is taken out for the target,\n"
      "   and the replay compute (steps_replayed x the steady step) is shown apart.\n"
      "   A killed worker is started again, a stopped one continued; each rejoins before the next fault.\n"
      "3. goodput: --goodput-steps steps undisturbed; again with a worker killed and restarted every\n"
      "   --kill-period seconds; again with recovery by resubmission (stop the job, restart the worker, submit\n"
      "   again: it resumes from its newest checkpoint; no snapshots). goodput = undisturbed wall / wall; and,\n"
      "   load-robust, (time in committed steps / wall) / the undisturbed run's.\n"
      "Every figure is printed with the load average. --quick: 2 kills, 1 hang, 3 steps, 1 repeat, a kill every\n"
      "3 s (options given explicitly win).");
  cmd->add_option("config", o->config_path, "The job's TOML config (its data is replaced by synthetic tokens)")->required();
  cmd->add_option("--workers", o->workers, "Worker processes")->capture_default_str()->check(CLI::Range(2, 32));
  auto* kills = cmd->add_option("--kills", o->kills, "Workers killed (SIGKILL) for the recovery figures")
                    ->capture_default_str()
                    ->check(CLI::Range(0, 1000));
  auto* hangs = cmd->add_option("--hangs", o->hangs, "Workers stopped (SIGSTOP) past the heartbeat timeout")
                    ->capture_default_str()
                    ->check(CLI::Range(0, 1000));
  auto* steps = cmd->add_option("--steps", o->steps, "Steps of each snapshot-overhead run")
                    ->capture_default_str()
                    ->check(CLI::Range(2, 100000));
  auto* repeats = cmd->add_option("--repeats", o->repeats, "Snapshot-overhead runs of each kind")
                      ->capture_default_str()
                      ->check(CLI::Range(1, 100));
  cmd->add_option("--goodput-steps", o->goodput_steps,
                  "Steps of each goodput run (default: about three kill periods at the steady step time)")
      ->check(CLI::Range(1, 10000000));
  auto* period = cmd->add_option("--kill-period", o->kill_period, "Seconds between kills in the goodput runs")
                     ->capture_default_str();
  cmd->add_option("--checkpoint-every", o->checkpoint_every,
                  "Checkpoint cadence of the goodput runs (default: the config's, else half a kill period)")
      ->check(CLI::Range(1, 10000000));
  cmd->add_option("--heartbeat-timeout-ms", o->heartbeat_timeout_ms, "The coordinator's heartbeat timeout")
      ->capture_default_str()
      ->check(CLI::Range(100, 600000));
  cmd->add_option("--min-round-ms", o->min_round_ms, "Pace rounds (tiny configs, whose steps take no time)")
      ->check(CLI::Range(0, 600000));
  cmd->add_option("--seed", o->seed, "Seed of the victims' draw")->capture_default_str();
  cmd->add_flag("--quick", o->quick, "A short run: fewer kills, steps and repeats");
  cmd->callback([=] {
    auto run = *o;
    if (run.quick) {
      if (kills->count() == 0) run.kills = 2;
      if (hangs->count() == 0) run.hangs = 1;
      if (steps->count() == 0) run.steps = 3;
      if (repeats->count() == 0) run.repeats = 1;
      if (period->count() == 0) run.kill_period = 3;
    }
    const int rc = run_bench_recovery(run);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
