// The completions server over real HTTP on 127.0.0.1 (port 0), serving a glam-tiny trained
// on real text: the API's shapes (OpenAI's), streaming, continuous batching (a short request
// finishes while a long one streams; with a seed, every completion is the text it has when
// run alone), every limit and bad input (the status, and an OpenAI error naming the field),
// the slot a leaving client frees at once, the API key, and /metrics through a strict parser.
// Steps run through a gate where timing would otherwise matter; every wait is bounded.
#include <gtest/gtest.h>

#include <memory>
#include <optional>
#include <thread>

#include <nlohmann/json.hpp>

#include "data/tokenizer.hpp"
#include "prometheus_parser_testing.hpp"
#include "serve/completions_server.hpp"
#include "serve_testing.hpp"

namespace glam {
namespace {

using namespace serve_testing;
using json = nlohmann::json;

class ServeHttp : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = trained_glam_tiny();
    ck_ = find_checkpoint(model_.checkpoint);
    tok_ = std::make_unique<tokenizer>(tokenizer::load(model_.tokenizer));
    // Two models: a server's scheduler is the only user of its backend.
    backend_ = reference_backend::from_checkpoint(ck_);
    gated_inner_ = reference_backend::from_checkpoint(ck_);
    gate_ = std::make_unique<gated_backend>(*gated_inner_);
  }
  void TearDown() override {
    // Servers first: they stop their schedulers, which may be waiting at the gate.
    if (gate_) gate_->open();
    servers_.clear();
  }

  completions_server& start(inference_backend& backend, serve_options o = {}) {
    servers_.push_back(std::make_unique<completions_server>(backend, *tok_, o));
    servers_.back()->start();
    return *servers_.back();
  }
  completions_server& start_plain(serve_options o = {}) { return start(*backend_, o); }
  completions_server& start_gated(serve_options o = {}) { return start(*gate_, o); }

  static json completion_body(const std::string& prompt, json extra = json::object()) {
    json b = {{"model", "glam-tiny"}, {"prompt", prompt}};
    for (auto& [k, v] : extra.items()) b[k] = v;
    return b;
  }
  static std::optional<http_reply> post(int port, const json& body, const std::string& extra = "") {
    return fetch(port, post_request("/v1/completions", body.dump(), extra));
  }
  // The text of a non-streamed completion (the first choice), checked to be a 200.
  static std::string text_of(int port, const json& body) {
    auto r = post(port, body);
    if (!r || r->status != 200) {
      ADD_FAILURE() << "completion failed: " << (r ? r->body : "no reply");
      return "";
    }
    return json::parse(r->body)["choices"][0]["text"].get<std::string>();
  }

  trained_model model_;
  inference_checkpoint ck_;
  std::unique_ptr<tokenizer> tok_;
  std::unique_ptr<reference_backend> backend_, gated_inner_;
  std::unique_ptr<gated_backend> gate_;
  std::vector<std::unique_ptr<completions_server>> servers_;
};

// Reads a stream's events to the end: the text, the events and what the last ones said.
struct streamed {
  std::vector<json> chunks;  // every event but [DONE]
  std::string text;
  int token_events = 0;      // chunks with finish_reason null
  std::string finish_reason;
  bool done = false;         // ended with [DONE]
};

streamed read_stream(http_client& c) {
  streamed s;
  while (auto e = c.read_event()) {
    if (*e == "[DONE]") {
      s.done = true;
      continue;
    }
    json j = json::parse(*e);
    s.chunks.push_back(j);
    for (const auto& choice : j["choices"]) {
      s.text += choice["text"].get<std::string>();
      if (choice["finish_reason"].is_null())
        ++s.token_events;
      else
        s.finish_reason = choice["finish_reason"].get<std::string>();
    }
  }
  return s;
}

