#include "serve/completions_api.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include <nlohmann/json.hpp>

namespace glam {

namespace {

using json = nlohmann::json;

api_error refuse(const std::string& param, const std::string& message, const std::string& code = "invalid_value") {
  return api_error{400, message, param, code};
}

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "a list";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number with a fraction";
    default: return "a number";
  }
}

api_error wrong_type(const std::string& param, const std::string& wanted, const json& v) {
  return refuse(param, "'" + param + "' must be " + wanted + ", not " + type_name(v), "invalid_type");
}

// A finite number in [low, high] (open at low when low_open).
std::optional<api_error> read_number(const json& v, const std::string& param, double low, bool low_open, double high,
                                     double& out) {
  if (!v.is_number()) return wrong_type(param, "a number", v);
  const double x = v.get<double>();
  if (!std::isfinite(x) || x > high || (low_open ? x <= low : x < low)) {
    char range[96];
    std::snprintf(range, sizeof range, "%s%g, %g]", low_open ? "(" : "[", low, high);
    return refuse(param, "'" + param + "' = " + v.dump() + " is out of range; use a value in " + range);
  }
  out = x;
  return std::nullopt;
}

std::string json_text(const json& v) { return v.dump(-1, ' ', false, json::error_handler_t::replace); }

// Options glam does not implement: accepted at their neutral value, refused otherwise.
struct neutral_option {
  const char* name;
  bool (*neutral)(const json&);
  const char* why;
};

const neutral_option neutral_options[] = {
    {"n", [](const json& v) { return v.is_null() || (v.is_number_integer() && v.get<std::int64_t>() == 1); },
     "glam serves n = 1 only: send one request per completion, or a list of prompts"},
    {"best_of", [](const json& v) { return v.is_null() || (v.is_number_integer() && v.get<std::int64_t>() == 1); },
     "glam does not implement best_of; leave it out"},
    {"echo", [](const json& v) { return v.is_null() || (v.is_boolean() && !v.get<bool>()); },
     "glam does not echo the prompt; leave echo out or false"},
    {"logprobs", [](const json& v) { return v.is_null(); }, "glam does not return log probabilities; leave logprobs out"},
    {"suffix", [](const json& v) { return v.is_null() || (v.is_string() && v.get<std::string>().empty()); },
     "glam does not implement suffix (insertion); leave it out"},
    {"presence_penalty", [](const json& v) { return v.is_null() || (v.is_number() && v.get<double>() == 0.0); },
     "glam does not implement presence_penalty; leave it out or 0"},
    {"frequency_penalty", [](const json& v) { return v.is_null() || (v.is_number() && v.get<double>() == 0.0); },
     "glam does not implement frequency_penalty; leave it out or 0"},
    {"logit_bias", [](const json& v) { return v.is_null() || (v.is_object() && v.empty()); },
     "glam does not implement logit_bias; leave it out or {}"},
};

}  // namespace

