#pragma once
// The OpenAI completions API without the transport: checking a request body, holding back
// text that may be the start of a stop string, and the JSON of responses and stream chunks.
// Pure functions, so every rule here is tested without a socket (docs/serving.md, "The
// API").
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "kernels/tensor.hpp"

namespace glam {

// A checked POST /v1/completions body.
struct completion_request {
  std::string model;
  std::vector<std::string> prompts;  // one choice each (n = 1)
  index max_tokens = 16;             // OpenAI's default
  double temperature = 1.0;
  double top_p = 1.0;
  std::optional<std::uint64_t> seed;  // none: the server draws one
  std::vector<std::string> stop;      // at most 4, none empty
  bool stream = false;
  bool include_usage = false;         // stream_options.include_usage
};

// A request the server refuses: the HTTP status and OpenAI's error fields. param names the
// field at fault (empty: none, e.g. a body that is not JSON).
struct api_error {
  int status = 400;
  std::string message;
  std::string param;
  std::string code;
};

struct completion_limits {
  std::string model;         // the served model's id: `model` must name it (else 404)
  index max_tokens = 64;     // max_tokens may not exceed it
  index max_prompts = 64;    // a list of prompts may not be longer
};

inline constexpr std::size_t max_stop_strings = 4;  // OpenAI's limit

// Parses and checks the body. Unknown fields and options glam does not implement (n ≠ 1,
// echo, logprobs, penalties, …) are refused by name rather than ignored, so a client never
// gets something other than what it asked for; their neutral values are accepted (clients
// send them by default).
std::variant<completion_request, api_error> parse_completion_request(std::string_view body,
                                                                     const completion_limits& limits);

// Holds back the end of a growing text while it could be the start of a stop string, and
// cuts the text where a stop string first appears (the stop string is not part of the
// text). Pieces that come out concatenate to the text up to the cut. Stop strings are valid
// UTF-8 and the text is given out in whole characters, so a piece is whole characters too.
class stop_matcher {
 public:
  explicit stop_matcher(std::vector<std::string> stops);
  // Adds text; returns what is now safe to give out ("" after a match).
  std::string push(std::string_view piece);
  // The text held back (when no stop string matched); call once, at the end.
  std::string finish();
  bool matched() const { return matched_; }

 private:
  std::vector<std::string> stops_;
  std::size_t longest_ = 0;
  std::string text_;          // everything pushed (up to the cut once matched)
  std::size_t given_ = 0;     // bytes of text_ given out
  bool matched_ = false;
};

// The JSON texts (OpenAI's shapes).
struct completion_choice {
  std::string text;
  index index_in_request = 0;
  std::string finish_reason;  // "stop", "length"; empty: null (a stream chunk before the end)
};
struct completion_usage {
  index prompt_tokens = 0, completion_tokens = 0;
};

// {"id", "object": "text_completion", "created", "model", "choices": [...], "usage"}; a stream
// chunk has the same shape, with usage only when given.
std::string completion_json(const std::string& id, std::int64_t created, const std::string& model,
                            const std::vector<completion_choice>& choices, const std::optional<completion_usage>& usage);
// GET /v1/models and /v1/models/{id}.
std::string model_list_json(const std::string& model, std::int64_t created);
std::string model_json(const std::string& model, std::int64_t created);

// "cmpl-" and 24 random hex digits.
std::string new_completion_id();

}  // namespace glam
