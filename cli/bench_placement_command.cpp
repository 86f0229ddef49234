// `glam bench placement [CONFIG]`: what load-aware placement buys, measured on real
// processes (a coordinator and three worker daemons on loopback, started here) with
// synthetic tokens: one worker slowed by `--slow-factor` (a testing option: its kernel time
// is stretched by that factor) and the router skewed by `testing.router_bias` (most tokens
// to experts 0 and 1). The same job runs with static placement (placement.rebalance_every
// = 0) and with load-aware placement, one after the other on the same cluster; then the
// planner's cost model (coordinator/rebalance.hpp, the one the coordinator decides with)
// predicts the measured case from the static run's load and extrapolates to 64 experts on
// 8, 16 and 64 workers (docs/placement.md, "The benchmark").
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.hpp"
#include "cli/local_cluster.hpp"
#include "configs/config.hpp"
#include "coordinator/placement.hpp"
#include "coordinator/rebalance.hpp"
#include "model/unit_id.hpp"

namespace glam::cli {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

struct placement_options {
  std::string config_path;  // empty: the built-in shape (bench_shape)
  std::int64_t steps = 30;
  double slow_factor = 2;
  double router_bias = 4;
  std::int64_t rebalance_every = 5;
  std::int64_t window = 4;
  int threads = 1;  // per worker process
  bool simulate = true;
};

// The built-in shape: expert compute is most of a step (two MoE layers of 16 wide experts,
// a small vocabulary and no dense FFN layer), so where the experts run sets the step time.
config bench_shape() {
  config c;
  c.name = "bench-placement";
  c.model.vocab_size = 512;
  c.model.layers = 2;
  c.model.d_model = 256;
  c.model.d_ff = 2048;
  c.model.heads = 4;
  c.model.d_head = 64;
  c.model.experts = 16;
  c.model.moe_every = 1;
  c.model.seq_len = 128;
  c.train.batch_per_shard = 4;
  c.cluster.shards = 2;
  c.data.synthetic = true;
  return c;
}

bool is_step(const nlohmann::json& line) { return !line.contains("event") && line.contains("step"); }

double mean_of(const std::vector<double>& v) {
  double sum = 0;
  for (double x : v) sum += x;
  return v.empty() ? 0 : sum / double(v.size());
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : 0.5 * (v[v.size() / 2 - 1] + v[v.size() / 2]);
}

// Mean over max (1: even), of every worker listed (one without work counts 0).
double balancedness_of(const std::map<std::string, double>& seconds) {
  double sum = 0, most = 0;
  for (const auto& [w, t] : seconds) sum += t, most = std::max(most, t);
  return most > 0 ? sum / double(seconds.size()) / most : 0;
}

// What one run left: its metrics and the last load the coordinator showed while it ran.
struct run_record {
  std::vector<nlohmann::json> steps, events;
  nlohmann::json last_job, last_workers;  // from the last status seen while it ran
  std::string load_before, load_after;
};

struct measured_placement {
  std::vector<worker_assignment> units;
  std::vector<worker_capacity> workers;
  std::map<std::string, double> busy;
};

// The placement, sgemm rates and busy seconds of the workers in a status's worker list.
measured_placement placement_of(const nlohmann::json& workers) {
  measured_placement m;
  for (const auto& w : workers) {
    const auto name = w.value("name", "");
    worker_assignment a;
    a.worker = name;
    for (const auto& u : w.value("units", std::vector<std::string>{}))
      if (auto id = unit_id::parse(u)) (id->type == unit_id::kind::shard ? a.shards : a.experts).push_back(id->index);
    m.units.push_back(a);
    m.workers.push_back({name, "127.0.0.1", 0, std::max(w.value("gflops", 1.0), 1e-9), 0});
    if (w.value("busy_seconds_per_step", 0.0) > 0) m.busy[name] = w.value("busy_seconds_per_step", 0.0);
  }
  return m;
}

class placement_bench {
 public:
  placement_bench(const placement_options& o, const config& c, const std::string& dir)
      : o_(o), c_(c), cluster_(cluster_options(o, dir)) {
    for (int i = 0; i < 3; ++i) {
      std::vector<std::string> args;
      if (i == 1) args = {"--slow-factor", std::to_string(o.slow_factor)};
      cluster_.start_worker("w" + std::to_string(i), args);
    }
  }

