// The batch scheduler over the real in-process backend, step by step through a gate:
// continuous batching (a request joins at the next step and leaves when done, every running
// sequence is in every pass, a short request finishes while a long one runs), every
// completion equal to the same request generated alone (the strongest check: batching and
// replays change nothing), slots (bounded, freed at once by a cancel), failures (lost caches
// are replayed to the same text; a failing step fails only its requests).
#include <gtest/gtest.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>

#include "serve/batch_scheduler.hpp"
#include "serve_testing.hpp"

namespace glam {
namespace {

using namespace serve_testing;

// What the callbacks of one sequence saw.
struct record {
  std::mutex mutex;
  std::vector<std::int32_t> tokens;
  std::optional<sequence_outcome> outcome;
  int finishes = 0;
  // Stop after this many tokens (the owner's stop rule); 0: never.
  std::size_t stop_after = 0;

  bool finished() {
    std::lock_guard<std::mutex> lock(mutex);
    return outcome.has_value();
  }
  std::size_t count() {
    std::lock_guard<std::mutex> lock(mutex);
    return tokens.size();
  }
};

struct request_spec {
  std::vector<std::int32_t> prompt;
  generation_options options;
};

sequence_job job_for(const request_spec& r, const std::shared_ptr<record>& rec) {
  sequence_job j;
  j.prompt = r.prompt;
  j.options = r.options;
  j.on_token = [rec](std::int32_t t) {
    std::lock_guard<std::mutex> lock(rec->mutex);
    rec->tokens.push_back(t);
    return rec->stop_after > 0 && rec->tokens.size() >= rec->stop_after ? token_verdict::stop : token_verdict::go_on;
  };
  j.on_finish = [rec](const sequence_outcome& o) {
    std::lock_guard<std::mutex> lock(rec->mutex);
    rec->outcome = o;
    ++rec->finishes;
  };
  return j;
}

generation_options options(index max_tokens, double temperature, std::uint64_t seed, double top_p = 1.0,
                           std::int32_t stop_token = -1) {
  generation_options o;
  o.max_tokens = max_tokens;
  o.sampling.temperature = temperature;
  o.sampling.top_p = top_p;
  o.sampling.seed = seed;
  o.stop_token = stop_token;
  return o;
}

std::vector<std::int32_t> prompt_of(index length, std::int32_t first) {
  std::vector<std::int32_t> p;
  for (index i = 0; i < length; ++i) p.push_back((first + std::int32_t(i) * 7) % 96);
  return p;
}

class SchedulerTest : public ::testing::Test {
 protected:
  SchedulerTest() : cfg_(small_model_config()), inner_(make_model(cfg_)), alone_(make_model(cfg_)), gate_(inner_) {}

  // The same request generated alone, by the reference.
  generation_result alone(const request_spec& r) { return generate(alone_, r.prompt, r.options); }

