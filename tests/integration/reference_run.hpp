#pragma once
// What a job must compute, bit for bit, whatever happened to the processes that ran it: the
// single-process reference trainer's per-step losses, skip decisions, validation losses and
// final parameters, and the checks of a job's metrics and final checkpoint against them.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "configs/config.hpp"
#include "model/checkpoint.hpp"
#include "model/train_step.hpp"

namespace glam::test {

struct reference_run {
  std::vector<float> loss;
  std::vector<bool> skipped;
  std::map<std::int64_t, double> val_loss;
  param_set dense;                 // final parameters
  std::vector<param_set> experts;
};

// The first `steps` steps (default: the job's).
inline reference_run run_reference(const config& c, std::int64_t steps = -1) {
  synthetic_source data(c);
  reference_trainer t(c, data);
  reference_run out;
  for (std::int64_t k = 0; k < (steps < 0 ? c.train.steps : steps); ++k) {
    auto m = t.train_step(k);
    out.loss.push_back(m.loss.loss);
    out.skipped.push_back(m.skipped);
    if (c.train.eval_every > 0 && (k + 1) % c.train.eval_every == 0)
      out.val_loss[k] = t.evaluate(c.train.eval_batches);
  }
  out.dense = t.shards().front().params();
  for (const auto& e : t.experts()) out.experts.push_back(e.params());
  return out;
}

// Every step line of a job's metrics against the reference, from its first step on (event
// lines, of recoveries and migrations, are not steps); returns the number of step lines.
inline std::int64_t expect_metrics_equal(const std::string& path, const reference_run& want) {
  std::ifstream metrics(path);
  std::string line;
  std::int64_t n = 0, k = -1;
  while (std::getline(metrics, line)) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("event")) continue;
    if (k < 0) k = j["step"].get<std::int64_t>();
    EXPECT_EQ(j["step"].get<std::int64_t>(), k) << "a committed step is missing or repeated";
    const float loss = static_cast<float>(j["loss"].get<double>());
    EXPECT_EQ(std::memcmp(&loss, &want.loss.at(std::size_t(k)), sizeof loss), 0)
        << "step " << k << ": " << loss << " vs " << want.loss.at(std::size_t(k));
    EXPECT_EQ(j["skipped"].get<bool>(), bool(want.skipped.at(std::size_t(k))));
    if (want.val_loss.count(k)) {
      EXPECT_EQ(j["val_loss"].get<double>(), want.val_loss.at(k)) << "step " << k;
    }
    ++k;
    ++n;
  }
  return n;
}

// The kinds of the event lines of a job's metrics, in order.
inline std::vector<std::string> metrics_events(const std::string& path) {
  std::ifstream metrics(path);
  std::vector<std::string> out;
  for (std::string line; std::getline(metrics, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains("event")) out.push_back(j["event"].get<std::string>());
  }
  return out;
}

// The final checkpoint's unit files hold the reference's final parameters, bit for bit.
inline void expect_final_parameters_equal(const std::string& root, const config& c, const reference_run& want) {
  auto m = latest_valid_checkpoint(root, c);
  ASSERT_TRUE(m.has_value()) << "no checkpoint in " << root;
  EXPECT_EQ(m->step, c.train.steps);
  param_set dense = init_dense_params(c.model, c.train.seed);
  optimizer_state opt;
  opt.init(dense);
  read_unit_file(root, m->step, *m->find(dense_state_name()), dense, opt);
  EXPECT_TRUE(bitwise_equal(dense, want.dense)) << "dense parameters";
  for (index e = 0; e < c.model.experts; ++e) {
    param_set p = init_expert_params(c.model, e, c.train.seed);
    optimizer_state o;
    o.init(p);
    read_unit_file(root, m->step, *m->find(unit_id::expert(e).name()), p, o);
    EXPECT_TRUE(bitwise_equal(p, want.experts[std::size_t(e)])) << "expert " << e;
  }
}

}  // namespace glam::test