TEST_F(ServeHttp, ACompletionHasOpenAIsShapeAndTheModelsText) {
  auto& server = start_plain();
  EXPECT_EQ(server.host(), "127.0.0.1");  // loopback unless told otherwise
  const std::string prompt = "The meaning of life is";
  auto r = post(server.port(), completion_body(prompt, {{"max_tokens", 10}, {"temperature", 0}}));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->header("content-type"), "application/json");
  const json j = json::parse(r->body);
  EXPECT_EQ(j["id"].get<std::string>().rfind("cmpl-", 0), 0u) << j;
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_TRUE(j["created"].is_number_integer());
  EXPECT_EQ(j["model"], "glam-tiny");
  ASSERT_EQ(j["choices"].size(), 1u);
  const json& c = j["choices"][0];
  EXPECT_EQ(c["index"], 0);
  EXPECT_TRUE(c["logprobs"].is_null());
  EXPECT_TRUE(c["finish_reason"] == "stop" || c["finish_reason"] == "length") << c;

  // The text and the counts are the model's: greedy decoding by the reference generate.
  reference_inference reference = reference_inference::from_checkpoint(ck_);
  generation_options g;
  g.max_tokens = 10;
  g.sampling.temperature = 0;
  g.stop_token = tok_->eos_id();
  const std::vector<std::int32_t> prompt_tokens = tok_->encode(prompt);
  const generation_result want = generate(reference, prompt_tokens, g);
  EXPECT_EQ(c["text"], tok_->decode(want.tokens));
  EXPECT_EQ(c["finish_reason"], to_string(want.reason));
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens.size());
  EXPECT_EQ(j["usage"]["completion_tokens"], want.tokens.size());
  EXPECT_EQ(j["usage"]["total_tokens"], prompt_tokens.size() + want.tokens.size());
}

TEST_F(ServeHttp, AListOfPromptsGivesOneChoiceEachAsIfAlone) {
  auto& server = start_plain();
  const std::vector<std::string> prompts = {"Q: Why", "A computer is", "Never"};
  const json options = {{"max_tokens", 9}, {"temperature", 1.0}, {"seed", 42}};
  json body = completion_body("", options);
  body["prompt"] = prompts;
  auto r = post(server.port(), body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["choices"].size(), prompts.size());
  int prompt_tokens = 0, completion_tokens = 0;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    EXPECT_EQ(j["choices"][i]["index"], i);
    // Each prompt is a sequence of its own with the request's seed: the text it has alone.
    const auto alone = post(server.port(), completion_body(prompts[i], options));
    ASSERT_TRUE(alone);
    const json a = json::parse(alone->body);
    EXPECT_EQ(j["choices"][i]["text"], a["choices"][0]["text"]) << i;
    prompt_tokens += a["usage"]["prompt_tokens"].get<int>();
    completion_tokens += a["usage"]["completion_tokens"].get<int>();
  }
  EXPECT_EQ(j["usage"]["prompt_tokens"], prompt_tokens);
  EXPECT_EQ(j["usage"]["completion_tokens"], completion_tokens);
}

TEST_F(ServeHttp, ModelsHealthAndOtherRoutes) {
  auto& server = start_plain();
  auto models = fetch(server.port(), get_request("/v1/models"));
  ASSERT_TRUE(models);
  ASSERT_EQ(models->status, 200);
  const json m = json::parse(models->body);
  EXPECT_EQ(m["object"], "list");
  ASSERT_EQ(m["data"].size(), 1u);
  EXPECT_EQ(m["data"][0]["id"], "glam-tiny");
  EXPECT_EQ(m["data"][0]["object"], "model");
  EXPECT_EQ(m["data"][0]["owned_by"], "glam");
  auto one = fetch(server.port(), get_request("/v1/models/glam-tiny"));
  ASSERT_TRUE(one);
  EXPECT_EQ(json::parse(one->body), m["data"][0]);
  auto health = fetch(server.port(), get_request("/health"));
  ASSERT_TRUE(health);
  ASSERT_EQ(health->status, 200);
  const json h = json::parse(health->body);
  EXPECT_EQ(h["status"], "ok");
  EXPECT_EQ(h["model"], "glam-tiny");
  EXPECT_EQ(h["free_slots"], 64);
  auto wrong_method = fetch(server.port(), get_request("/v1/completions"));
  ASSERT_TRUE(wrong_method);
  EXPECT_EQ(wrong_method->status, 405);
  auto unknown = fetch(server.port(), get_request("/v1/chat/completions"));
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 404);
}

