// The field tables of request_fields.h.
#include "server/request_fields.h"

#include <fmt/format.h>

#include <string_view>

namespace invar::server {

using nlohmann::json;

namespace {

enum Scope : uint8_t {
  kCompletions = 1,
  kChat = 2,
  kTokenizePrompt = 4,
  kTokenizeChat = 8,
  kDetokenize = 16,
  kGenerate = kCompletions | kChat,
  kTokenize = kTokenizePrompt | kTokenizeChat,
};

uint8_t scope_of(FieldSet set) {
  switch (set) {
    case FieldSet::completions:
      return kCompletions;
    case FieldSet::chat:
      return kChat;
    case FieldSet::tokenize_prompt:
      return kTokenizePrompt;
    case FieldSet::tokenize_chat:
      return kTokenizeChat;
    case FieldSet::detokenize:
      return kDetokenize;
  }
  return 0;
}

// Fields parsed and acted on (completion_request.cpp, tokenize.cpp), and the few accepted and
// ignored by design (marked): they change nothing invar computes.
struct Accepted {
  std::string_view name;
  uint8_t scope;
};
constexpr Accepted kAccepted[] = {
    {"model", kGenerate | kTokenize | kDetokenize},
    {"prompt", kCompletions | kTokenizePrompt},
    {"messages", kChat | kTokenizeChat},
    {"max_tokens", kGenerate},
    {"max_completion_tokens", kChat},
    {"temperature", kGenerate},
    {"top_p", kGenerate},
    {"top_k", kGenerate},
    {"min_p", kGenerate},
    {"presence_penalty", kGenerate},
    {"frequency_penalty", kGenerate},
    {"repetition_penalty", kGenerate},
    {"seed", kGenerate},
    {"n", kGenerate},
    {"best_of", kGenerate},  // equal to n only (completion_request.cpp)
    {"stop", kGenerate},
    {"stop_token_ids", kGenerate},
    {"ignore_eos", kGenerate},
    {"min_tokens", kGenerate},
    {"logit_bias", kGenerate},
    {"logprobs", kGenerate},
    {"top_logprobs", kChat},
    {"prompt_logprobs", kGenerate},
    {"echo", kGenerate},
    {"include_stop_str_in_output", kGenerate},
    {"skip_special_tokens", kGenerate},
    {"return_token_ids", kGenerate},
    {"return_tokens_as_token_ids", kGenerate},
    {"add_special_tokens", kGenerate | kTokenize},
    {"stream", kGenerate},
    {"stream_options", kGenerate},
    {"add_generation_prompt", kChat | kTokenizeChat},
    {"continue_final_message", kChat | kTokenizeChat},
    {"chat_template_kwargs", kChat | kTokenizeChat},
    {"response_format", kGenerate},  // structured output: completion_request.cpp
    {"guided_json", kGenerate},
    {"guided_regex", kGenerate},
    {"guided_choice", kGenerate},
    {"guided_grammar", kGenerate},
    {"tools", kChat | kTokenizeChat},  // tools_input.cpp
    {"tool_choice", kChat},
    {"parallel_tool_calls", kChat},
    {"return_token_strs", kTokenize},
    {"tokens", kDetokenize},
    // Ignored by design: who is asking (OpenAI's user, safety_identifier, metadata), a routing
    // hint for OpenAI's own cache (prompt_cache_key), a billing tier (service_tier), a decoding
    // option that only slow Python tokenizers act on (spaces_between_special_tokens: invar
    // decodes as Hugging Face's fast tokenizers do).
    {"user", kGenerate},
    {"safety_identifier", kGenerate},
    {"metadata", kGenerate},
    {"prompt_cache_key", kGenerate},
    {"service_tier", kGenerate},
    {"spaces_between_special_tokens", kGenerate},
};

// "", [] or {} (json::empty() is false for every string).
bool empty_value(const json& v) {
  if (v.is_string()) return v.get_ref<const std::string&>().empty();
  return (v.is_array() || v.is_object()) && v.empty();
}

// Known fields invar does not implement: accepted only at the value that asks for nothing
// (`is_default`), else a 400 saying why.
struct Refused {
  std::string_view name;
  uint8_t scope;
  bool (*is_default)(const json& v);
  std::string_view why;
};

constexpr auto kNever = [](const json&) { return false; };
constexpr auto kEmpty = [](const json& v) { return empty_value(v); };
constexpr auto kFalse = [](const json& v) { return v == false; };
constexpr const char* kStructured =
    "give the constraint in response_format, guided_json, guided_regex, guided_choice or "
    "guided_grammar (compiled by XGrammar, with compact JSON)";
constexpr const char* kFunctions =
    "it is OpenAI's older form of 'tools' and 'tool_choice'; use those";

constexpr Refused kRefused[] = {
    {"suffix", kCompletions, kEmpty, "invar has no fill-in-the-middle"},
    {"functions", kChat, kEmpty, kFunctions},
    {"function_call", kChat, [](const json& v) { return v == "none" || v == "auto"; }, kFunctions},
    {"structured_outputs", kGenerate, kNever, kStructured},
    {"guided_decoding_backend", kGenerate,
     [](const json& v) { return v == "xgrammar" || v == "auto"; }, kStructured},
    {"guided_whitespace_pattern", kGenerate, kNever, kStructured},
    {"use_beam_search", kGenerate, kFalse, "invar has no beam search"},
    {"length_penalty", kGenerate, [](const json& v) { return v == 1 || v == 1.0; },
     "it applies to beam search, which invar does not have"},
    {"allowed_token_ids", kGenerate, kNever, "invar does not restrict the vocabulary per request"},
    {"bad_words", kGenerate, kEmpty, "invar does not ban words per request"},
    {"logprob_token_ids", kGenerate, kNever, "use logprobs / top_logprobs"},
    {"truncate_prompt_tokens", kGenerate | kTokenize, kNever,
     "invar does not truncate prompts; send one that fits the context"},
    {"truncation_side", kGenerate, kNever,
     "invar does not truncate prompts; send one that fits the context"},
    {"prompt_embeds", kCompletions, kNever, "invar takes text or token ids"},
    {"audio", kChat, kNever, "invar outputs text only"},
    {"modalities", kChat, [](const json& v) { return v == json::array({"text"}); },
     "invar outputs text only"},
    {"prediction", kChat, kNever, "invar has no predicted outputs"},
    {"web_search_options", kChat, kNever, "invar has no web search"},
    {"reasoning_effort", kChat, kNever, "pass template variables in chat_template_kwargs instead"},
    {"verbosity", kChat, kNever, "invar has no verbosity control"},
    {"include_reasoning", kChat, [](const json& v) { return v == true; },
     "invar does not separate reasoning from the content"},
    {"thinking_token_budget", kGenerate, kNever, "invar has no thinking budget"},
    {"store", kChat, kFalse, "invar stores no completions"},
    {"documents", kChat | kTokenizeChat, kNever,
     "pass them to the template in chat_template_kwargs"},
    {"chat_template", kChat | kTokenizeChat, kNever, "start the server with --chat-template FILE"},
    {"mm_processor_kwargs", kChat, kNever, "invar takes text input only"},
    {"media_io_kwargs", kChat, kNever, "invar takes text input only"},
    {"cache_salt", kGenerate, kNever, "invar has no per-request cache salt"},
    {"priority", kGenerate, [](const json& v) { return v == 0; },
     "invar schedules first come, first served"},
    {"watermarking", kGenerate, kFalse, "invar has no watermarking"},
    {"repetition_detection", kGenerate, kNever, "invar has no repetition detection"},
    {"stream_interval", kGenerate, kNever, "invar streams every token as it comes"},
    {"kv_transfer_params", kGenerate, kNever, "invar has no KV transfer"},
    {"vllm_xargs", kGenerate, kNever, "invar has no request extensions"},
};

}  // namespace

std::optional<ApiError> check_fields(FieldSet set, const json& body) {
  const uint8_t scope = scope_of(set);
  for (const auto& [key, value] : body.items()) {
    if (value.is_null()) continue;
    bool accepted = false;
    for (const Accepted& a : kAccepted) accepted = accepted || (a.name == key && (a.scope & scope));
    if (accepted) continue;
    const Refused* refused = nullptr;
    for (const Refused& r : kRefused)
      if (r.name == key && (r.scope & scope)) refused = &r;
    if (refused) {
      if (refused->is_default(value)) continue;
      return ApiError::bad_request(key,
                                   fmt::format("'{}' is not supported: {}", key, refused->why));
    }
    return ApiError::bad_request(
        key, fmt::format("unknown field '{}': this route does not take it (docs/server.md lists "
                         "every field invar accepts)",
                         key));
  }
  return std::nullopt;
}

}  // namespace invar::server
