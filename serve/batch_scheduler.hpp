#pragma once
// Continuous batching (docs/serving.md, "How glam serve batches"). The scheduler owns one
// thread that runs the model step after step through an inference_backend. Every step is
// one pass over all running sequences: a sequence admitted since the last step joins it with
// its whole prompt (prefill), the others add one token each (decode). A sequence leaves the
// batch as soon as it is done — the end-of-text token, its max_tokens, the model's seq_len,
// a stop its owner detects in the text (on_token returns stop), or a cancel (the client
// went away) — and a waiting one takes its place at the next step. So a short request
// never waits for a long one, and the experts get the rows of every running sequence of a
// layer in one buffer.
//
// Slots: at most max_admitted sequences are admitted at once (running or waiting); admit()
// refuses a group that does not fit (the HTTP layer answers 429). A sequence holds its slot
// until it finishes or is cancelled: cancel() frees it at once, and the backend's cache at
// the next step boundary. At most max_batch sequences run in one pass; the others wait in
// admission order.
//
// Callbacks run on the scheduler thread, one at a time, and must be quick (format text,
// queue bytes): they are between two steps of every running sequence. None starts after
// cancel() has returned (one already running may finish).
//
// Failures: when the backend reports lost caches, the lost sequences are opened again and
// replay their tokens (generation_state::replay_input and the next input) in the next step;
// sampling draws the n-th token from (seed, n), so the text does not change. When a step
// throws, the requests of its sequences fail (on_finish with an error) and the rest go on.
//
// Legend: V vocabulary.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "actors/prometheus.hpp"
#include "model/generate.hpp"
#include "serve/inference_backend.hpp"

namespace glam {

struct scheduler_options {
  index max_batch = 32;     // sequences in one pass (at most the backend's max_sequences)
  index max_admitted = 64;  // sequences admitted at once: running plus waiting
};

enum class token_verdict { go_on, stop };

// How a sequence ended, given to on_finish.
struct sequence_outcome {
  finish_reason reason = finish_reason::none;  // stop or length; none when it failed
  std::string error;                           // why it failed (not empty only then)
  index prompt_tokens = 0;
  std::vector<std::int32_t> tokens;  // generated, without the end-of-text token
};

struct sequence_job {
  std::vector<std::int32_t> prompt;
  generation_options options;
  // Every generated token (not the end-of-text token), as soon as it is chosen; stop ends
  // the sequence with finish_reason::stop (the token stays in its outcome).
  std::function<token_verdict(std::int32_t token)> on_token;
  // Once, when the sequence ends (not after a cancel).
  std::function<void(const sequence_outcome&)> on_finish;
};

using sequence_ticket = sequence_id;

// Counters since the start, and the state now.
struct scheduler_stats {
  index running = 0, waiting = 0, admitted_now = 0;
  std::int64_t admitted = 0;   // sequences ever admitted
  std::int64_t refused = 0;    // sequences refused for want of slots
  std::int64_t cancelled = 0;  // sequences cancelled before they finished
  std::int64_t finished = 0;   // sequences that finished (stop or length)
  std::int64_t failed = 0;     // sequences whose steps failed
  std::int64_t replayed = 0;   // sequences rebuilt after the backend lost them
  std::int64_t steps = 0;      // steps that ran a pass
  std::int64_t decode_steps = 0;     // of those, passes of one token per sequence
  double decode_step_seconds = 0;    // their total time
  std::int64_t prompt_tokens = 0;    // tokens prefilled (replays not counted)
  std::int64_t generated_tokens = 0; // tokens given to on_token
  histogram_snapshot batch_size;           // sequences per pass
  histogram_snapshot step_seconds;         // time of each step's pass
  histogram_snapshot time_to_first_token;  // seconds from admit to the first token
  histogram_snapshot inter_token;          // seconds between a sequence's tokens
};

class batch_scheduler {
 public:
  // The backend must outlive the scheduler. Starts the scheduler thread.
  batch_scheduler(inference_backend& backend, scheduler_options options);
  ~batch_scheduler();  // stop()
  batch_scheduler(const batch_scheduler&) = delete;
  batch_scheduler& operator=(const batch_scheduler&) = delete;

  const scheduler_options& options() const { return options_; }
  const config& cfg() const { return backend_.cfg(); }

  // Admits every job of the group, or none: nullopt when fewer slots are free than the
  // group needs. Throws inference_error (naming the problem) for a job the model cannot
  // run: an empty prompt, one longer than seq_len, a token outside the vocabulary, bad
  // options. Thread-safe.
  std::optional<std::vector<sequence_ticket>> admit(std::vector<sequence_job> jobs);
  // Ends a sequence that has not finished: its slot is free when this returns, its cache at
  // the next step. No-op for a finished or unknown ticket. Thread-safe.
  void cancel(sequence_ticket ticket);

  // Ends the thread after the step in flight; sequences still admitted get on_finish with
  // an error ("the server is stopping"), on the calling thread. Idempotent.
  void stop();
  bool stopping() const;

  scheduler_stats stats() const;

 private:
  struct sequence;
  void run();
  void finish(sequence& s, sequence_outcome outcome, bool failed);

  inference_backend& backend_;
  scheduler_options options_;

  mutable std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  sequence_ticket next_ticket_ = 1;
  std::map<sequence_ticket, std::shared_ptr<sequence>> live_;  // admitted, not yet closed
  std::deque<sequence_ticket> waiting_;
  std::vector<sequence_ticket> running_;  // in the backend (opened), in join order
  std::vector<sequence_ticket> to_close_;
  index admitted_now_ = 0;  // slots taken
  scheduler_stats counts_;  // the counters (the histograms live below)
  histogram batch_size_, step_seconds_, time_to_first_token_, inter_token_;

  std::thread thread_;
};

}  // namespace glam
