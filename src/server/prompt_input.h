// The prompt of a request as token ids: `prompt` (completions, /tokenize) in any of its four
// shapes, or `messages` rendered by the model's chat template with add_generation_prompt,
// continue_final_message and chat_template_kwargs (vLLM's fields).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "server/json_fields.h"
#include "tokenizer/tokenizer.h"

namespace invar::server {

struct PromptInput {
  std::vector<std::vector<int32_t>> ids;  // one per prompt
  // Per prompt, what `echo` puts before the output: a completions prompt's text (token-id
  // prompts decoded); for chat, the last message's content when it is the assistant's (vLLM).
  std::vector<std::string> echo_texts;
};

// prompt: "text", ["text", ...], [ids...], or [[ids...], ...]. add_special: the tokenizer's BOS
// (add_special_tokens, default true).
std::optional<ApiError> parse_prompt(const Fields& f, const tokenizer::Tokenizer& tok,
                                     bool add_special, PromptInput* out);

// messages: [{role, content: "text" | [{type: "text", text}] | null, name}], roles system
// (developer), user, assistant and tool. An assistant message may carry the calls it made
// (tool_calls: [{id, type: "function", function: {name, arguments: "JSON text"}}], handed to the
// template with the arguments as an object, as transformers does); a tool message answers one
// (tool_call_id, required). `tools` (null for none) is the template's `tools` variable. The
// template writes its own special tokens; add_special (add_special_tokens, default false) adds
// BOS on top.
std::optional<ApiError> parse_messages(const Fields& f, const tokenizer::Tokenizer& tok,
                                       bool add_special, const nlohmann::ordered_json& tools,
                                       PromptInput* out);

// A list of token ids in [0, vocab) appended to `out`; errors name `param`.
std::optional<ApiError> parse_token_list(const nlohmann::json& list, const std::string& param,
                                         int32_t vocab, std::vector<int32_t>* out);

}  // namespace invar::server