  run_record run(const std::string& what, std::int64_t rebalance_every) {
    config c = c_;
    c.name = c_.name.substr(0, 40) + "-" + what;
    c.placement.rebalance_every = rebalance_every;
    run_record r;
    r.load_before = load_average();
    const auto id = cluster_.submit(to_toml(c), o_.config_path.empty() ? "bench-placement" : o_.config_path);
    const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(600 + 60 * c.train.steps);
    for (;;) {
      auto s = cluster_.status();
      const auto job = s ? job_in(*s, id) : nlohmann::json(nullptr);
      const auto state = job.is_object() ? job.value("state", "") : std::string();
      if (state == "finished") break;
      if (state == "failed" || state == "stopped")
        throw std::runtime_error("the " + what + " run " + state + ": " + job.value("error", ""));
      if (state == "running" && job.contains("balancedness") && job.value("balancedness", 0.0) > 0) {
        r.last_job = job;
        r.last_workers = (*s)["workers"];
      }
      if (std::chrono::steady_clock::now() > end) throw std::runtime_error("the " + what + " run did not finish in time");
      sleep_checked(200ms);
    }
    r.load_after = load_average();
    for (auto& line : read_metrics_lines(cluster_.metrics_path(id))) {
      if (is_step(line)) r.steps.push_back(line);
      else if (line.value("event", "") == "rebalance") r.events.push_back(line);
    }
    if (r.last_workers.is_null()) throw std::runtime_error("the " + what + " run showed no measured load: raise --steps");
    return r;
  }

 private:
  static local_cluster_options cluster_options(const placement_options& o, const std::string& dir) {
    local_cluster_options lo;
    lo.dir = dir;
    lo.worker_threads = o.threads;
    // The slow worker's --slow-factor and the job's [testing] router_bias are testing
    // options: this cluster is the bench's own (its own state directory and HOME).
    lo.env = {"GLAM_TESTING=1"};
    return lo;
  }