TEST_F(ServeHttp, StreamingSendsAnEventPerTokenAndEndsWithDone) {
  auto& server = start_plain();
  const json options = {{"max_tokens", 14}, {"temperature", 1.0}, {"seed", 3}};
  const std::string prompt = "Once upon a time";
  auto whole = post(server.port(), completion_body(prompt, options));
  ASSERT_TRUE(whole);
  const json w = json::parse(whole->body);

  for (bool include_usage : {false, true}) {
    json body = completion_body(prompt, options);
    body["stream"] = true;
    if (include_usage) body["stream_options"] = {{"include_usage", true}};
    http_client c(server.port());
    ASSERT_TRUE(c.send(post_request("/v1/completions", body.dump())));
    auto head = c.read_head();
    ASSERT_TRUE(head);
    ASSERT_EQ(head->status, 200);
    EXPECT_EQ(head->header("content-type"), "text/event-stream");
    EXPECT_EQ(lower(head->header("transfer-encoding")), "chunked");
    const streamed s = read_stream(c);
    EXPECT_TRUE(s.done) << "no [DONE]";
    ASSERT_FALSE(s.chunks.empty());
    for (const auto& chunk : s.chunks) {
      EXPECT_EQ(chunk["id"], s.chunks[0]["id"]);
      EXPECT_EQ(chunk["object"], "text_completion");
      EXPECT_EQ(chunk["model"], "glam-tiny");
    }
    // The same text as the whole response, one event per token.
    EXPECT_EQ(s.text, w["choices"][0]["text"]);
    EXPECT_EQ(s.finish_reason, w["choices"][0]["finish_reason"]);
    EXPECT_EQ(s.token_events, w["usage"]["completion_tokens"]);
    const json& last = s.chunks.back();
    if (include_usage) {
      EXPECT_TRUE(last["choices"].empty());
      EXPECT_EQ(last["usage"], w["usage"]);
    } else {
      EXPECT_FALSE(last.contains("usage"));
      EXPECT_FALSE(last["choices"][0]["finish_reason"].is_null());
    }
  }
}

TEST_F(ServeHttp, AStopStringCutsTheTextStreamedOrNot) {
  auto& server = start_plain();
  const json options = {{"max_tokens", 24}, {"temperature", 1.0}, {"seed", 5}};
  const std::string prompt = "A computer is";
  const std::string full = text_of(server.port(), completion_body(prompt, options));
  // A stop string from the middle of the text (two ASCII characters).
  std::size_t at = full.size() / 2;
  while (at + 2 < full.size() && (static_cast<unsigned char>(full[at]) >= 0x80 || static_cast<unsigned char>(full[at + 1]) >= 0x80))
    ++at;
  ASSERT_LT(at + 2, full.size()) << "text too short to pick a stop string: '" << full << "'";
  const std::string stop = full.substr(at, 2);
  const std::string want = full.substr(0, full.find(stop));

  json body = completion_body(prompt, options);
  body["stop"] = json::array({"never in this text \x01", stop});
  auto r = post(server.port(), body);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["choices"][0]["text"], want) << "full '" << full << "', stop '" << stop << "'";
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");

  body["stream"] = true;
  http_client c(server.port());
  ASSERT_TRUE(c.send(post_request("/v1/completions", body.dump())));
  ASSERT_TRUE(c.read_head());
  const streamed s = read_stream(c);
  EXPECT_TRUE(s.done);
  EXPECT_EQ(s.text, want);
  EXPECT_EQ(s.finish_reason, "stop");
}

