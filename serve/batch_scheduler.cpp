#include "serve/batch_scheduler.hpp"

#include <algorithm>
#include <utility>

#include <spdlog/spdlog.h>

#include "kernels/check.hpp"

namespace glam {

namespace {

using clock_type = std::chrono::steady_clock;

double seconds_between(clock_type::time_point a, clock_type::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

std::vector<double> batch_size_bounds() { return {1, 2, 4, 8, 16, 32, 64, 128, 256}; }

}  // namespace

// A sequence's fields marked (lock) are read and written under mutex_; the others belong
// to the scheduler thread (and to admit(), before the sequence is shared).
struct batch_scheduler::sequence {
  sequence(sequence_ticket t, sequence_job j, const model_config& m)
      : ticket(t), state(j.prompt, j.options, m), job(std::move(j)) {}

  sequence_ticket ticket;
  generation_state state;
  sequence_job job;
  bool cancelled = false;  // (lock)
  bool done = false;       // (lock) finished or failed: on_finish was or is being called
  bool needs_open = true;  // open a fresh cache in the next step
  bool replay = false;     // the cache was lost: the next step feeds every token again
  clock_type::time_point admitted_at, last_token_at;
  bool any_token = false;

  // The tokens of the next pass: the next input, after what rebuilds a lost cache.
  std::vector<std::int32_t> input() const {
    std::vector<std::int32_t> next = state.next_input();
    if (!replay || state.generated().empty()) return next;  // nothing sampled yet: the prompt
    std::vector<std::int32_t> all = state.replay_input();
    all.insert(all.end(), next.begin(), next.end());
    return all;
  }
};

batch_scheduler::batch_scheduler(inference_backend& backend, scheduler_options options)
    : backend_(backend),
      options_(options),
      batch_size_(batch_size_bounds()),
      step_seconds_(histogram::exponential_bounds(0.0005, 2, 16)),
      time_to_first_token_(histogram::exponential_bounds(0.001, 2, 16)),
      inter_token_(histogram::exponential_bounds(0.0005, 2, 16)) {
  if (options_.max_batch < 1)
    throw std::invalid_argument("max_batch = " + std::to_string(options_.max_batch) + ": allow at least 1 sequence per pass");
  if (options_.max_admitted < 1)
    throw std::invalid_argument("max_admitted = " + std::to_string(options_.max_admitted) +
                                ": allow at least 1 sequence at once");
  options_.max_batch = std::min(options_.max_batch, backend_.max_sequences());
  thread_ = std::thread([this] { run(); });
}

batch_scheduler::~batch_scheduler() { stop(); }

std::optional<std::vector<sequence_ticket>> batch_scheduler::admit(std::vector<sequence_job> jobs) {
  const auto now = clock_type::now();
  // Checked before any slot is taken; generation_state names the problem.
  std::vector<std::shared_ptr<sequence>> made;
  made.reserve(jobs.size());
  for (auto& j : jobs) made.push_back(std::make_shared<sequence>(0, std::move(j), cfg().model));

  std::lock_guard<std::mutex> lock(mutex_);
  const index n = static_cast<index>(made.size());
  if (stopping_ || admitted_now_ + n > options_.max_admitted) {
    counts_.refused += n;
    return std::nullopt;
  }
  std::vector<sequence_ticket> tickets;
  for (auto& s : made) {
    s->ticket = next_ticket_++;
    s->admitted_at = now;
    tickets.push_back(s->ticket);
    counts_.prompt_tokens += static_cast<std::int64_t>(s->state.prompt().size());
    waiting_.push_back(s->ticket);
    live_.emplace(s->ticket, std::move(s));
  }
  admitted_now_ += n;
  counts_.admitted += n;
  wake_.notify_one();
  return tickets;
}

void batch_scheduler::cancel(sequence_ticket ticket) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto it = live_.find(ticket);
  if (it == live_.end() || it->second->done || it->second->cancelled) return;
  it->second->cancelled = true;
  --admitted_now_;
  ++counts_.cancelled;
  auto w = std::find(waiting_.begin(), waiting_.end(), ticket);
  if (w != waiting_.end()) {
    // Never reached the backend: nothing to close.
    waiting_.erase(w);
    live_.erase(it);
  }
  // A running one leaves the batch at the next step boundary (run()).
  wake_.notify_one();
}

void batch_scheduler::finish(sequence& s, sequence_outcome outcome, bool failed) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (s.cancelled || s.done) return;
    s.done = true;
    --admitted_now_;
    ++(failed ? counts_.failed : counts_.finished);
    running_.erase(std::remove(running_.begin(), running_.end(), s.ticket), running_.end());
    to_close_.push_back(s.ticket);
    live_.erase(s.ticket);  // the caller holds its own reference
  }
  if (!s.job.on_finish) return;
  try {
    s.job.on_finish(outcome);
  } catch (const std::exception& e) {
    spdlog::error("serve: a sequence's on_finish threw: {}", e.what());
  }
}