std::variant<completion_request, api_error> parse_completion_request(std::string_view body,
                                                                     const completion_limits& limits) {
  json j;
  try {
    j = json::parse(body.begin(), body.end());
  } catch (const json::exception& e) {
    std::string what = e.what();
    const auto bracket = what.find("] ");
    if (what.rfind("[json.exception", 0) == 0 && bracket != std::string::npos) what = what.substr(bracket + 2);
    return api_error{400, "the request body is not valid JSON: " + what, "", "invalid_json"};
  }
  if (!j.is_object())
    return api_error{400, std::string("the request body must be a JSON object, not ") + type_name(j), "",
                     "invalid_type"};

  static const char* known[] = {"model",  "prompt", "max_tokens", "temperature", "top_p", "seed",
                                "stop",   "stream", "stream_options", "user"};
  for (const auto& [key, value] : j.items()) {
    const bool is_known = std::any_of(std::begin(known), std::end(known), [&](const char* k) { return key == k; }) ||
                          std::any_of(std::begin(neutral_options), std::end(neutral_options),
                                      [&](const neutral_option& o) { return key == o.name; });
    if (!is_known)
      return refuse(key, "unknown field '" + key +
                             "'; the completions API takes model, prompt, max_tokens, temperature, top_p, seed, stop, "
                             "stream, stream_options, user",
                    "unknown_field");
  }
  for (const auto& o : neutral_options) {
    auto it = j.find(o.name);
    if (it != j.end() && !o.neutral(*it))
      return refuse(o.name, std::string("'") + o.name + "' = " + json_text(*it) + " is not supported: " + o.why,
                    "unsupported_value");
  }

  completion_request r;

  auto model = j.find("model");
  if (model == j.end() || model->is_null())
    return refuse("model", "'model' is missing; name the served model, '" + limits.model + "' (GET /v1/models)",
                  "missing_field");
  if (!model->is_string()) return wrong_type("model", "a string", *model);
  r.model = model->get<std::string>();
  if (r.model != limits.model)
    return api_error{404, "the model '" + r.model + "' does not exist here; this server serves '" + limits.model + "'",
                     "model", "model_not_found"};

  auto prompt = j.find("prompt");
  if (prompt == j.end() || prompt->is_null())
    return refuse("prompt", "'prompt' is missing; give the text to continue", "missing_field");
  if (prompt->is_string()) {
    r.prompts.push_back(prompt->get<std::string>());
  } else if (prompt->is_array()) {
    if (prompt->empty()) return refuse("prompt", "'prompt' is an empty list; give at least one prompt");
    if (static_cast<index>(prompt->size()) > limits.max_prompts)
      return refuse("prompt", "'prompt' lists " + std::to_string(prompt->size()) + " prompts; this server takes at most " +
                                  std::to_string(limits.max_prompts) + " in one request");
    for (std::size_t i = 0; i < prompt->size(); ++i) {
      const json& p = (*prompt)[i];
      if (!p.is_string())
        return refuse("prompt", "'prompt' must be a string or a list of strings; item " + std::to_string(i) + " is " +
                                    type_name(p) + " (token-id prompts are not supported)",
                      "invalid_type");
      r.prompts.push_back(p.get<std::string>());
    }
  } else {
    return wrong_type("prompt", "a string or a list of strings", *prompt);
  }

  if (auto v = j.find("max_tokens"); v != j.end() && !v->is_null()) {
    if (!v->is_number_integer()) return wrong_type("max_tokens", "an integer", *v);
    // The parser keeps a non-negative integer unsigned: a signed one is negative.
    if (!v->is_number_unsigned() || v->get<std::uint64_t>() < 1 ||
        v->get<std::uint64_t>() > std::uint64_t(limits.max_tokens))
      return refuse("max_tokens", "'max_tokens' = " + v->dump() + " is out of range; this server allows 1 to " +
                                      std::to_string(limits.max_tokens));
    r.max_tokens = static_cast<index>(v->get<std::uint64_t>());
  }
  r.max_tokens = std::min(r.max_tokens, limits.max_tokens);
  if (auto v = j.find("temperature"); v != j.end() && !v->is_null())
    if (auto e = read_number(*v, "temperature", 0.0, false, 2.0, r.temperature)) return *e;
  if (auto v = j.find("top_p"); v != j.end() && !v->is_null())
    if (auto e = read_number(*v, "top_p", 0.0, true, 1.0, r.top_p)) return *e;
  if (auto v = j.find("seed"); v != j.end() && !v->is_null()) {
    if (!v->is_number_integer()) return wrong_type("seed", "an integer", *v);
    if (!v->is_number_unsigned())
      return refuse("seed", "'seed' = " + v->dump() + " is out of range; use an integer from 0 to 2^64 - 1");
    r.seed = v->get<std::uint64_t>();
  }
  if (auto v = j.find("stop"); v != j.end() && !v->is_null()) {
    std::vector<json> items;
    if (v->is_string()) {
      items.push_back(*v);
    } else if (v->is_array()) {
      if (v->size() > max_stop_strings)
        return refuse("stop", "'stop' lists " + std::to_string(v->size()) + " strings; give at most " +
                                  std::to_string(max_stop_strings));
      for (const auto& s : *v) items.push_back(s);
    } else {
      return wrong_type("stop", "a string or a list of strings", *v);
    }
    for (const auto& s : items) {
      if (!s.is_string()) return wrong_type("stop", "a string or a list of strings", s);
      if (s.get<std::string>().empty()) return refuse("stop", "'stop' holds an empty string; every stop string needs at least one character");
      r.stop.push_back(s.get<std::string>());
    }
  }
  if (auto v = j.find("stream"); v != j.end() && !v->is_null()) {
    if (!v->is_boolean()) return wrong_type("stream", "a boolean", *v);
    r.stream = v->get<bool>();
  }
  if (auto v = j.find("stream_options"); v != j.end() && !v->is_null()) {
    if (!v->is_object()) return wrong_type("stream_options", "an object", *v);
    if (!r.stream) return refuse("stream_options", "'stream_options' is only allowed with \"stream\": true");
    for (const auto& [key, value] : v->items()) {
      if (key != "include_usage")
        return refuse("stream_options", "unknown field 'stream_options." + key + "'; only include_usage is known",
                      "unknown_field");
      if (!value.is_boolean()) return wrong_type("stream_options", "{\"include_usage\": a boolean}", value);
      r.include_usage = value.get<bool>();
    }
  }
  if (auto v = j.find("user"); v != j.end() && !v->is_null() && !v->is_string()) return wrong_type("user", "a string", *v);
  return r;
}