// With a seed, a completion's text is the same alone or batched with others that join and
// leave around it.
TEST_F(ServeHttp, ConcurrentCompletionsHaveTheTextTheyHaveAlone) {
  auto& plain = start_plain();
  auto& gated = start_gated();
  const std::vector<json> bodies = {
      completion_body("The meaning of life is", {{"max_tokens", 20}, {"temperature", 1.0}, {"seed", 1}}),
      completion_body("Q: What", {{"max_tokens", 6}, {"temperature", 0.7}, {"seed", 2}, {"top_p", 0.9}}),
      completion_body("It was a dark and stormy night", {{"max_tokens", 30}, {"temperature", 0}}),
      completion_body("Never", {{"max_tokens", 12}, {"temperature", 1.3}, {"seed", 4}, {"stream", true}}),
      completion_body("A", {{"max_tokens", 3}, {"temperature", 1.0}, {"seed", 5}, {"stream", true}}),
  };
  std::vector<std::string> alone;
  for (const auto& b : bodies) {
    json one = b;
    one.erase("stream");
    alone.push_back(text_of(plain.port(), one));
  }
  // All five admitted while the gate holds the first step, then run together.
  std::vector<std::unique_ptr<http_client>> clients;
  for (const auto& b : bodies) {
    clients.push_back(std::make_unique<http_client>(gated.port()));
    ASSERT_TRUE(clients.back()->send(post_request("/v1/completions", b.dump())));
  }
  ASSERT_TRUE(wait_for([&] { return gated.scheduler().stats().admitted_now == 5; }));
  gate_->open();
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    std::string text;
    if (bodies[i].contains("stream")) {
      ASSERT_TRUE(clients[i]->read_head());
      text = read_stream(*clients[i]).text;
    } else {
      auto r = clients[i]->read_reply();
      ASSERT_TRUE(r);
      ASSERT_EQ(r->status, 200) << r->body;
      text = json::parse(r->body)["choices"][0]["text"].get<std::string>();
    }
    EXPECT_EQ(text, alone[i]) << "request " << i;
  }
  // They ran batched: some pass held several sequences.
  const auto steps = gate_->requests();
  std::size_t widest = 0;
  for (const auto& st : steps) widest = std::max(widest, st.items.size());
  EXPECT_GE(widest, 4u);
}

// Continuous batching over HTTP: a short request sent while a long one streams joins the
// running batch and is answered while the long one is still running.
TEST_F(ServeHttp, AShortRequestIsAnsweredWhileALongOneStreams) {
  auto& plain = start_plain();
  auto& gated = start_gated();
  // A long request that does not end early (no end of text in its first 24 tokens).
  json long_body;
  for (int seed = 1; seed <= 20 && long_body.is_null(); ++seed) {
    json b = completion_body("It was a dark and stormy night", {{"max_tokens", 24}, {"temperature", 1.0}, {"seed", seed}});
    auto r = post(plain.port(), b);
    ASSERT_TRUE(r);
    if (json::parse(r->body)["usage"]["completion_tokens"] == 24) long_body = b;
  }
  ASSERT_FALSE(long_body.is_null()) << "no seed gives 24 tokens";
  const std::string long_alone = text_of(plain.port(), long_body);
  long_body["stream"] = true;

  http_client long_client(gated.port());
  ASSERT_TRUE(long_client.send(post_request("/v1/completions", long_body.dump())));
  auto head = long_client.read_head();
  ASSERT_TRUE(head);
  ASSERT_EQ(head->status, 200);
  ASSERT_TRUE(gate_->wait_arrived(1));
  ASSERT_TRUE(gate_->advance(3));
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(long_client.read_event()) << "token event " << i;

  http_client short_client(gated.port());
  ASSERT_TRUE(short_client.send(
      post_request("/v1/completions", completion_body("Q: Why", {{"max_tokens", 2}, {"temperature", 0}}).dump())));
  ASSERT_TRUE(wait_for([&] { return gated.scheduler().stats().admitted_now == 2; }));
  // Step 3 was assembled before it came; it joins at step 4 and has its two tokens after 5.
  ASSERT_TRUE(gate_->advance(3));
  auto short_reply = short_client.read_reply();
  ASSERT_TRUE(short_reply);
  ASSERT_EQ(short_reply->status, 200) << short_reply->body;
  EXPECT_EQ(json::parse(short_reply->body)["usage"]["completion_tokens"], 2);
  // The long one is still running: 6 of its 24 tokens are out, the gate holds the rest.
  const scheduler_stats st = gated.scheduler().stats();
  EXPECT_EQ(st.running, 1);
  EXPECT_EQ(st.finished, 1);
  gate_->open();
  streamed rest = read_stream(long_client);
  EXPECT_TRUE(rest.done);
  EXPECT_EQ(rest.token_events, 24 - 3);
  // Its text is the text it has alone (the three first events' text is read above, so
  // compare the tail).
  ASSERT_GE(long_alone.size(), rest.text.size());
  EXPECT_EQ(long_alone.substr(long_alone.size() - rest.text.size()), rest.text);
}

