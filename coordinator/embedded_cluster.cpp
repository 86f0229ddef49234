#include "coordinator/embedded_cluster.hpp"

#include <cstdlib>
#include <filesystem>
#include <future>

#include <caf/all.hpp>

#include "actors/errors.hpp"
#include "actors/runtime_config.hpp"
#include "actors/security.hpp"
#include "coordinator/coordinator_actor.hpp"
#include "worker/worker_actor.hpp"

namespace glam {
namespace {

// Spawns n workers ("worker-<i>") that reach each other by local messages and registers
// them with the coordinator, in order; returns why one could not register (empty: none).
std::string start_workers(caf::actor_system& sys, const coordinator_actor& coordinator, const std::string& secret,
                          int n, double sgemm_flops, std::vector<worker_actor>& workers) {
  auto local_peers = std::make_shared<std::map<std::string, worker_actor>>();
  for (int i = 0; i < n; ++i) {
    worker_options wo;
    wo.name = "worker-" + std::to_string(i);
    wo.secret = secret;
    wo.listen_host = "embedded";
    wo.local_peers = local_peers;
    // One process run by the user with its own config: any path it names is its own.
    wo.data_root = "/";
    wo.checkpoint_root = "/";
    if (sgemm_flops > 0) wo.gflops = sgemm_flops / 1e9;
    workers.push_back(sys.spawn(worker_behavior, wo));
    (*local_peers)[wo.name] = workers.back();
  }
  caf::scoped_actor self{sys};
  // Embedded workers are reached by local messages; their "port" is their number.
  std::string failure;
  for (std::size_t i = 0; i < workers.size() && failure.empty(); ++i)
    self->request(workers[i], std::chrono::seconds(30), register_atom::value, coordinator,
                  static_cast<std::uint16_t>(i + 1))
        .receive([&](const std::string&) {}, [&](const caf::error& e) { failure = error_text(e); });
  return failure;
}

}  // namespace

job_record run_embedded_job(const std::string& config_toml, const std::string& source, const embedded_options& o) {
  if (o.workers < 1) throw std::invalid_argument("--workers " + std::to_string(o.workers) + ": give at least 1");
  runtime_options ro;
  runtime_config cfg(ro);
  caf::actor_system sys{cfg};
  const auto secret = random_hex(32);

  std::promise<job_record> ended;
  auto ended_once = std::make_shared<std::once_flag>();
  coordinator_options co;
  co.state_dir = o.state_dir;
  co.secret = secret;
  co.listen = "embedded";
  co.sgemm_flops = o.sgemm_flops;
  co.inject_nonfinite_step = o.inject_nonfinite_step;
  co.on_step = o.on_step;
  co.log_steps = !o.on_step;
  co.job_checkpoint_dir = o.checkpoint_root;
  co.settle = std::chrono::milliseconds(0);  // every worker registers before the submit
  co.checkpoints = !o.checkpoint_root.empty();
  co.resume = o.resume;
  co.on_job_end = [&ended, ended_once](const job_record& j) {
    std::call_once(*ended_once, [&] { ended.set_value(j); });
  };
  auto coordinator = sys.spawn(coordinator_behavior, co);

  std::vector<worker_actor> workers;
  std::string failure = start_workers(sys, coordinator, secret, o.workers, o.sgemm_flops, workers);
  caf::scoped_actor self{sys};
  auto shutdown = [&] {
    for (auto& w : workers) self->send_exit(w, caf::exit_reason::user_shutdown);
    self->send_exit(coordinator, caf::exit_reason::user_shutdown);
  };
  std::string refused;
  if (failure.empty())
    self->request(coordinator, std::chrono::seconds(30), submit_atom::value, config_toml, source)
        .receive([&](const std::string&) {}, [&](const caf::error& e) { refused = error_text(e); });
  if (!failure.empty() || !refused.empty()) {
    shutdown();
    throw std::runtime_error(failure.empty() ? "job refused: " + refused
                                             : "an embedded worker could not register: " + failure);
  }
  job_record result = ended.get_future().get();
  shutdown();
  return result;
}

embedded_cluster::embedded_cluster(int workers) {
  if (workers < 1) throw std::invalid_argument("--workers " + std::to_string(workers) + ": give at least 1");
  std::string pattern = (std::filesystem::temp_directory_path() / "glam-embedded-XXXXXX").string();
  if (!::mkdtemp(pattern.data())) throw std::runtime_error("cannot make a scratch directory under " + pattern);
  state_dir_ = pattern;
  runtime_options ro;
  cfg_ = std::make_unique<runtime_config>(ro);
  sys_ = std::make_unique<caf::actor_system>(*cfg_);
  const auto secret = random_hex(32);
  coordinator_options co;
  co.state_dir = state_dir_;
  co.secret = secret;
  co.listen = "embedded";
  co.settle = std::chrono::milliseconds(0);
  co.checkpoints = false;
  co.log_steps = false;
  coordinator_ = sys_->spawn(coordinator_behavior, co);
  if (auto failure = start_workers(*sys_, coordinator_, secret, workers, 0, workers_); !failure.empty()) {
    stop();
    throw std::runtime_error("an embedded worker could not register: " + failure);
  }
}

embedded_cluster::~embedded_cluster() { stop(); }

void embedded_cluster::stop() {
  if (sys_) {
    caf::scoped_actor self{*sys_};
    for (auto& w : workers_) self->send_exit(w, caf::exit_reason::user_shutdown);
    if (coordinator_) self->send_exit(coordinator_, caf::exit_reason::user_shutdown);
  }
  workers_.clear();
  coordinator_ = nullptr;
  sys_.reset();
  cfg_.reset();
  std::error_code ec;
  if (!state_dir_.empty()) std::filesystem::remove_all(state_dir_, ec);
  state_dir_.clear();
}

}  // namespace glam