  config cfg_;
  reference_backend inner_;
  reference_inference alone_;
  gated_backend gate_;
};

// Requests of different lengths and sampling options join a running batch at different
// steps and leave at different steps; each one's tokens and finish reason equal the same
// request generated alone, and every pass holds every running sequence.
TEST_F(SchedulerTest, BatchedCompletionsEqualEachAloneAndJoinAtTheNextStep) {
  const std::vector<request_spec> specs = {
      {prompt_of(5, 3), options(30, 1.0, 7)},
      {prompt_of(1, 50), options(12, 0.0, 0)},             // greedy, a one-token prompt
      {prompt_of(17, 11), options(25, 0.8, 99, 0.9)},      // nucleus
      {prompt_of(40, 5), options(40, 1.2, 3)},             // runs into seq_len
      {prompt_of(3, 70), options(8, 1.0, 7, 1.0, 4)},      // a stop token (end of text) that may come
      {prompt_of(9, 20), options(2, 1.0, 12345)},
  };
  batch_scheduler s(gate_, {8, 16});
  std::vector<std::shared_ptr<record>> recs;
  std::vector<sequence_ticket> tickets;
  // Admitted in three waves, a few steps apart.
  const std::vector<std::vector<std::size_t>> waves = {{0, 1}, {2, 3}, {4, 5}};
  for (std::size_t w = 0; w < waves.size(); ++w) {
    std::vector<sequence_job> jobs;
    for (std::size_t i : waves[w]) {
      recs.push_back(std::make_shared<record>());
      jobs.push_back(job_for(specs[i], recs.back()));
    }
    auto t = s.admit(std::move(jobs));
    ASSERT_TRUE(t.has_value());
    tickets.insert(tickets.end(), t->begin(), t->end());
    if (w == 0) {
      ASSERT_TRUE(gate_.wait_arrived(1));
    }
    ASSERT_TRUE(gate_.advance(3));
  }
  gate_.open();
  for (auto& r : recs) ASSERT_TRUE(wait_for([&] { return r->finished(); }));

  for (std::size_t i = 0; i < specs.size(); ++i) {
    const generation_result want = alone(specs[i]);
    EXPECT_EQ(recs[i]->tokens, want.tokens) << "request " << i;
    ASSERT_TRUE(recs[i]->outcome.has_value());
    EXPECT_EQ(recs[i]->outcome->tokens, want.tokens) << "request " << i;
    EXPECT_EQ(recs[i]->outcome->reason, want.reason) << "request " << i;
    EXPECT_EQ(recs[i]->outcome->error, "");
    EXPECT_EQ(recs[i]->finishes, 1);
  }

  // The steps: each wave joins (open + its whole prompt) at the first step assembled after
  // it was admitted (the scheduler waits at the gate with the next step assembled: waves 2
  // and 3 join at steps 4 and 7), the others decode one token each, and a finished sequence
  // is closed at the next step.
  const auto steps = gate_.requests();
  ASSERT_GE(steps.size(), 8u);
  EXPECT_EQ(steps[0].open, (std::vector<sequence_id>{tickets[0], tickets[1]}));
  EXPECT_EQ(steps[4].open, (std::vector<sequence_id>{tickets[2], tickets[3]}));
  EXPECT_EQ(steps[7].open, (std::vector<sequence_id>{tickets[4], tickets[5]}));
  std::set<sequence_id> open, closed;
  for (std::size_t k = 0; k < steps.size(); ++k) {
    for (auto id : steps[k].close) {
      EXPECT_TRUE(open.count(id)) << "step " << k << " closes " << id;
      open.erase(id);
      closed.insert(id);
    }
    for (auto id : steps[k].open) open.insert(id);
    // Every open sequence is in the pass: nothing waits while there is room.
    EXPECT_EQ(steps[k].items.size(), open.size()) << "step " << k;
    for (const auto& item : steps[k].items) {
      EXPECT_TRUE(open.count(item.sequence)) << "step " << k;
      const bool joins = std::count(steps[k].open.begin(), steps[k].open.end(), item.sequence) > 0;
      if (!joins) {
        EXPECT_EQ(item.tokens.size(), 1u) << "step " << k << ": a running sequence decodes one token";
      }
    }
  }
  EXPECT_TRUE(open.empty());
  EXPECT_EQ(closed.size(), specs.size());
  const scheduler_stats st = s.stats();
  EXPECT_EQ(st.finished, 6);
  EXPECT_EQ(st.admitted_now, 0);
  EXPECT_EQ(st.running + st.waiting, 0);
}

// A short request admitted while a long one runs joins at the next step and finishes
// after its own tokens, while the long one is still running; the long one's text is the
// same as alone.
TEST_F(SchedulerTest, AShortRequestFinishesWhileALongOneRuns) {
  batch_scheduler s(gate_, {4, 4});
  const request_spec long_spec{prompt_of(4, 9), options(40, 1.0, 5)};
  const request_spec short_spec{prompt_of(6, 31), options(3, 1.0, 6)};
  auto long_rec = std::make_shared<record>(), short_rec = std::make_shared<record>();
  ASSERT_TRUE(s.admit({job_for(long_spec, long_rec)}));
  ASSERT_TRUE(gate_.wait_arrived(1));
  ASSERT_TRUE(gate_.advance(5));
  EXPECT_EQ(long_rec->count(), 5u);
  ASSERT_TRUE(s.admit({job_for(short_spec, short_rec)}));
  // Step 5 was assembled before it came: it joins at step 6, where its prefill gives its
  // first token; steps 7 and 8 give the next two.
  ASSERT_TRUE(gate_.advance(3));
  EXPECT_EQ(short_rec->count(), 2u);
  EXPECT_FALSE(short_rec->finished());
  ASSERT_TRUE(gate_.advance(1));
  ASSERT_TRUE(short_rec->finished());
  EXPECT_EQ(short_rec->outcome->reason, finish_reason::length);
  EXPECT_EQ(short_rec->tokens, alone(short_spec).tokens);
  EXPECT_EQ(long_rec->count(), 9u);
  EXPECT_FALSE(long_rec->finished());
  // Those three passes held both sequences: the experts got both sequences' rows at once.
  const auto steps = gate_.requests();
  ASSERT_EQ(steps.size(), 9u);
  EXPECT_EQ(steps[5].items.size(), 1u);
  for (std::size_t k = 6; k < 9; ++k) EXPECT_EQ(steps[k].items.size(), 2u) << "step " << k;
  gate_.open();
  ASSERT_TRUE(wait_for([&] { return long_rec->finished(); }));
  EXPECT_EQ(long_rec->tokens, alone(long_spec).tokens);
}

// max_batch bounds a pass; the others wait, in admission order, and take the place of one
// that finishes at the next step.
TEST_F(SchedulerTest, MaxBatchBoundsAPassAndTheRestWaitInOrder) {
  batch_scheduler s(gate_, {2, 8});
  std::vector<request_spec> specs = {{prompt_of(3, 1), options(2, 1.0, 1)},
                                     {prompt_of(3, 2), options(6, 1.0, 2)},
                                     {prompt_of(3, 3), options(3, 1.0, 3)}};
  std::vector<std::shared_ptr<record>> recs;
  std::vector<sequence_job> jobs;
  for (const auto& sp : specs) {
    recs.push_back(std::make_shared<record>());
    jobs.push_back(job_for(sp, recs.back()));
  }
  auto tickets = s.admit(std::move(jobs));
  ASSERT_TRUE(tickets);
  ASSERT_TRUE(gate_.wait_arrived(1));
  EXPECT_EQ(s.stats().waiting, 1);
  ASSERT_TRUE(gate_.advance(2));
  ASSERT_TRUE(recs[0]->finished());
  gate_.open();
  for (auto& r : recs) ASSERT_TRUE(wait_for([&] { return r->finished(); }));
  const auto steps = gate_.requests();
  for (const auto& st : steps) EXPECT_LE(st.items.size(), 2u);
  // The third joins at step 2, the step that closes the first.
  ASSERT_GE(steps.size(), 3u);
  EXPECT_EQ(steps[2].close, std::vector<sequence_id>{(*tickets)[0]});
  EXPECT_EQ(steps[2].open, std::vector<sequence_id>{(*tickets)[2]});
  for (std::size_t i = 0; i < specs.size(); ++i) EXPECT_EQ(recs[i]->tokens, alone(specs[i]).tokens) << i;
}

// Slots bound the sequences admitted at once; a group is admitted whole or not at all; a
// cancel frees its slot before any step runs, its cache at the next step, and it gets no
// callback after that.
TEST_F(SchedulerTest, SlotsAreBoundedAndACancelFreesOneAtOnce) {
  batch_scheduler s(gate_, {4, 3});
  auto a = std::make_shared<record>(), b = std::make_shared<record>(), c = std::make_shared<record>();
  const request_spec spec{prompt_of(4, 1), options(20, 1.0, 1)};
  auto ta = s.admit({job_for(spec, a), job_for(spec, b)});
  ASSERT_TRUE(ta);
  ASSERT_TRUE(gate_.wait_arrived(1));
  ASSERT_TRUE(gate_.advance(2));
  // Two slots taken: a group of two does not fit, and takes nothing.
  EXPECT_FALSE(s.admit({job_for(spec, c), job_for(spec, c)}));
  EXPECT_EQ(s.stats().refused, 2);
  EXPECT_EQ(s.stats().admitted_now, 2);
  auto tc = s.admit({job_for(spec, c)});
  ASSERT_TRUE(tc);
  EXPECT_FALSE(s.admit({job_for(spec, c)}));
  // A cancel frees a slot at once, with the gate still closed.
  s.cancel((*ta)[0]);
  EXPECT_EQ(s.stats().admitted_now, 2);
  auto d = std::make_shared<record>();
  auto td = s.admit({job_for(spec, d)});
  ASSERT_TRUE(td);
  // Cancelling a waiting sequence: it never reaches the backend.
  s.cancel((*td)[0]);
  s.cancel((*td)[0]);  // twice is a no-op
  s.cancel(987654);    // unknown: a no-op
  EXPECT_EQ(s.stats().admitted_now, 2);
  const std::size_t a_tokens = a->count();
  EXPECT_EQ(a_tokens, 2u);
  // Step 2 was assembled before the cancel and runs with it; its token is not given out,
  // and step 3 closes its cache.
  gate_.open();
  ASSERT_TRUE(wait_for([&] { return b->finished() && c->finished(); }));
  const auto steps = gate_.requests();
  ASSERT_GE(steps.size(), 4u);
  EXPECT_EQ(steps[3].close, std::vector<sequence_id>{(*ta)[0]});
  for (const auto& st : steps)
    for (const auto& item : st.items) EXPECT_NE(item.sequence, (*td)[0]);
  EXPECT_EQ(a->count(), a_tokens);
  EXPECT_FALSE(a->finished());
  EXPECT_FALSE(d->finished());
  EXPECT_EQ(d->count(), 0u);
  EXPECT_EQ(s.stats().cancelled, 2);
  EXPECT_TRUE(wait_for([&] { return s.stats().admitted_now == 0; }));
}

// The owner's stop (a stop string found in the text) ends the sequence at that token.
TEST_F(SchedulerTest, TheOwnersStopEndsTheSequence) {
  batch_scheduler s(inner_, {4, 4});
  auto r = std::make_shared<record>();
  r->stop_after = 4;
  const request_spec spec{prompt_of(4, 2), options(30, 1.0, 4)};
  ASSERT_TRUE(s.admit({job_for(spec, r)}));
  ASSERT_TRUE(wait_for([&] { return r->finished(); }));
  EXPECT_EQ(r->outcome->reason, finish_reason::stop);
  const auto want = alone(spec).tokens;
  EXPECT_EQ(r->outcome->tokens, std::vector<std::int32_t>(want.begin(), want.begin() + 4));
}

// A backend that loses caches (a shard's process died) at a given step: it closes the
// sequences in the real backend and reports them lost, as the actor backend will.
class losing_backend : public inference_backend {
 public:
  losing_backend(reference_backend& inner, int lose_at, bool lose_all) : inner_(inner), lose_at_(lose_at), lose_all_(lose_all) {}
  const config& cfg() const override { return inner_.cfg(); }
  index max_sequences() const override { return inner_.max_sequences(); }
  std::string describe() const override { return "losing " + inner_.describe(); }
  step_result run_step(const step_request& r) override {
    if (step_++ != lose_at_ || r.items.empty()) return inner_.run_step(r);
    // The step's closes and opens happen; then the shard is lost with what it held.
    step_request housekeeping = r;
    housekeeping.items.clear();
    inner_.run_step(housekeeping);
    step_result lost;
    for (std::size_t i = 0; i < r.items.size(); ++i)
      if (lose_all_ || i % 2 == 0) lost.lost.push_back(r.items[i].sequence);
    step_request drop;
    drop.close = lost.lost;
    inner_.run_step(drop);
    return lost;
  }