// --- limits and bad input -----------------------------------------------------------------

struct bad_case {
  const char* name;
  std::string body;
  int status;
  const char* param;  // nullptr: null
  const char* code;   // nullptr: any
};

std::string with(const std::string& fields) { return R"({"model": "glam-tiny", "prompt": "Hello")" + fields + "}"; }

std::string long_prompt() {
  std::string p;
  for (int i = 0; i < 80; ++i) p += "many words ";
  return R"({"model": "glam-tiny", "prompt": ")" + p + "\"}";
}

const bad_case bad_cases[] = {
    {"NotJson", "{\"model\": ", 400, nullptr, "invalid_json"},
    {"NotAnObject", "[1, 2]", 400, nullptr, "invalid_type"},
    {"ModelMissing", R"({"prompt": "Hello"})", 400, "model", "missing_field"},
    {"ModelNotAString", R"({"model": 7, "prompt": "Hello"})", 400, "model", "invalid_type"},
    {"ModelUnknown", R"({"model": "gpt-4", "prompt": "Hello"})", 404, "model", "model_not_found"},
    {"PromptMissing", R"({"model": "glam-tiny"})", 400, "prompt", "missing_field"},
    {"PromptNumber", R"({"model": "glam-tiny", "prompt": 12})", 400, "prompt", "invalid_type"},
    {"PromptTokenIds", R"({"model": "glam-tiny", "prompt": [1, 2, 3]})", 400, "prompt", "invalid_type"},
    {"PromptEmptyList", R"({"model": "glam-tiny", "prompt": []})", 400, "prompt", "invalid_value"},
    {"PromptEmpty", R"({"model": "glam-tiny", "prompt": ""})", 400, "prompt", "invalid_value"},
    {"PromptLongerThanSeqLen", long_prompt(), 400, "prompt", "context_length_exceeded"},
    {"MaxTokensString", with(R"(, "max_tokens": "5")"), 400, "max_tokens", "invalid_type"},
    {"MaxTokensFraction", with(R"(, "max_tokens": 2.5)"), 400, "max_tokens", "invalid_type"},
    {"MaxTokensZero", with(R"(, "max_tokens": 0)"), 400, "max_tokens", "invalid_value"},
    {"MaxTokensNegative", with(R"(, "max_tokens": -3)"), 400, "max_tokens", "invalid_value"},
    {"MaxTokensOverTheLimit", with(R"(, "max_tokens": 65)"), 400, "max_tokens", "invalid_value"},
    {"TemperatureNegative", with(R"(, "temperature": -0.1)"), 400, "temperature", "invalid_value"},
    {"TemperatureTooHigh", with(R"(, "temperature": 2.5)"), 400, "temperature", "invalid_value"},
    {"TemperatureString", with(R"(, "temperature": "hot")"), 400, "temperature", "invalid_type"},
    {"TopPZero", with(R"(, "top_p": 0)"), 400, "top_p", "invalid_value"},
    {"TopPAboveOne", with(R"(, "top_p": 1.5)"), 400, "top_p", "invalid_value"},
    {"SeedNegative", with(R"(, "seed": -1)"), 400, "seed", "invalid_value"},
    {"SeedFraction", with(R"(, "seed": 1.5)"), 400, "seed", "invalid_type"},
    {"StopNumber", with(R"(, "stop": 5)"), 400, "stop", "invalid_type"},
    {"StopEmptyString", with(R"(, "stop": [""])"), 400, "stop", "invalid_value"},
    {"StopTooMany", with(R"(, "stop": ["a", "b", "c", "d", "e"])"), 400, "stop", "invalid_value"},
    {"StreamString", with(R"(, "stream": "yes")"), 400, "stream", "invalid_type"},
    {"StreamOptionsWithoutStream", with(R"(, "stream_options": {"include_usage": true})"), 400, "stream_options",
     "invalid_value"},
    {"NTwo", with(R"(, "n": 2)"), 400, "n", "unsupported_value"},
    {"BestOf", with(R"(, "best_of": 3)"), 400, "best_of", "unsupported_value"},
    {"Echo", with(R"(, "echo": true)"), 400, "echo", "unsupported_value"},
    {"Logprobs", with(R"(, "logprobs": 2)"), 400, "logprobs", "unsupported_value"},
    {"PresencePenalty", with(R"(, "presence_penalty": 0.5)"), 400, "presence_penalty", "unsupported_value"},
    {"UnknownField", with(R"(, "temprature": 0.5)"), 400, "temprature", "unknown_field"},
    {"BodyOver1MiB", with(", \"user\": \"" + std::string(1u << 20, 'x') + "\""), 413, nullptr, nullptr},
    // Clients send these neutral values by default: accepted.
    {"NeutralValuesAreAccepted",
     with(R"(, "n": 1, "best_of": 1, "echo": false, "logprobs": null, "presence_penalty": 0, "frequency_penalty": 0,
          "logit_bias": {}, "user": "me", "max_tokens": 2, "stop": null, "seed": null)"),
     200, nullptr, nullptr},
};