  const placement_options& o_;
  config c_;
  local_cluster cluster_;
};

// Steps from `first` on: their seconds.
std::vector<double> seconds_from(const run_record& r, std::int64_t first) {
  std::vector<double> out;
  for (const auto& l : r.steps)
    if (l["step"].get<std::int64_t>() >= first) out.push_back(l["seconds"].get<double>());
  return out;
}

// The planner's model on a placement whose workers run at `speed` (FLOP/s): the step time
// and balancedness it predicts for that placement, and for the one plan_rebalance proposes.
struct model_prediction {
  double static_seconds = 0, static_balance = 0;
  double aware_seconds = 0, aware_balance = 0;
  bool adopted = false;
  int units_moved = 0;
  std::string why;
};

model_prediction predict(const config& c, const std::vector<worker_assignment>& now,
                         const std::vector<worker_capacity>& workers, const std::map<std::string, double>& busy) {
  model_prediction p;
  const auto d = plan_rebalance(c, now, workers, busy, 100e6);
  if (d.speed.empty()) throw std::runtime_error("the planner had no measured load: " + d.why);
  const unit_work w = unit_work_of(c);
  const auto before = predicted_worker_seconds(now, d.speed, w);
  p.static_seconds = d.predicted_now;
  p.static_balance = balancedness_of(before);
  p.adopted = d.adopt;
  p.units_moved = d.units_moved;
  p.why = d.why;
  if (d.proposed.empty()) {
    p.aware_seconds = p.static_seconds;
    p.aware_balance = p.static_balance;
  } else {
    p.aware_seconds = d.predicted_new;
    p.aware_balance = balancedness_of(predicted_worker_seconds(d.proposed, d.speed, w));
  }
  return p;
}

// 64 experts on `workers` workers, one attention shard each (the tokens per shard as
// measured); every third worker (w1, w4, ...) runs at the slow speed per sgemm GFLOP/s,
// the others at the fast one, all with the same sgemm rate (as here). Static: the
// coordinator's start placement (place_units with every unit weighing the same); load-
// aware: what plan_rebalance proposes from the busy seconds that placement would show.
model_prediction simulate(const config& base, int workers, double gflops, double fast_speed, double slow_speed,
                          int slow_every) {
  config c = base;
  c.model.experts = 64;
  c.cluster.shards = workers;
  std::vector<worker_capacity> caps;
  std::map<std::string, double> speed;
  for (int i = 0; i < workers; ++i) {
    char name[16];
    std::snprintf(name, sizeof name, "w%02d", i);
    caps.push_back({name, "127.0.0.1", 0, gflops, 0});
    speed[name] = gflops * (i % slow_every == 1 % slow_every ? slow_speed : fast_speed);
  }
  const auto now = place_units(caps, c.cluster.shards, c.model.experts, unit_costs_of(c));
  const auto busy = predicted_worker_seconds(now, speed, unit_work_of(c));
  return predict(c, now, caps, busy);
}

int run_bench_placement(const placement_options& o) {
  if (!(o.slow_factor >= 1)) throw std::invalid_argument("--slow-factor must be at least 1");
  if (o.steps < o.rebalance_every + 4)
    throw std::invalid_argument("--steps " + std::to_string(o.steps) + ": at least --rebalance-every + 4 steps are needed");
  config c = o.config_path.empty() ? bench_shape() : load_cluster_job(o.config_path, true);
  if (!c.model.is_moe() || c.model.moe_as_dense_relu)
    throw std::invalid_argument("glam bench placement needs an MoE config (model.experts >= 2)");
  c.train.steps = o.steps;
  c.train.eval_every = 0;
  c.data.synthetic = true;
  c.placement.window = o.window;
  validate_config(c);  // before the testing option, which this process does not need to allow
  c.testing.router_bias = o.router_bias;
  interrupt_guard guard;
  const auto dir = (fs::temp_directory_path() / ("glam-bench-placement-" + std::to_string(::getpid()))).string();
  fs::remove_all(dir);
  const auto plan_units = unit_work_of(c);
  std::printf("glam bench placement %s: 3 worker processes (%d compute thread%s each), w1 slowed %.2fx "
              "(--slow-factor), router bias %.2f on experts 0 and 1 (testing.router_bias); %lld shards, %lld experts, "
              "%lld steps, synthetic tokens; model work per step: a shard %.3g FLOP, an expert %.3g FLOP  [%s]\n",
              c.name.c_str(), o.threads, o.threads == 1 ? "" : "s", o.slow_factor, o.router_bias,
              (long long)c.cluster.shards, (long long)c.model.experts, (long long)o.steps, plan_units.shard_flops,
              plan_units.expert_flops, load_average().c_str());
  std::fflush(stdout);
  run_record fixed, aware;
  try {
    placement_bench bench(o, c, dir);
    fixed = bench.run("static", 0);
    std::printf("static run done  [%s -> %s]\n", fixed.load_before.c_str(), fixed.load_after.c_str());
    std::fflush(stdout);
    aware = bench.run("load-aware", o.rebalance_every);
    std::printf("load-aware run done  [%s -> %s]\n\n", aware.load_before.c_str(), aware.load_after.c_str());
  } catch (const interrupted_error&) {
    std::fprintf(stderr, "glam bench placement: interrupted; every process it started was killed\n");
    fs::remove_all(dir);
    return 130;
  } catch (...) {
    std::fprintf(stderr, "glam bench placement: logs and state kept in %s\n", dir.c_str());
    throw;
  }
  fs::remove_all(dir);

  // The routing the skew gave (the static run's tokens per expert, kept after capacity).
  std::vector<double> routed(static_cast<std::size_t>(c.model.experts), 0);
  double kept = 0, dropped = 0;
  for (const auto& l : fixed.steps) {
    const auto t = l["tokens_per_expert"].get<std::vector<double>>();
    for (std::size_t e = 0; e < t.size() && e < routed.size(); ++e) routed[e] += t[e], kept += t[e];
    dropped += l.value("dropped", 0.0);
  }
  std::printf("routing (static run, all steps): experts 0 and 1 kept %.1f %% of the kept (token, expert) pairs; "
              "%.1f %% of the 2 choices per token were dropped for capacity\n",
              kept > 0 ? 100 * (routed[0] + routed[1]) / kept : 0.0,
              kept + dropped > 0 ? 100 * dropped / (kept + dropped) : 0.0);

  bool same = fixed.steps.size() == aware.steps.size();
  for (std::size_t i = 0; same && i < fixed.steps.size(); ++i)
    same = fixed.steps[i]["loss"].get<double>() == aware.steps[i]["loss"].get<double>();
  std::printf("per-step losses of the two runs: %s (%zu steps)\n", same ? "equal bit for bit" : "DIFFERENT",
              fixed.steps.size());

  if (aware.events.empty()) {
    std::printf("the load-aware run did not rebalance: nothing to compare (see the coordinator's reasons in its log)\n");
    return 1;
  }
  // Timed: the steps from the one after the first rebalance's first step on, in both runs.
  const std::int64_t first = aware.events.front().value("from_step", std::int64_t(0)) + 1;
  const auto t_fixed = seconds_from(fixed, first), t_aware = seconds_from(aware, first);
  if (t_fixed.empty() || t_aware.empty()) throw std::runtime_error("no step after the first rebalance: raise --steps");
  const double m_fixed = mean_of(t_fixed), m_aware = mean_of(t_aware);
  double move_seconds = 0, move_bytes = 0;
  int moved = 0;
  for (const auto& e : aware.events) {
    move_seconds += e.value("seconds", 0.0);
    move_bytes += e.value("bytes", 0.0);
    moved += e.value("units_moved", 0);
  }
  const double b_fixed = fixed.last_job.value("balancedness", 0.0), b_aware = aware.last_job.value("balancedness", 0.0);
  std::printf("step time, mean over steps %lld..%lld (from the second step on the first rebalanced placement; "
              "the same steps in both runs):\n",
              (long long)first, (long long)(o.steps - 1));
  std::printf("  static:     %.4f s (median %.4f)   balancedness %.3f (its last %lld-step window)\n", m_fixed,
              median_of(t_fixed), b_fixed, (long long)o.window);
  std::printf("  load-aware: %.4f s (median %.4f)   balancedness %.3f (its last %lld-step window)  [target >= 0.9]\n",
              m_aware, median_of(t_aware), b_aware, (long long)o.window);
  std::printf("  static / load-aware step time: %.3f (medians %.3f)  [target >= 1.3]\n", m_fixed / m_aware,
              median_of(t_fixed) / median_of(t_aware));
  std::printf("  rebalances: %zu, %d units moved, %.1f MB, %.3f s in all; amortised over the run's %lld steps: "
              "%.2f %% of the load-aware step  [target <= 1 %%]; over placement.payback_steps = %lld steps per move: "
              "%.2f %%\n",
              aware.events.size(), moved, move_bytes / 1e6, move_seconds, (long long)o.steps,
              100 * move_seconds / double(o.steps) / m_aware, (long long)c.placement.payback_steps,
              100 * move_seconds / double(aware.events.size()) / double(c.placement.payback_steps) / m_aware);
  std::printf("  %s (before the static run) -> %s (after the load-aware run)\n\n", fixed.load_before.c_str(),
              aware.load_after.c_str());
  std::fflush(stdout);
  if (!o.simulate) return 0;

  // The planner's model against the measured case: from the static run's load alone.
  const auto m = placement_of(fixed.last_workers);
  const auto p = predict(c, m.units, m.workers, m.busy);
  std::printf("the planner's model, from the static run's busy seconds (last window):\n");
  std::printf("  predicted static %.4f s, balancedness %.3f;  load-aware %.4f s, balancedness %.3f;  ratio %.3f "
              "(%s: %s)\n",
              p.static_seconds, p.static_balance, p.aware_seconds, p.aware_balance,
              p.aware_seconds > 0 ? p.static_seconds / p.aware_seconds : 0.0, p.adopted ? "adopted" : "not adopted",
              p.why.c_str());
  std::printf("  measured  static %.4f s, balancedness %.3f;  load-aware %.4f s, balancedness %.3f;  ratio %.3f\n",
              m_fixed, b_fixed, m_aware, b_aware, m_fixed / m_aware);
  // The speeds the model measured, per sgemm GFLOP/s: the slowed worker's and the others'.
  const auto d = plan_rebalance(c, m.units, m.workers, m.busy, 100e6);
  double fast = 0, slow = 0, gflops = 0;
  int fast_n = 0;
  for (const auto& k : m.workers) {
    gflops += k.gflops / double(m.workers.size());
    const double per_gflop = d.speed.at(k.name) / k.gflops;
    if (k.name == "w1") slow = per_gflop;
    else fast += per_gflop, ++fast_n;
  }
  fast /= std::max(fast_n, 1);
  std::printf("  measured speed: w1 %.3g FLOP/s per sgemm GFLOP/s, the others %.3g (ratio %.2f; --slow-factor %.2f)\n\n",
              slow, fast, fast / slow, o.slow_factor);

  std::printf("simulation, 64 experts, one shard per worker (%lld tokens each), every worker the measured mean sgemm "
              "rate (%.1f GFLOP/s); slow workers at w1's measured speed, the others at the rest's; the planner's model:\n",
              (long long)(c.train.batch_per_shard * c.model.seq_len), gflops);
  std::printf("  %-8s %-12s %12s %9s %12s %9s %8s %7s %s\n", "workers", "slow", "static s", "balanced", "aware s",
              "balanced", "ratio", "moved", "policy");
  for (int slow_every : {3, 0}) {
    for (int workers : {8, 16, 64}) {
      // slow_every 0: one slow worker (w01).
      const int every = slow_every == 0 ? workers + 1 : slow_every;
      const auto s = simulate(c, workers, gflops, fast, slow, every);
      const int slow_count = slow_every == 0 ? 1 : (workers + 1) / 3;
      std::printf("  %-8d %-12s %12.4f %9.3f %12.4f %9.3f %8.3f %7d %s\n", workers,
                  (std::to_string(slow_count) + (slow_every == 0 ? " (one)" : " (1 in 3)")).c_str(), s.static_seconds,
                  s.static_balance, s.aware_seconds, s.aware_balance, s.static_seconds / s.aware_seconds,
                  s.units_moved, s.adopted ? "adopted" : "not adopted");
    }
  }
  std::printf("  (an expert computes its full capacity whatever the router sends it, so the skewed token counts "
              "do not weigh in the model: the trace's per-expert shares map to 64 experts as expert e of 64 taking "
              "a %lld-th of recorded expert floor(e * %lld / 64)'s share, and change no cost)\n",
              (long long)std::max<std::int64_t>(1, 64 / c.model.experts), (long long)c.model.experts);
  std::printf("%s\n", load_average().c_str());
  return 0;
}

}  // namespace

