// Request bodies as vLLM and OpenAI accept them; see completion_request.h.
#include "server/completion_request.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include "core/json_depth.h"
#include "tokenizer/chat_template.h"

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

// Typed access to the request object. A field that is absent or null takes its default; one of
// the wrong type or out of range is an error naming it.
class Fields {
 public:
  explicit Fields(const json& body) : body_(body) {}

  const json* get(const char* name) const {
    auto it = body_.find(name);
    return it == body_.end() || it->is_null() ? nullptr : &*it;
  }

  std::optional<ApiError> boolean(const char* name, bool* out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return type_error(name, "a boolean");
    *out = v->get<bool>();
    return std::nullopt;
  }

  // Integers, also written as 16.0; `*given` tells whether the field was there.
  std::optional<ApiError> integer(const char* name, int64_t lo, int64_t hi, int64_t* out,
                                  bool* given = nullptr) const {
    const json* v = get(name);
    if (given) *given = v != nullptr;
    if (!v) return std::nullopt;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > uint64_t(INT64_MAX))
        return range_error(name, lo, hi, v->dump());
      *out = v->get<int64_t>();
    } else if (v->is_number_float() && std::nearbyint(v->get<double>()) == v->get<double>() &&
               std::fabs(v->get<double>()) < 9e15) {
      *out = int64_t(v->get<double>());
    } else {
      return type_error(name, "an integer");
    }
    if (*out < lo || *out > hi) return range_error(name, lo, hi, v->dump());
    return std::nullopt;
  }

  // A number in [lo, hi] (open at lo when lo_open).
  std::optional<ApiError> number(const char* name, double lo, double hi, bool lo_open,
                                 float* out) const {
    const json* v = get(name);
    if (!v) return std::nullopt;
    if (!v->is_number()) return type_error(name, "a number");
    double x = v->get<double>();
    if (!std::isfinite(x) || x < lo || x > hi || (lo_open && x == lo)) {
      return ApiError::bad_request(name, fmt::format("'{}' is {}; it must be {} {} and <= {}", name,
                                                     v->dump(), lo_open ? ">" : ">=", lo, hi));
    }
    *out = float(x);
    return std::nullopt;
  }

  static ApiError type_error(const std::string& name, const char* expected) {
    return ApiError::bad_request(name, fmt::format("'{}' must be {}", name, expected));
  }
  static ApiError range_error(const std::string& name, int64_t lo, int64_t hi,
                              const std::string& got) {
    return ApiError::bad_request(
        name, fmt::format("'{}' is {}; it must be between {} and {}", name, got, lo, hi));
  }

 private:
  const json& body_;
};

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

std::optional<ApiError> token_list(const json& list, const char* param, int32_t vocab,
                                   std::vector<int32_t>* out) {
  for (const auto& t : list) {
    if (!t.is_number_integer()) return Fields::type_error(param, "a list of integer token ids");
    int64_t id = t.get<int64_t>();
    if (id < 0 || id >= vocab) {
      return ApiError::bad_request(
          param,
          fmt::format("token id {} in '{}' is outside the vocabulary [0, {})", id, param, vocab));
    }
    out->push_back(int32_t(id));
  }
  return std::nullopt;
}

// prompt: "text", ["text", ...], [ids...], or [[ids...], ...].
std::optional<ApiError> parse_prompts(const Fields& f, const tokenizer::Tokenizer& tok,
                                      std::vector<std::vector<int32_t>>* prompts) {
  const json* prompt = f.get("prompt");
  if (!prompt) return ApiError::bad_request("prompt", "'prompt' is required");
  auto encode = [&](const json& text) -> std::optional<ApiError> {
    // Checked before encoding: a BOS alone would hide an empty prompt.
    if (text.get_ref<const std::string&>().empty())
      return ApiError::bad_request("prompt", "the prompt is empty");
    // parse_special: special tokens written in the text are matched, as Hugging Face does.
    prompts->push_back(tok.encode(text.get<std::string>(), tok.add_bos_default(), true));
    return std::nullopt;
  };
  const char* kShape = "a string, a list of strings, a list of token ids or a list of such lists";
  if (prompt->is_string()) return encode(*prompt);
  if (!prompt->is_array() || prompt->empty()) return Fields::type_error("prompt", kShape);
  if ((*prompt)[0].is_number_integer()) {
    prompts->emplace_back();
    return token_list(*prompt, "prompt", tok.vocab_size(), &prompts->back());
  }
  for (const auto& item : *prompt) {
    if (item.is_string()) {
      if (auto e = encode(item)) return e;
    } else if (item.is_array()) {
      prompts->emplace_back();
      if (auto e = token_list(item, "prompt", tok.vocab_size(), &prompts->back())) return e;
    } else {
      return Fields::type_error("prompt", kShape);
    }
  }
  return std::nullopt;
}