class ServeHttpBadInput : public ServeHttp, public ::testing::WithParamInterface<bad_case> {};

TEST_P(ServeHttpBadInput, IsRefusedWithAnOpenAIErrorNamingTheField) {
  const bad_case& c = GetParam();
  auto& server = start_plain();
  auto r = fetch(server.port(), post_request("/v1/completions", c.body));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, c.status) << r->body;
  if (c.status == 200) return;
  const json j = json::parse(r->body);
  ASSERT_TRUE(j.contains("error")) << j;
  const json& e = j["error"];
  EXPECT_FALSE(e["message"].get<std::string>().empty());
  EXPECT_EQ(e["type"], "invalid_request_error");
  if (c.param) {
    EXPECT_EQ(e["param"], c.param) << e;
    EXPECT_NE(e["message"].get<std::string>().find(c.param), std::string::npos) << "the message names the field: " << e;
  } else {
    EXPECT_TRUE(e["param"].is_null()) << e;
  }
  if (c.code) {
    EXPECT_EQ(e["code"], c.code) << e;
  }
  // Nothing was admitted, and the server still serves.
  EXPECT_EQ(server.scheduler().stats().admitted, 0);
  auto ok = fetch(server.port(), post_request("/v1/completions", with(R"(, "max_tokens": 1)")));
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
}

INSTANTIATE_TEST_SUITE_P(Table, ServeHttpBadInput, ::testing::ValuesIn(bad_cases),
                         [](const auto& info) { return std::string(info.param.name); });

