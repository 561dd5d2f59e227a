// Request bodies as vLLM and OpenAI accept them; see completion_request.h.
#include "server/completion_request.h"

#include <fmt/format.h>

#include <algorithm>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "core/json_depth.h"
#include "server/json_fields.h"
#include "server/prompt_input.h"
#include "server/request_fields.h"
#include "server/tools_input.h"

namespace invar::server {

using nlohmann::json;

bool valid_utf8(std::string_view s, size_t* bad_offset) {
  size_t i = 0;
  while (i < s.size()) {
    auto c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    bool ok = len > 0 && i + len <= s.size() && !(len == 2 && c < 0xC2);
    for (int k = 1; ok && k < len; ++k) ok = (static_cast<unsigned char>(s[i + k]) & 0xC0) == 0x80;
    if (ok && len >= 3) {
      auto c1 = static_cast<unsigned char>(s[i + 1]);
      if (len == 3)
        ok = !(c == 0xE0 && c1 < 0xA0) && !(c == 0xED && c1 >= 0xA0);  // overlong, surrogates
      if (len == 4) ok = !(c == 0xF0 && c1 < 0x90) && !(c == 0xF4 && c1 >= 0x90) && c <= 0xF4;
    }
    if (!ok) {
      if (bad_offset) *bad_offset = i;
      return false;
    }
    i += len;
  }
  return true;
}

engine::RequestParams CompletionRequest::choice_params(int index) const {
  engine::RequestParams p = params;
  size_t prompt_index = size_t(index / n);
  p.prompt = prompts[prompt_index];
  p.max_tokens = max_tokens[prompt_index];
  if (p.has_seed) p.sampling.seed = params.sampling.seed + uint64_t(index % n);
  return p;
}

namespace {

std::optional<ApiError> parse_stop(const Fields& f, const RequestLimits& limits,
                                   engine::RequestParams* p) {
  const json* stop = f.get("stop");
  if (!stop) return std::nullopt;
  auto add = [&](const json& s) -> std::optional<ApiError> {
    if (!s.is_string()) return Fields::type_error("stop", "a string or a list of strings");
    if (!s.get_ref<const std::string&>().empty()) p->stop_strings.push_back(s.get<std::string>());
    return std::nullopt;
  };
  if (stop->is_array()) {
    if (int(stop->size()) > limits.max_stop_strings) {
      return ApiError::bad_request(
          "stop", fmt::format("'stop' has {} strings; at most {} are accepted", stop->size(),
                              limits.max_stop_strings));
    }
    for (const auto& s : *stop)
      if (auto e = add(s)) return e;
    return std::nullopt;
  }
  return add(*stop);
}

// logit_bias: {"token id": bias in [-100, 100], ...} as OpenAI takes it.
std::optional<ApiError> parse_logit_bias(const Fields& f, int32_t vocab, engine::RequestParams* p) {
  const json* bias = f.get("logit_bias");
  if (!bias) return std::nullopt;
  if (!bias->is_object())
    return Fields::type_error("logit_bias", "an object mapping token ids to biases");
  for (const auto& [key, value] : bias->items()) {
    char* end = nullptr;
    long long id = std::strtoll(key.c_str(), &end, 10);
    if (key.empty() || *end != '\0' || id < 0 || id >= vocab) {
      return ApiError::bad_request(
          "logit_bias",
          fmt::format("logit_bias key \"{}\" is not a token id in [0, {})", key, vocab));
    }
    if (!value.is_number() || !(value.get<double>() >= -100 && value.get<double>() <= 100)) {
      return ApiError::bad_request(
          "logit_bias", fmt::format("logit_bias of token {} is {}; it must be a number in "
                                    "[-100, 100]",
                                    key, value.dump()));
    }
    p->logit_bias.push_back({int32_t(id), float(value.get<double>())});
  }
  return std::nullopt;
}

std::optional<ApiError> parse_stream(const Fields& f, CompletionRequest* r) {
  if (auto e = f.boolean("stream", &r->stream)) return e;
  const json* so = f.get("stream_options");
  if (!so) return std::nullopt;
  if (!so->is_object()) return Fields::type_error("stream_options", "an object");
  if (!r->stream)
    return ApiError::bad_request("stream_options", "'stream_options' needs 'stream': true");
  Fields options(*so, "stream_options.");
  if (auto e = options.boolean("include_usage", &r->include_usage)) return e;
  bool continuous = false;
  if (auto e = options.boolean("continuous_usage_stats", &continuous)) return e;
  if (continuous) {
    return ApiError::bad_request("stream_options.continuous_usage_stats",
                                 "'continuous_usage_stats' is not supported: usage comes in the "
                                 "last chunk (include_usage)");
  }
  for (const auto& [key, value] : so->items()) {
    if (value.is_null() || key == "include_usage" || key == "continuous_usage_stats") continue;
    return ApiError::bad_request("stream_options." + key,
                                 fmt::format("unknown field 'stream_options.{}'", key));
  }
  return std::nullopt;
}

std::optional<ApiError> parse_logprobs(const Fields& f, Endpoint endpoint,
                                       const RequestLimits& limits, CompletionRequest* r) {
  if (endpoint == Endpoint::completions) {
    int64_t logprobs = 0;
    bool given = false;
    if (auto e = f.integer("logprobs", 0, limits.max_logprobs, &logprobs, &given)) return e;
    r->logprobs = given;
    r->top_logprobs = int(logprobs);
  } else {
    if (auto e = f.boolean("logprobs", &r->logprobs)) return e;
    int64_t top = 0;
    bool given = false;
    if (auto e = f.integer("top_logprobs", 0, limits.max_logprobs, &top, &given)) return e;
    if (given && !r->logprobs && top > 0)
      return ApiError::bad_request("top_logprobs", "'top_logprobs' needs 'logprobs': true");
    r->top_logprobs = int(top);
  }
  int64_t prompt_logprobs = 0;
  bool given = false;
  if (auto e = f.integer("prompt_logprobs", 0, limits.max_logprobs, &prompt_logprobs, &given))
    return e;
  if (given) r->prompt_logprobs = int(prompt_logprobs);
  if (given && r->stream) {
    return ApiError::bad_request("prompt_logprobs",
                                 "'prompt_logprobs' is not available with 'stream': true (as in "
                                 "vLLM); echo with logprobs streams the prompt's logprobs");
  }
  if (auto e = f.boolean("return_token_ids", &r->return_token_ids)) return e;
  if (auto e = f.boolean("return_tokens_as_token_ids", &r->tokens_as_ids)) return e;

  engine::RequestParams& p = r->params;
  p.top_logprobs = r->logprobs ? r->top_logprobs : -1;
  // The engine computes the prompt's logprobs with as many alternatives as either shows.
  p.prompt_logprobs = std::max(r->prompt_logprobs, r->echo_logprobs() ? r->top_logprobs : -1);
  return std::nullopt;
}

std::optional<ApiError> parse_sampling(const Fields& f, const RequestLimits& limits, int32_t vocab,
                                       CompletionRequest* r) {
  engine::RequestParams& p = r->params;
  // Ranges: OpenAI's where it has them (temperature 0..2, penalties -2..2), vLLM's otherwise.
  if (auto e = f.number("temperature", 0, 2, false, &p.sampling.temperature)) return e;
  if (auto e = f.number("top_p", 0, 1, true, &p.sampling.top_p)) return e;
  if (auto e = f.number("min_p", 0, 1, false, &p.sampling.min_p)) return e;
  int64_t top_k = 0;
  if (auto e = f.integer("top_k", -1, 1 << 20, &top_k)) return e;
  p.sampling.top_k = top_k < 0 ? 0 : int(top_k);  // vLLM writes "off" as -1
  if (auto e = f.number("presence_penalty", -2, 2, false, &p.presence_penalty)) return e;
  if (auto e = f.number("frequency_penalty", -2, 2, false, &p.frequency_penalty)) return e;
  if (auto e = f.number("repetition_penalty", 0, 10, true, &p.repetition_penalty)) return e;
  int64_t seed = 0;
  if (auto e = f.integer("seed", INT64_MIN, INT64_MAX, &seed, &p.has_seed)) return e;
  p.sampling.seed = uint64_t(seed);
  if (auto e = f.boolean("ignore_eos", &p.ignore_eos)) return e;
  if (auto e = parse_stop(f, limits, &p)) return e;
  if (const json* ids = f.get("stop_token_ids")) {
    if (auto e = parse_token_list(*ids, "stop_token_ids", vocab, &p.stop_ids)) return e;
  }
  if (auto e = parse_logit_bias(f, vocab, &p)) return e;
  if (auto e = f.boolean("include_stop_str_in_output", &p.include_stop_str_in_output)) return e;
  if (auto e = f.boolean("skip_special_tokens", &p.skip_special_tokens)) return e;
  // Accepted and ignored by design (request_fields.cpp), but still of the documented type.
  bool spaces = true;
  if (auto e = f.boolean("spaces_between_special_tokens", &spaces)) return e;
  std::string user;
  if (auto e = f.string("user", &user)) return e;

  int64_t n = 1;
  if (auto e = f.integer("n", 1, limits.max_choices, &n)) return e;
  r->n = int(n);
  if (const json* best_of = f.get("best_of")) {
    if (*best_of != json(r->n))
      return ApiError::bad_request("best_of", "'best_of' other than n is not supported");
  }
  return std::nullopt;
}

// max_tokens / max_completion_tokens and min_tokens, per prompt: a default max_tokens shrinks
// to fit the context.
std::optional<ApiError> parse_lengths(const Fields& f, Endpoint endpoint,
                                      const RequestLimits& limits, CompletionRequest* r) {
  int64_t max_tokens = 0;
  bool given = false;
  const char* max_name = "max_tokens";
  if (endpoint == Endpoint::chat && f.get("max_completion_tokens"))
    max_name = "max_completion_tokens";
  // No upper bound here: the context check below says what fits.
  if (auto e = f.integer(max_name, 0, int64_t(1) << 30, &max_tokens, &given)) return e;
  if (given && max_tokens == 0 && !r->echo && r->prompt_logprobs < 0) {
    return ApiError::bad_request(
        max_name, fmt::format("'{}' is 0; it must be at least 1, or 0 with echo or "
                              "prompt_logprobs (the prompt scored, nothing generated)",
                              max_name));
  }
  int64_t min_tokens = 0;
  if (auto e = f.integer("min_tokens", 0, int64_t(1) << 30, &min_tokens)) return e;
  r->params.min_tokens = int(min_tokens);

  const char* prompt_param = endpoint == Endpoint::chat ? "messages" : "prompt";
  for (const auto& prompt : r->prompts) {
    int len = int(prompt.size());
    if (len == 0) return ApiError::bad_request(prompt_param, "the prompt is empty");
    if (len >= limits.max_context) {
      return ApiError::bad_request(
          prompt_param, fmt::format("This model's maximum context length is {} tokens; the "
                                    "prompt has {} tokens. Shorten the prompt.",
                                    limits.max_context, len));
    }
    if (given && len + max_tokens > limits.max_context) {
      return ApiError::bad_request(
          max_name, fmt::format("This model's maximum context length is {} tokens. However, you "
                                "requested {} tokens ({} in the prompt, {} in the completion). "
                                "Reduce the prompt or the completion length.",
                                limits.max_context, len + max_tokens, len, max_tokens));
    }
    // Defaults: OpenAI's 16 for completions; the rest of the context for chat (vLLM).
    int fallback = endpoint == Endpoint::chat ? limits.max_context - len
                                              : std::min(16, limits.max_context - len);
    int resolved = given ? int(max_tokens) : fallback;
    if (min_tokens > resolved) {
      return ApiError::bad_request(
          "min_tokens", fmt::format("'min_tokens' is {}; it must be at most {} = {}", min_tokens,
                                    given ? max_name : "the default max_tokens", resolved));
    }
    r->max_tokens.push_back(resolved);
  }
  return std::nullopt;
}

// Structured output: at most one of response_format (json_object, json_schema), guided_json,
// guided_regex, guided_choice and guided_grammar (vLLM's fields), compiled into the grammar
// every choice's draws are masked by.
// A forced tool call (`tool_call`: tool_choice required or named) is one more such constraint.
std::optional<ApiError> parse_structured_output(const Fields& f, engine::GrammarCompiler* grammars,
                                                std::optional<engine::GrammarSpec> tool_call,
                                                engine::RequestParams* p) {
  using Kind = engine::GrammarSpec::Kind;
  std::optional<engine::GrammarSpec> spec;
  std::string field;
  auto give = [&](const char* name, engine::GrammarSpec s) -> std::optional<ApiError> {
    if (spec) {
      return ApiError::bad_request(
          name, fmt::format("'{}' and '{}' both constrain the output; give one", field, name));
    }
    field = name;
    spec = std::move(s);
    return std::nullopt;
  };
  if (tool_call) {
    field = "tool_choice";
    spec = std::move(tool_call);
  }
  if (const json* rf = f.get("response_format")) {
    const json* type = rf->is_object() && rf->contains("type") ? &(*rf)["type"] : nullptr;
    if (!type || !type->is_string()) {
      return Fields::type_error("response_format",
                                "an object with \"type\": \"text\", \"json_object\" or "
                                "\"json_schema\"");
    }
    if (*type == "json_object") {
      if (auto e = give("response_format", {Kind::json_object, {}, {}, {}, {}})) return e;
    } else if (*type == "json_schema") {
      const json* js = rf->contains("json_schema") ? &(*rf)["json_schema"] : nullptr;
      if (!js || !js->is_object() || !js->contains("schema") || !(*js)["schema"].is_object()) {
        return ApiError::bad_request(
            "response_format",
            "response_format json_schema needs \"json_schema\": {\"name\": "
            "..., \"schema\": {a JSON schema object}}");
      }
      if (auto e = give("response_format", {Kind::json_schema, (*js)["schema"].dump(), {}, {}, {}}))
        return e;
    } else if (*type != "text") {
      return ApiError::bad_request(
          "response_format",
          fmt::format("response_format type {} is not one of \"text\", \"json_object\", "
                      "\"json_schema\"",
                      type->dump()));
    }
  }
  if (const json* v = f.get("guided_json")) {
    if (!v->is_object() && !v->is_string())
      return Fields::type_error("guided_json", "a JSON schema (an object, or one as a string)");
    std::string schema = v->is_string() ? v->get<std::string>() : v->dump();
    if (auto e = give("guided_json", {Kind::json_schema, std::move(schema), {}, {}, {}})) return e;
  }
  if (const json* v = f.get("guided_regex")) {
    if (!v->is_string() || v->get_ref<const std::string&>().empty())
      return Fields::type_error("guided_regex", "a non-empty regular expression string");
    if (auto e = give("guided_regex", {Kind::regex, v->get<std::string>(), {}, {}, {}})) return e;
  }
  if (const json* v = f.get("guided_choice")) {
    engine::GrammarSpec s{Kind::choice, {}, {}, {}, {}};
    if (v->is_array()) {
      for (const json& c : *v) {
        if (!c.is_string() || c.get_ref<const std::string&>().empty()) break;
        s.choices.push_back(c.get<std::string>());
      }
    }
    if (!v->is_array() || v->empty() || s.choices.size() != v->size())
      return Fields::type_error("guided_choice", "a non-empty list of non-empty strings");
    if (auto e = give("guided_choice", std::move(s))) return e;
  }
  if (const json* v = f.get("guided_grammar")) {
    if (!v->is_string() || v->get_ref<const std::string&>().empty())
      return Fields::type_error("guided_grammar", "an EBNF grammar (GBNF) with a root rule");
    if (auto e = give("guided_grammar", {Kind::ebnf, v->get<std::string>(), {}, {}, {}})) return e;
  }
  if (!spec) return std::nullopt;
  if (p->min_tokens > 0) {
    return ApiError::bad_request(
        "min_tokens", fmt::format("'min_tokens' cannot be combined with '{}': the grammar decides "
                                  "where the output ends",
                                  field));
  }
  if (p->ignore_eos && p->stop_ids.empty()) {
    return ApiError::bad_request(
        "ignore_eos", fmt::format("'{}' ends the output at a stop token: with 'ignore_eos', give "
                                  "'stop_token_ids'",
                                  field));
  }
  if (!grammars)
    return ApiError::bad_request(
        field, fmt::format("'{}' is not supported: structured output needs the server's grammar "
                           "compiler",
                           field));
  auto compiled = grammars->compile(*spec);
  if (!compiled.ok()) {
    return ApiError::bad_request(
        field, fmt::format("'{}' cannot be compiled: {}", field, compiled.status().message()));
  }
  p->grammar = std::move(compiled).value();
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_completion_request(Endpoint endpoint, std::string_view body,
                                                 const tokenizer::Tokenizer& tok,
                                                 const RequestLimits& limits, CompletionRequest* r,
                                                 engine::GrammarCompiler* grammars) {
  *r = CompletionRequest{};
  r->endpoint = endpoint;
  json parsed;
  if (auto e = parse_json_object(body, &parsed)) return e;
  Fields f(parsed);

  if (auto e = check_model(f, limits.served_model, &r->model)) return e;
  if (auto e =
          check_fields(endpoint == Endpoint::chat ? FieldSet::chat : FieldSet::completions, parsed))
    return e;
  if (auto e = parse_sampling(f, limits, tok.vocab_size(), r)) return e;
  if (auto e = f.boolean("echo", &r->echo)) return e;
  if (auto e = parse_stream(f, r)) return e;
  if (auto e = parse_logprobs(f, endpoint, limits, r)) return e;

  // BOS: completions add the tokenizer's by default; a chat template writes its own (vLLM).
  bool add_special = endpoint == Endpoint::completions;
  if (auto e = f.boolean("add_special_tokens", &add_special)) return e;
  ToolsInput tools;
  if (endpoint == Endpoint::chat) {
    if (auto e = parse_tools_input(f, body, limits.tool_format, &tools)) return e;
    r->parse_tool_calls = tools.parse_calls();
    r->tool_format = limits.tool_format;
    r->max_tool_calls = tools.parallel ? 0 : 1;
    // Mistral's [TOOL_CALLS] (and [ARGS]) are control tokens: a call is readable only if their
    // text stays in the output (vLLM's mistral parser turns skip_special_tokens off the same
    // way). A request that sets skip_special_tokens itself keeps its choice.
    if (r->parse_tool_calls && r->tool_format == ToolCallFormat::mistral &&
        !f.get("skip_special_tokens"))
      r->params.skip_special_tokens = false;
  }
  PromptInput input;
  if (auto e = endpoint == Endpoint::chat ? parse_messages(f, tok, add_special, tools.tools, &input)
                                          : parse_prompt(f, tok, add_special, &input)) {
    return e;
  }
  r->prompts = std::move(input.ids);
  if (r->echo)
    r->echo_texts = std::move(input.echo_texts);
  else
    r->echo_texts.assign(r->prompts.size(), "");
  if (r->choices() > limits.max_choices) {
    return ApiError::bad_request(
        "n", fmt::format("{} prompts times n = {} is {} choices; at most {} are accepted",
                         r->prompts.size(), r->n, r->choices(), limits.max_choices));
  }
  if (auto e = parse_lengths(f, endpoint, limits, r)) return e;
  // Last: compiling a grammar costs the most, and a request refused otherwise never pays it.
  return parse_structured_output(f, grammars, std::move(tools.grammar), &r->params);
}

std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out) {
  size_t bad = 0;
  if (!valid_utf8(body, &bad)) {
    return ApiError::bad_request(
        "", fmt::format("the request body is not valid UTF-8 (byte {}); send UTF-8 JSON", bad));
  }
  if (!json_depth_within(body)) {
    return ApiError::bad_request(
        "", fmt::format("the request body nests arrays and objects more than {} levels deep",
                        kMaxJsonDepth));
  }
  *out = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (out->is_discarded()) {
    // Parse again with exceptions for the parser's position and reason (a parse_error, or an
    // out_of_range for a number past a double).
    std::string why = "malformed JSON";
    try {
      json again = json::parse(body);
    } catch (const json::exception& e) {
      why = e.what();
    }
    return ApiError::bad_request("", fmt::format("the request body is not valid JSON: {}", why));
  }
  if (!out->is_object()) return ApiError::bad_request("", "the request body must be a JSON object");
  return std::nullopt;
}

std::optional<ApiError> check_model(const Fields& f, const std::string& served_model,
                                    std::string* name) {
  const json* model = f.get("model");
  if (!model) {
    *name = served_model;  // as vLLM: the model may be left out
    return std::nullopt;
  }
  if (!model->is_string()) return Fields::type_error("model", "a string");
  *name = model->get<std::string>();
  if (*name == served_model) return std::nullopt;
  return ApiError{
      404,
      fmt::format("The model `{}` does not exist; this server serves `{}`", *name, served_model),
      "invalid_request_error", "model", "model_not_found"};
}

}  // namespace invar::server