void add_bench_placement_command(CLI::App& bench) {
  auto o = std::make_shared<placement_options>();
  auto* cmd = bench.add_subcommand(
      "placement", "Static against load-aware placement on 3 real worker processes (one slowed, router skewed), "
                   "and the planner's model past one machine");
  cmd->footer(
      "A coordinator and 3 worker processes on 127.0.0.1, synthetic tokens; w1 runs with --slow-factor and the job\n"
      "with testing.router_bias (both testing options, allowed for this bench's own processes). The same job runs\n"
      "with placement.rebalance_every = 0 (static) and then = --rebalance-every (load-aware, window --window).\n"
      "Printed: the mean step time over the steps from the second on the first rebalanced placement (the same steps\n"
      "in both runs), balancedness over each run's last window, their ratio, the migration's seconds amortised as a\n"
      "share of the step, the load average; then the planner's cost model predicting the measured case from the\n"
      "static run's load, and 64 experts on 8, 16 and 64 workers. Without CONFIG: a built-in shape where expert\n"
      "compute is most of the step (2 MoE layers, 16 experts, d_model 256, d_ff 2048, 2 shards of 4 x 128 tokens).");
  cmd->add_option("config", o->config_path, "An MoE job's TOML config (its data replaced by synthetic tokens)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--steps", o->steps, "Steps of each run")->capture_default_str()->check(CLI::Range(6, 100000));
  cmd->add_option("--slow-factor", o->slow_factor, "w1's kernel time is stretched by this factor")
      ->capture_default_str()
      ->check(CLI::Range(1.0, 100.0));
  cmd->add_option("--router-bias", o->router_bias, "Added to the gate logits of experts 0 and 1")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 100.0));
  cmd->add_option("--rebalance-every", o->rebalance_every, "placement.rebalance_every of the load-aware run")
      ->capture_default_str()
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--window", o->window, "placement.window of both runs")->capture_default_str()->check(CLI::Range(1, 1000));
  cmd->add_option("--threads", o->threads, "Compute threads per worker process")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  cmd->add_flag("!--no-simulate", o->simulate, "Skip the planner's predictions");
  cmd->callback([o] {
    const int rc = run_bench_placement(*o);
    if (rc != 0) throw CLI::RuntimeError(rc);
  });
}

}  // namespace glam::cli