// Beyond --max-concurrent sequences, 429 with Retry-After; a list longer than it can ever
// admit is a 400.
TEST_F(ServeHttp, ABusyServerAnswers429WithRetryAfter) {
  serve_options o;
  o.scheduler.max_admitted = 2;
  auto& server = start_gated(o);
  http_client first(server.port());
  ASSERT_TRUE(first.send(post_request("/v1/completions", with(R"(, "max_tokens": 3, "stream": true, "prompt": ["a", "b"])"))));
  ASSERT_TRUE(first.read_head());
  auto busy = fetch(server.port(), post_request("/v1/completions", with("")));
  ASSERT_TRUE(busy);
  EXPECT_EQ(busy->status, 429);
  EXPECT_EQ(busy->header("retry-after"), "1");
  const json e = json::parse(busy->body)["error"];
  EXPECT_EQ(e["code"], "rate_limit_exceeded");
  auto too_many = fetch(server.port(), post_request("/v1/completions", with(R"(, "prompt": ["a", "b", "c"])")));
  ASSERT_TRUE(too_many);
  EXPECT_EQ(too_many->status, 400);
  EXPECT_EQ(json::parse(too_many->body)["error"]["param"], "prompt");
  gate_->open();
  EXPECT_TRUE(read_stream(first).done);
  auto after = fetch(server.port(), post_request("/v1/completions", with(R"(, "max_tokens": 2)")));
  ASSERT_TRUE(after);
  EXPECT_EQ(after->status, 200);
}

// A client that disconnects frees its slot at once: while the gate holds every step, the
// slot is free again and the next request is admitted.
class ServeHttpDisconnect : public ServeHttp, public ::testing::WithParamInterface<bool> {};

TEST_P(ServeHttpDisconnect, AClientThatLeavesFreesItsSlotAtOnce) {
  const bool stream = GetParam();
  serve_options o;
  o.scheduler.max_admitted = 1;
  auto& server = start_gated(o);
  {
    http_client leaving(server.port());
    ASSERT_TRUE(leaving.send(post_request("/v1/completions", with(stream ? R"(, "stream": true)" : ""))));
    ASSERT_TRUE(wait_for([&] { return server.scheduler().stats().admitted_now == 1; }));
    if (stream) {
      ASSERT_TRUE(leaving.read_head());
    }
  }  // closes the socket
  ASSERT_TRUE(wait_for([&] { return server.scheduler().stats().admitted_now == 0; }));
  EXPECT_EQ(server.scheduler().stats().cancelled, 1);
  http_client next(server.port());
  ASSERT_TRUE(next.send(post_request("/v1/completions", with(R"(, "max_tokens": 2)"))));
  ASSERT_TRUE(wait_for([&] { return server.scheduler().stats().admitted_now == 1; }));
  gate_->open();
  auto r = next.read_reply();
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200) << r->body;
}

INSTANTIATE_TEST_SUITE_P(Table, ServeHttpDisconnect, ::testing::Values(false, true),
                         [](const auto& info) { return std::string(info.param ? "Streamed" : "Whole"); });

// With an API key, /v1/* need it; /health and /metrics stay public.
struct auth_case {
  const char* name;
  std::string request;
  int status;
};

const std::string good_key = "Authorization: Bearer s3cret-key\r\n";
const auth_case auth_cases[] = {
    {"NoKey", post_request("/v1/completions", with("")), 401},
    {"WrongKey", post_request("/v1/completions", with(""), "Authorization: Bearer guess\r\n"), 401},
    {"NotBearer", post_request("/v1/completions", with(""), "Authorization: Basic czNjcmV0LWtleQ==\r\n"), 401},
    {"RightKey", post_request("/v1/completions", with(R"(, "max_tokens": 1)"), good_key), 200},
    {"ModelsNoKey", get_request("/v1/models"), 401},
    {"ModelsRightKey", get_request("/v1/models", good_key), 200},
    {"HealthIsPublic", get_request("/health"), 200},
    {"MetricsArePublic", get_request("/metrics"), 200},
};