void batch_scheduler::run() {
  std::unique_lock<std::mutex> lock(mutex_);
  for (;;) {
    wake_.wait(lock, [&] { return stopping_ || !waiting_.empty() || !running_.empty() || !to_close_.empty(); });
    if (stopping_) return;

    // Leavers: sequences cancelled since the last step.
    for (auto it = running_.begin(); it != running_.end();) {
      auto found = live_.find(*it);
      if (found != live_.end() && found->second->cancelled) {
        to_close_.push_back(*it);
        live_.erase(found);
        it = running_.erase(it);
      } else {
        ++it;
      }
    }
    // Joiners, in admission order.
    while (static_cast<index>(running_.size()) < options_.max_batch && !waiting_.empty()) {
      running_.push_back(waiting_.front());
      waiting_.pop_front();
    }

    step_request request;
    request.close.swap(to_close_);
    std::vector<std::shared_ptr<sequence>> batch;
    bool decode_only = true;
    for (sequence_ticket t : running_) {
      auto& s = live_.at(t);
      batch.push_back(s);
      if (s->needs_open) {
        request.open.push_back(t);
        s->needs_open = false;
      }
      request.items.push_back(pass_item{t, s->input()});
      decode_only = decode_only && request.items.back().tokens.size() == 1;
    }
    lock.unlock();

    const auto start = clock_type::now();
    step_result result;
    std::string error;
    try {
      result = backend_.run_step(request);
      const index V = cfg().model.vocab_size;
      if (result.lost.empty() && !request.items.empty() &&
          result.logits.shape != std::vector<index>{static_cast<index>(request.items.size()), V})
        error = "the inference backend returned logits of the wrong shape (a bug in the backend)";
    } catch (const std::exception& e) {
      error = e.what();
    }
    const auto end = clock_type::now();

    if (!error.empty()) {
      spdlog::error("serve: a step of {} sequences failed: {}", batch.size(), error);
      for (auto& s : batch) {
        sequence_outcome o;
        o.error = "inference failed: " + error;
        o.prompt_tokens = static_cast<index>(s->state.prompt().size());
        o.tokens = s->state.generated();
        finish(*s, std::move(o), true);
      }
      lock.lock();
      continue;
    }
    if (!result.lost.empty()) {
      // The pass did not happen; the lost sequences rebuild their caches in the next step.
      for (sequence_id id : result.lost)
        for (auto& s : batch)
          if (s->ticket == id && !s->needs_open) {
            s->needs_open = true;
            s->replay = true;
          }
      lock.lock();
      counts_.replayed += static_cast<std::int64_t>(result.lost.size());
      continue;
    }
    if (!request.items.empty()) {
      batch_size_.observe(double(request.items.size()));
      step_seconds_.observe(seconds_between(start, end));
    }

    const index V = cfg().model.vocab_size;
    std::int64_t tokens_given = 0;
    for (std::size_t i = 0; i < batch.size(); ++i) {
      sequence& s = *batch[i];
      s.replay = false;
      {
        std::lock_guard<std::mutex> guard(mutex_);
        if (s.cancelled) continue;
      }
      sequence_outcome o;
      o.prompt_tokens = static_cast<index>(s.state.prompt().size());
      bool stopped_by_owner = false;
      try {
        const std::int32_t token = s.state.take(result.logits.ptr() + static_cast<index>(i) * V);
        if (s.state.reason() != finish_reason::stop) {
          const auto now = clock_type::now();
          if (s.any_token)
            inter_token_.observe(seconds_between(s.last_token_at, now));
          else
            time_to_first_token_.observe(seconds_between(s.admitted_at, now));
          s.any_token = true;
          s.last_token_at = now;
          ++tokens_given;
          if (s.job.on_token && s.job.on_token(token) == token_verdict::stop) stopped_by_owner = true;
        }
      } catch (const std::exception& e) {
        o.error = e.what();
        o.tokens = s.state.generated();
        finish(s, std::move(o), true);
        continue;
      }
      if (stopped_by_owner || s.state.finished()) {
        o.reason = stopped_by_owner ? finish_reason::stop : s.state.reason();
        o.tokens = s.state.generated();
        finish(s, std::move(o), false);
      }
    }

    lock.lock();
    if (!request.items.empty()) {
      ++counts_.steps;
      if (decode_only) {
        ++counts_.decode_steps;
        counts_.decode_step_seconds += seconds_between(start, end);
      }
    }
    counts_.generated_tokens += tokens_given;
  }
}

void batch_scheduler::stop() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
  // What is still admitted will never run.
  std::vector<std::shared_ptr<sequence>> left;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    for (auto& [ticket, s] : live_)
      if (!s->cancelled && !s->done) left.push_back(s);
  }
  for (auto& s : left) {
    sequence_outcome o;
    o.error = "the server is stopping";
    o.prompt_tokens = static_cast<index>(s->state.prompt().size());
    o.tokens = s->state.generated();
    finish(*s, std::move(o), true);
  }
}

bool batch_scheduler::stopping() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stopping_;
}

scheduler_stats batch_scheduler::stats() const {
  scheduler_stats s;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    s = counts_;
    for (sequence_ticket t : running_) {
      auto it = live_.find(t);
      if (it != live_.end() && !it->second->cancelled) ++s.running;
    }
    s.waiting = static_cast<index>(waiting_.size());
    s.admitted_now = admitted_now_;
  }
  s.batch_size = batch_size_.snapshot();
  s.step_seconds = step_seconds_.snapshot();
  s.time_to_first_token = time_to_first_token_.snapshot();
  s.inter_token = inter_token_.snapshot();
  return s;
}

}  // namespace glam
