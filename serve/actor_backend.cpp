#include "serve/actor_backend.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <thread>

#include <caf/all.hpp>
#include <spdlog/spdlog.h>

#include "actors/errors.hpp"
#include "model/unit_id.hpp"

namespace glam {

namespace {

// A call can take as long as a prefill of a big batch; a worker's death fails it at once
// (the coordinator fails the calls in flight to a lost worker).
constexpr std::chrono::seconds call_timeout{300};
// Loading the units again after a worker died: detection, then reading the checkpoint.
constexpr std::chrono::seconds session_timeout{300};
// Attempts of one step before it fails (each after the session is whole again).
constexpr int max_attempts = 8;

// A call that failed: the coordinator's or the worker's error.
struct call_failure : std::runtime_error {
  call_failure(const std::string& what, bool bad_request) : std::runtime_error(what), bad_request(bad_request) {}
  bool bad_request;
};

bool is_glam(const caf::error& e, glam_errc code) {
  return e.category() == glam_error_category && e.code() == static_cast<std::uint8_t>(code);
}

}  // namespace

actor_backend::actor_backend(caf::actor_system& sys, coordinator_actor coordinator, const inference_checkpoint& ck,
                             std::string where, index max_sequences)
    : sys_(sys),
      coordinator_(std::move(coordinator)),
      self_(std::make_unique<caf::scoped_actor>(sys)),
      cfg_(ck.cfg),
      where_(std::move(where)),
      max_sequences_(max_sequences) {
  infer_assignment spec;
  spec.checkpoint = std::filesystem::absolute(checkpoint_dir_for(ck.root, ck.manifest.step)).lexically_normal().string();
  spec.step = ck.manifest.step;
  spec.config_hash = ck.manifest.config_hash;
  spec.max_sequences = max_sequences;
  spec.experts = ck.cfg.model.experts;
  std::string failure;
  (*self_)
      ->request(coordinator_, session_timeout, infer_start_atom::value, spec)
      .receive([&](infer_assignment& v) { view_ = std::move(v); }, [&](const caf::error& e) { failure = error_text(e); });
  if (!failure.empty()) throw inference_backend_error("cannot start a serving session on " + where_ + ": " + failure);
}

actor_backend::~actor_backend() {
  if (!view_.session.empty()) (*self_)->send(coordinator_, infer_end_atom::value, view_.session);
}

std::string actor_backend::describe() const {
  std::map<std::string, std::vector<std::string>> by_worker;
  for (std::size_t i = 0; i < view_.units.size() && i < view_.workers.size(); ++i)
    by_worker[view_.workers[i]].push_back(view_.units[i]);
  std::string out = "actor runtime (" + where_ + ", session " + view_.session + ":";
  for (const auto& [worker, units] : by_worker) {
    out += " " + worker + " [";
    for (std::size_t i = 0; i < units.size(); ++i) out += (i ? " " : "") + units[i];
    out += "]";
  }
  return out + ")";
}

infer_request actor_backend::request(const std::string& unit, infer_op op) const {
  infer_request r;
  r.session = view_.session;
  r.unit = unit;
  r.op = static_cast<std::int32_t>(op);
  return r;
}

infer_reply actor_backend::call(infer_request r) {
  infer_reply out;
  std::string failure;
  bool bad = false;
  const std::string what = std::string(to_string(static_cast<infer_op>(r.op))) + " on " + r.unit;
  (*self_)
      ->request(coordinator_, call_timeout, infer_atom::value, std::move(r))
      .receive([&](infer_reply& x) { out = std::move(x); },
               [&](const caf::error& e) {
                 failure = error_text(e);
                 bad = is_glam(e, glam_errc::bad_request);
               });
  if (!failure.empty()) throw call_failure(what + ": " + failure, bad);
  return out;
}

// The whole of a stage's tensor: its first part, then the rest read part by part.
tensor actor_backend::whole_tensor(const infer_reply& first, const std::string& unit) {
  for (index d : first.data.shape)
    if (d < 0 || d > max_tensor_floats) throw call_failure("a malformed tensor from " + unit, true);
  tensor t(first.data.shape);
  const std::int64_t total = t.size();
  if (first.data.offset != 0 || static_cast<std::int64_t>(first.data.data.size()) > total)
    throw call_failure("a malformed tensor part from " + unit, true);
  std::copy(first.data.data.begin(), first.data.data.end(), t.data.begin());
  std::int64_t got = static_cast<std::int64_t>(first.data.data.size());
  while (got < total) {
    auto r = request(unit, infer_op::read);
    r.offset = got;
    r.count = std::min<std::int64_t>(total - got, max_chunk_floats);
    const infer_reply part = call(std::move(r));
    if (part.data.offset != got || part.data.data.empty() ||
        got + static_cast<std::int64_t>(part.data.data.size()) > total)
      throw call_failure("a malformed tensor part from " + unit, true);
    std::copy(part.data.data.begin(), part.data.data.end(), t.data.begin() + got);
    got += static_cast<std::int64_t>(part.data.data.size());
  }
  return t;
}

tensor actor_backend::run_pass(const std::vector<pass_item>& items) {
  const std::string shard = unit_id::shard(0).name();
  const index M = cfg_.model.d_model, E = cfg_.model.experts;
  auto begin = request(shard, infer_op::begin);
  begin.items = items;
  infer_reply stage = call(std::move(begin));
  for (;;) {
    tensor whole = whole_tensor(stage, shard);
    if (stage.stage == 2) return whole;
    if (stage.stage != 1 || whole.rank() != 2 || whole.cols() != M ||
        stage.counts.size() != static_cast<std::size_t>(E) || stage.offset.size() != static_cast<std::size_t>(E + 1) ||
        stage.offset[static_cast<std::size_t>(E)] != whole.rows())
      throw call_failure("a malformed exchange from " + shard, true);
    // Every expert's rows at once, in parts of at most max_chunk_floats (rows are
    // independent: a part gives the bits the whole would).
    const index rows_per_part = std::max<index>(1, max_chunk_floats / M);
    struct part {
      index first_row, rows;
    };
    std::vector<part> parts;
    std::vector<decltype((*self_)->request(coordinator_, call_timeout, infer_atom::value, infer_request{}))> pending;
    for (index e = 0; e < E; ++e) {
      const index at = stage.offset[static_cast<std::size_t>(e)], n = stage.counts[static_cast<std::size_t>(e)];
      if (n < 0 || at < 0 || at + n > whole.rows()) throw call_failure("a malformed exchange from " + shard, true);
      for (index r0 = 0; r0 < n; r0 += rows_per_part) {
        const index len = std::min(rows_per_part, n - r0);
        auto r = request(unit_id::expert(e).name(), infer_op::expert);
        r.moe = stage.moe;
        r.data.shape = {len, M};
        r.data.data.assign(whole.ptr() + (at + r0) * M, whole.ptr() + (at + r0 + len) * M);
        parts.push_back({at + r0, len});
        pending.push_back((*self_)->request(coordinator_, call_timeout, infer_atom::value, std::move(r)));
      }
    }
    tensor outputs(whole.shape);
    std::string failure;
    bool bad = false;
    for (std::size_t i = 0; i < pending.size(); ++i)
      pending[i].receive(
          [&](infer_reply& x) {
            if (!failure.empty()) return;
            if (x.data.data.size() != static_cast<std::size_t>(parts[i].rows * M)) {
              failure = "an expert answered with " + std::to_string(x.data.data.size()) + " floats for " +
                        std::to_string(parts[i].rows) + " rows";
              bad = true;
              return;
            }
            std::memcpy(outputs.ptr() + parts[i].first_row * M, x.data.data.data(), x.data.data.size() * sizeof(float));
          },
          [&](const caf::error& e) {
            if (!failure.empty()) return;
            failure = "expert call: " + error_text(e);
            bad = is_glam(e, glam_errc::bad_request);
          });
    if (!failure.empty()) throw call_failure(failure, bad);
    // The outputs back to the shard: parts, the last one with the resume.
    std::int64_t sent = 0;
    const std::int64_t total = outputs.size();
    for (;;) {
      const bool last = total - sent <= max_chunk_floats;
      auto r = request(shard, last ? infer_op::resume : infer_op::write);
      r.data = block_of(outputs, sent);
      sent += static_cast<std::int64_t>(r.data.data.size());
      if (last) {
        stage = call(std::move(r));
        break;
      }
      call(std::move(r));
    }
  }
}

void actor_backend::wait_for_session() {
  std::string failure;
  (*self_)
      ->request(coordinator_, session_timeout, infer_wait_atom::value, view_.session)
      .receive([&](infer_assignment& v) { view_ = std::move(v); }, [&](const caf::error& e) { failure = error_text(e); });
  if (!failure.empty()) throw inference_backend_error("the serving session on " + where_ + " cannot go on: " + failure);
}

step_result actor_backend::run_step(const step_request& request_in) {
  const std::string shard = unit_id::shard(0).name();
  bool prepared = request_in.close.empty() && request_in.open.empty();
  // The sequences the shard holds once this step's closes and opens are done.
  std::set<sequence_id> after = open_;
  for (auto id : request_in.close) after.erase(id);
  for (auto id : request_in.open) after.insert(id);
  for (int attempt = 1;; ++attempt) {
    try {
      if (!prepared) {
        auto r = request(shard, infer_op::prepare);
        r.close = request_in.close;
        r.open = request_in.open;
        call(std::move(r));
        open_ = after;
        prepared = true;
      }
      step_result result;
      if (!request_in.items.empty()) result.logits = run_pass(request_in.items);
      return result;
    } catch (const call_failure& f) {
      const std::int64_t shard_generation = view_.generations.empty() ? 0 : view_.generations.front();
      const auto generations = view_.generations;
      spdlog::warn("serve: {}; waiting for the session's units", f.what());
      wait_for_session();
      // Nothing moved yet: the coordinator may not have noticed the death (a stopped worker
      // is noticed by its missing heartbeats). Back off before the next attempt.
      if (view_.generations == generations && !f.bad_request)
        std::this_thread::sleep_for(std::chrono::milliseconds(std::min(100 << std::min(attempt - 1, 6), 5000)));
      if (!view_.generations.empty() && view_.generations.front() != shard_generation) {
        // The shard was placed again: its caches are gone. Every sequence is reported lost
        // (the scheduler opens them again and replays them); those this step's prepare may
        // have opened on the new shard are closed first.
        ++shards_lost_;
        step_result result;
        result.lost.assign(after.begin(), after.end());
        open_.clear();
        auto r = request(shard, infer_op::prepare);
        r.close = result.lost;
        try {
          call(std::move(r));
        } catch (const call_failure& g) {
          throw inference_backend_error("the shard placed again does not answer: " + std::string(g.what()));
        }
        spdlog::warn("serve: the shard was placed again; {} sequences replay", result.lost.size());
        return result;
      }
      // The shard kept its caches: drop the pass in flight, and run it again.
      try {
        call(request(shard, infer_op::abort));
      } catch (const call_failure&) {
      }
      if (f.bad_request || attempt >= max_attempts)
        throw inference_backend_error(std::string(f.what()) +
                                      (f.bad_request ? "" : " (" + std::to_string(attempt) + " attempts)"));
      ++passes_repeated_;
    }
  }
}

}  // namespace glam