 private:
  reference_backend& inner_;
  int lose_at_, step_ = 0;
  bool lose_all_;
};

struct lose_case {
  const char* name;
  int lose_at;
  bool lose_all;
};

class SchedulerReplay : public SchedulerTest, public ::testing::WithParamInterface<lose_case> {};

// Lost caches are rebuilt from the prompt and the tokens generated so far, and the
// completions come out the same as alone: the backend's bits do not depend on how a cache
// was filled, and the n-th draw depends on (seed, n) only.
TEST_P(SchedulerReplay, LostCachesAreReplayedToTheSameText) {
  losing_backend losing(inner_, GetParam().lose_at, GetParam().lose_all);
  batch_scheduler s(losing, {8, 8});
  const std::vector<request_spec> specs = {{prompt_of(5, 3), options(20, 1.0, 7)},
                                           {prompt_of(2, 40), options(15, 0.0, 0)},
                                           {prompt_of(11, 8), options(18, 0.9, 8, 0.95)}};
  std::vector<std::shared_ptr<record>> recs;
  std::vector<sequence_job> jobs;
  for (const auto& sp : specs) {
    recs.push_back(std::make_shared<record>());
    jobs.push_back(job_for(sp, recs.back()));
  }
  ASSERT_TRUE(s.admit(std::move(jobs)));
  for (auto& r : recs) ASSERT_TRUE(wait_for([&] { return r->finished(); }));
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const auto want = alone(specs[i]);
    EXPECT_EQ(recs[i]->tokens, want.tokens) << i;
    EXPECT_EQ(recs[i]->outcome->reason, want.reason) << i;
  }
  EXPECT_EQ(s.stats().replayed, GetParam().lose_all ? 3 : 2);
}

INSTANTIATE_TEST_SUITE_P(Table, SchedulerReplay,
                         ::testing::Values(lose_case{"AtThePrefill", 0, true}, lose_case{"MidDecodeAll", 6, true},
                                           lose_case{"MidDecodeSome", 9, false}),
                         [](const auto& info) { return std::string(info.param.name); });

// A backend whose step throws: the requests of that step fail with the reason, and the
// scheduler goes on serving the next ones.
class failing_backend : public inference_backend {
 public:
  failing_backend(reference_backend& inner, int fail_at) : inner_(inner), fail_at_(fail_at) {}
  const config& cfg() const override { return inner_.cfg(); }
  index max_sequences() const override { return inner_.max_sequences(); }
  std::string describe() const override { return "failing " + inner_.describe(); }
  step_result run_step(const step_request& r) override {
    if (step_++ == fail_at_) {
      step_request housekeeping = r;
      housekeeping.items.clear();
      inner_.run_step(housekeeping);
      throw inference_backend_error("no worker can host expert 2 (test)");
    }
    return inner_.run_step(r);
  }