// messages: [{role, content: "text" | [{type: "text", text}] | null}], through the chat template
// with add_generation_prompt, continue_final_message and chat_template_kwargs (vLLM's fields).
std::optional<ApiError> parse_messages(const Fields& f, const tokenizer::Tokenizer& tok,
                                       std::vector<std::vector<int32_t>>* prompts) {
  const json* messages = f.get("messages");
  if (!messages) return ApiError::bad_request("messages", "'messages' is required");
  if (!messages->is_array() || messages->empty())
    return Fields::type_error("messages", "a non-empty list of {role, content} objects");
  tokenizer::ChatTemplateInputs inputs;
  if (auto e = f.boolean("add_generation_prompt", &inputs.add_generation_prompt)) return e;
  if (auto e = f.boolean("continue_final_message", &inputs.continue_final_message)) return e;
  if (inputs.continue_final_message && inputs.add_generation_prompt) {
    return ApiError::bad_request(
        "continue_final_message",
        "'continue_final_message' continues the last message, 'add_generation_prompt' opens a "
        "new one: set 'add_generation_prompt': false with it");
  }
  if (const json* kwargs = f.get("chat_template_kwargs")) {
    if (!kwargs->is_object())
      return Fields::type_error("chat_template_kwargs", "an object of template variables");
    // Templates take ordered_json; the body's keys were sorted on parsing, no loss for a set of
    // variables.
    inputs.kwargs = nlohmann::ordered_json::parse(kwargs->dump());
    if (Status st = tokenizer::check_chat_template_kwargs(inputs.kwargs); !st.ok())
      return ApiError::bad_request("chat_template_kwargs", st.message());
  }

  std::vector<tokenizer::ChatMessage> chat;
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    std::string param = fmt::format("messages[{}]", i);
    if (!m.is_object()) return Fields::type_error(param, "an object with 'role' and 'content'");
    auto role = m.find("role");
    if (role == m.end() || !role->is_string())
      return Fields::type_error(param + ".role", "one of \"system\", \"user\", \"assistant\"");
    std::string r = role->get<std::string>();
    if (r == "developer") r = "system";  // OpenAI's newer name for the system role
    if (r != "system" && r != "user" && r != "assistant") {
      return ApiError::bad_request(
          param + ".role", fmt::format("role \"{}\" is not supported; use \"system\", \"user\" "
                                       "or \"assistant\"",
                                       role->get<std::string>()));
    }
    std::string text;
    auto content = m.find("content");
    if (content == m.end() || content->is_null()) {
      if (r != "assistant")
        return ApiError::bad_request(param + ".content", "'content' is required");
    } else if (content->is_string()) {
      text = content->get<std::string>();
    } else if (content->is_array()) {
      for (const auto& part : *content) {
        auto type = part.is_object() ? part.find("type") : part.end();
        auto part_text = part.is_object() ? part.find("text") : part.end();
        if (type == part.end() || *type != "text" || part_text == part.end() ||
            !part_text->is_string()) {
          return ApiError::bad_request(
              param + ".content",
              "only text content parts ({\"type\": \"text\", \"text\": ...}) "
              "are supported");
        }
        if (!text.empty()) text += "\n";  // parts joined as vLLM joins them
        text += part_text->get<std::string>();
      }
    } else {
      return Fields::type_error(param + ".content", "a string or a list of text parts");
    }
    chat.push_back({r, std::move(text)});
  }
  inputs.messages = tokenizer::chat_messages_json(chat);

  // The model's own template (or `serve --chat-template`'s); its errors, a raise_exception
  // included, are the client's to fix: 400.
  auto prompt = tokenizer::encode_chat(tok, inputs);
  if (!prompt.ok()) return ApiError::bad_request("messages", prompt.status().message());
  prompts->push_back(std::move(prompt).value());
  return std::nullopt;
}