class ServeHttpAuth : public ServeHttp, public ::testing::WithParamInterface<auth_case> {};

TEST_P(ServeHttpAuth, TheKeyIsChecked) {
  serve_options o;
  o.api_key = "s3cret-key";
  auto& server = start_plain(o);
  auto r = fetch(server.port(), GetParam().request);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, GetParam().status) << r->body;
  if (r->status == 401) {
    EXPECT_EQ(r->header("www-authenticate"), "Bearer");
    EXPECT_EQ(json::parse(r->body)["error"]["code"], "invalid_api_key");
  }
}

INSTANTIATE_TEST_SUITE_P(Table, ServeHttpAuth, ::testing::ValuesIn(auth_cases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST_F(ServeHttp, MetricsParseAndCountWhatHappened) {
  auto& server = start_plain();
  const json whole = json::parse(post(server.port(), completion_body("Q: Why", {{"max_tokens", 5}, {"seed", 1}}))->body);
  http_client c(server.port());
  json body = completion_body("Never", {{"max_tokens", 7}, {"seed", 2}, {"stream", true}});
  ASSERT_TRUE(c.send(post_request("/v1/completions", body.dump())));
  ASSERT_TRUE(c.read_head());
  const streamed s = read_stream(c);
  ASSERT_TRUE(s.done);
  ASSERT_EQ(post(server.port(), completion_body("Q: Why", {{"top_p", 7}}))->status, 400);

  auto r = fetch(server.port(), get_request("/metrics"));
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200);
  EXPECT_EQ(r->header("content-type"), prometheus_content_type);
  std::vector<prometheus_testing::parsed_family> families;
  ASSERT_NO_THROW(families = prometheus_testing::parse_exposition(r->body)) << r->body;
  std::map<std::string, const prometheus_testing::parsed_family*> by_name;
  for (const auto& f : families) by_name[f.name] = &f;
  const auto value = [&](const std::string& family, const std::string& sample,
                         const std::map<std::string, std::string>& labels = {}) -> double {
    auto f = by_name.find(family);
    if (f == by_name.end()) {
      ADD_FAILURE() << "no family " << family;
      return -1;
    }
    for (const auto& x : f->second->samples) {
      auto l = x.labels;
      l.erase("le");
      if (x.name == sample && l == labels && !x.labels.count("le")) return x.value;
    }
    ADD_FAILURE() << "no sample " << sample;
    return -1;
  };
  const double tokens = whole["usage"]["completion_tokens"].get<double>() + s.token_events;
  EXPECT_EQ(value("glam_serve_requests_total", "glam_serve_requests_total", {{"code", "200"}}), 2);
  EXPECT_EQ(value("glam_serve_requests_total", "glam_serve_requests_total", {{"code", "400"}}), 1);
  EXPECT_EQ(value("glam_serve_generated_tokens_total", "glam_serve_generated_tokens_total"), tokens);
  EXPECT_EQ(value("glam_serve_sequences_admitted_total", "glam_serve_sequences_admitted_total"), 2);
  EXPECT_EQ(value("glam_serve_time_to_first_token_seconds", "glam_serve_time_to_first_token_seconds_count"), 2);
  EXPECT_EQ(value("glam_serve_inter_token_latency_seconds", "glam_serve_inter_token_latency_seconds_count"), tokens - 2);
  EXPECT_GE(value("glam_serve_batch_size", "glam_serve_batch_size_count"), tokens);
  EXPECT_EQ(value("glam_serve_sequences_running", "glam_serve_sequences_running"), 0);
  EXPECT_EQ(by_name.at("glam_serve_time_to_first_token_seconds")->type, "histogram");
  EXPECT_EQ(by_name.at("glam_serve_batch_size")->type, "histogram");
}

}  // namespace
}  // namespace glam