 private:
  reference_backend& inner_;
  int fail_at_, step_ = 0;
};

TEST_F(SchedulerTest, AFailingStepFailsItsRequestsAndTheRestGoOn) {
  failing_backend failing(inner_, 3);
  batch_scheduler s(failing, {8, 8});
  auto a = std::make_shared<record>(), b = std::make_shared<record>();
  ASSERT_TRUE(s.admit({job_for({prompt_of(4, 1), options(10, 1.0, 1)}, a), job_for({prompt_of(4, 2), options(10, 1.0, 2)}, b)}));
  ASSERT_TRUE(wait_for([&] { return a->finished() && b->finished(); }));
  for (auto* r : {a.get(), b.get()}) {
    EXPECT_NE(r->outcome->error.find("no worker can host expert 2"), std::string::npos) << r->outcome->error;
    EXPECT_EQ(r->outcome->reason, finish_reason::none);
    EXPECT_EQ(r->tokens.size(), 3u);
  }
  EXPECT_EQ(s.stats().failed, 2);
  auto c = std::make_shared<record>();
  const request_spec spec{prompt_of(6, 5), options(9, 1.0, 3)};
  ASSERT_TRUE(s.admit({job_for(spec, c)}));
  ASSERT_TRUE(wait_for([&] { return c->finished(); }));
  EXPECT_EQ(c->outcome->error, "");
  EXPECT_EQ(c->tokens, alone(spec).tokens);
}

// A job the model cannot run is refused by admit(), naming the problem, before any slot is
// taken; so is a whole group with one bad job.
TEST_F(SchedulerTest, BadJobsAreRefusedBeforeAnySlotIsTaken) {
  batch_scheduler s(inner_, {4, 4});
  auto r = std::make_shared<record>();
  const auto message = [&](std::vector<std::int32_t> prompt, generation_options o) -> std::string {
    try {
      s.admit({job_for({prompt_of(3, 1), options(3, 1, 1)}, r), job_for({std::move(prompt), o}, r)});
    } catch (const inference_error& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_NE(message({}, options(4, 1, 1)).find("empty"), std::string::npos);
  EXPECT_NE(message(prompt_of(49, 1), options(4, 1, 1)).find("seq_len = 48"), std::string::npos);
  EXPECT_NE(message({5, 96}, options(4, 1, 1)).find("outside the vocabulary"), std::string::npos);
  EXPECT_NE(message({5}, options(0, 1, 1)).find("max_tokens"), std::string::npos);
  EXPECT_NE(message({5}, options(4, -1, 1)).find("temperature"), std::string::npos);
  EXPECT_EQ(s.stats().admitted_now, 0);
  EXPECT_EQ(s.stats().admitted, 0);
}

// stop() ends the thread; what is still admitted gets on_finish with an error.
TEST_F(SchedulerTest, StopFailsWhatIsLeft) {
  auto s = std::make_unique<batch_scheduler>(gate_, scheduler_options{1, 4});
  auto a = std::make_shared<record>(), b = std::make_shared<record>();
  const request_spec spec{prompt_of(3, 1), options(30, 1.0, 1)};
  ASSERT_TRUE(s->admit({job_for(spec, a), job_for(spec, b)}));
  ASSERT_TRUE(gate_.wait_arrived(1));
  ASSERT_TRUE(gate_.advance(1));
  // stop() waits for the step in flight (held at the gate): let it end once stop() has begun.
  std::thread stopper([&] { s->stop(); });
  EXPECT_TRUE(wait_for([&] { return s->stopping(); }));
  gate_.open();
  stopper.join();
  EXPECT_EQ(a->count(), 2u);
  for (auto* r : {a.get(), b.get()}) {
    ASSERT_TRUE(r->finished());
    EXPECT_NE(r->outcome->error.find("stopping"), std::string::npos);
  }
  EXPECT_FALSE(s->admit({job_for(spec, a)}));
  s.reset();
}

}  // namespace
}  // namespace glam