// ---------------------------------------------------------------------------------------

stop_matcher::stop_matcher(std::vector<std::string> stops) : stops_(std::move(stops)) {
  for (const auto& s : stops_) longest_ = std::max(longest_, s.size());
}

std::string stop_matcher::push(std::string_view piece) {
  if (matched_) return "";
  if (stops_.empty()) return std::string(piece);
  text_.append(piece);
  // The earliest stop string that now appears; it can only end inside the new piece or
  // start within longest-1 bytes before it, so the search starts there.
  const std::size_t from = given_ + 1 > longest_ ? given_ + 1 - longest_ : 0;
  std::size_t cut = std::string::npos;
  for (const auto& s : stops_) cut = std::min(cut, text_.find(s, from));
  if (cut != std::string::npos) {
    matched_ = true;
    text_.resize(cut);
    std::string out = text_.substr(given_);
    given_ = text_.size();
    return out;
  }
  // Hold back the longest end of the text that some stop string starts with.
  std::size_t hold = 0;
  for (const auto& s : stops_)
    for (std::size_t n = std::min(s.size() - 1, text_.size()); n > hold; --n)
      if (text_.compare(text_.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  const std::size_t safe = std::max(given_, text_.size() - hold);
  std::string out = text_.substr(given_, safe - given_);
  given_ = safe;
  return out;
}

std::string stop_matcher::finish() {
  std::string out = text_.substr(given_);
  given_ = text_.size();
  return out;
}

// ---------------------------------------------------------------------------------------

std::string completion_json(const std::string& id, std::int64_t created, const std::string& model,
                            const std::vector<completion_choice>& choices, const std::optional<completion_usage>& usage) {
  json j;
  j["id"] = id;
  j["object"] = "text_completion";
  j["created"] = created;
  j["model"] = model;
  j["choices"] = json::array();
  for (const auto& c : choices) {
    json choice;
    choice["text"] = c.text;
    choice["index"] = c.index_in_request;
    choice["logprobs"] = nullptr;
    choice["finish_reason"] = c.finish_reason.empty() ? json(nullptr) : json(c.finish_reason);
    j["choices"].push_back(std::move(choice));
  }
  if (usage)
    j["usage"] = {{"prompt_tokens", usage->prompt_tokens},
                  {"completion_tokens", usage->completion_tokens},
                  {"total_tokens", usage->prompt_tokens + usage->completion_tokens}};
  return json_text(j);
}

std::string model_json(const std::string& model, std::int64_t created) {
  json j = {{"id", model}, {"object", "model"}, {"created", created}, {"owned_by", "glam"}};
  return json_text(j);
}

std::string model_list_json(const std::string& model, std::int64_t created) {
  json j = {{"object", "list"}, {"data", json::array({json::parse(model_json(model, created))})}};
  return json_text(j);
}

std::string new_completion_id() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  char hex[32];
  std::snprintf(hex, sizeof hex, "%016llx%08llx", (unsigned long long)rng(), (unsigned long long)(rng() & 0xffffffffu));
  return std::string("cmpl-") + hex;
}

}  // namespace glam