// Fields whose non-default values invar does not implement: refused rather than ignored, so a
// client never silently gets something other than what it asked for.
std::optional<ApiError> refuse_unsupported(const Fields& f) {
  auto nonempty = [&](const char* name) {
    const json* v = f.get(name);
    return v && !(v->is_string() && v->get<std::string>().empty()) &&
           !((v->is_array() || v->is_object()) && v->empty());
  };
  for (const char* name : {"suffix", "logit_bias", "tools", "functions", "tool_choice"}) {
    if (nonempty(name) && !(std::string(name) == "tool_choice" && *f.get(name) == "none"))
      return ApiError::bad_request(name, fmt::format("'{}' is not supported", name));
  }
  bool echo = false;
  if (auto e = f.boolean("echo", &echo)) return e;
  if (echo) return ApiError::bad_request("echo", "'echo' is not supported");
  if (const json* best_of = f.get("best_of")) {
    const json* n = f.get("n");
    if (*best_of != (n ? *n : json(1)))
      return ApiError::bad_request("best_of", "'best_of' other than n is not supported");
  }
  if (const json* rf = f.get("response_format")) {
    auto type = rf->is_object() ? rf->find("type") : rf->end();
    if (type == rf->end() || *type != "text")
      return ApiError::bad_request("response_format", "only {\"type\": \"text\"} is supported");
  }
  return std::nullopt;
}

std::optional<ApiError> parse_sampling(const Fields& f, Endpoint endpoint,
                                       const RequestLimits& limits, int32_t vocab,
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
    if (!ids->is_array()) return Fields::type_error("stop_token_ids", "a list of token ids");
    if (auto e = token_list(*ids, "stop_token_ids", vocab, &p.stop_ids)) return e;
  }

  int64_t n = 1;
  if (auto e = f.integer("n", 1, limits.max_choices, &n)) return e;
  r->n = int(n);

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
  p.top_logprobs = r->logprobs ? r->top_logprobs : -1;

  if (auto e = f.boolean("stream", &r->stream)) return e;
  if (const json* so = f.get("stream_options")) {
    if (!so->is_object()) return Fields::type_error("stream_options", "an object");
    if (!r->stream)
      return ApiError::bad_request("stream_options", "'stream_options' needs 'stream': true");
    if (auto e = Fields(*so).boolean("include_usage", &r->include_usage)) return e;
  }
  return std::nullopt;
}

}  // namespace

std::optional<ApiError> parse_completion_request(Endpoint endpoint, std::string_view body,
                                                 const tokenizer::Tokenizer& tok,
                                                 const RequestLimits& limits,
                                                 CompletionRequest* r) {
  *r = CompletionRequest{};
  r->endpoint = endpoint;
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
  json parsed = json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) {
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
  if (!parsed.is_object())
    return ApiError::bad_request("", "the request body must be a JSON object");
  Fields f(parsed);

  if (const json* model = f.get("model")) {
    if (!model->is_string()) return Fields::type_error("model", "a string");
    r->model = model->get<std::string>();
    if (r->model != limits.served_model) {
      return ApiError{404,
                      fmt::format("The model `{}` does not exist; this server serves `{}`",
                                  r->model, limits.served_model),
                      "invalid_request_error", "model", "model_not_found"};
    }
  } else {
    r->model = limits.served_model;  // as vLLM: the model may be left out
  }

  if (auto e = refuse_unsupported(f)) return e;
  if (auto e = parse_sampling(f, endpoint, limits, tok.vocab_size(), r)) return e;

  int64_t max_tokens = 0;
  bool given = false;
  const char* max_name = "max_tokens";
  if (endpoint == Endpoint::chat && f.get("max_completion_tokens"))
    max_name = "max_completion_tokens";
  // No upper bound here: the context check below says what fits.
  if (auto e = f.integer(max_name, 1, int64_t(1) << 30, &max_tokens, &given)) return e;

  const char* prompt_param = endpoint == Endpoint::chat ? "messages" : "prompt";
  if (auto e = endpoint == Endpoint::chat ? parse_messages(f, tok, &r->prompts)
                                          : parse_prompts(f, tok, &r->prompts)) {
    return e;
  }
  if (r->choices() > limits.max_choices) {
    return ApiError::bad_request(
        "n", fmt::format("{} prompts times n = {} is {} choices; at most {} are accepted",
                         r->prompts.size(), r->n, r->choices(), limits.max_choices));
  }
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
    r->max_tokens.push_back(given ? int(max_tokens) : fallback);
  }
  return std::nullopt;
}

}  // namespace invar::server
