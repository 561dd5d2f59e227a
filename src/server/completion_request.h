// Parsing and validation of POST /v1/completions and /v1/chat/completions bodies into what the
// engine runs. Every field is checked for type and range before anything reaches the engine,
// and every rejection names the field (`param`) and says what would be accepted.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "engine/grammar.h"
#include "engine/request.h"
#include "server/api_error.h"
#include "server/json_fields.h"
#include "server/tool_calls.h"
#include "tokenizer/tokenizer.h"

namespace invar::server {

enum class Endpoint : uint8_t { completions, chat };

// What the server knows that requests are validated against.
struct RequestLimits {
  std::string served_model;  // the only model name accepted (besides none at all)
  int max_context = 4096;    // prompt + completion tokens per sequence
  int max_choices = 16;      // n times the number of prompts
  int max_logprobs = 20;     // logprobs / top_logprobs
  int max_stop_strings = 16;
  // How the model writes tool calls (`serve --tool-call-parser`, else its template's format).
  ToolCallFormat tool_format = ToolCallFormat::hermes;
};

struct CompletionRequest {
  Endpoint endpoint = Endpoint::completions;
  std::string model;  // the name to echo in responses
  // Tokenized prompts: one for chat, one or more for completions (a batched prompt list).
  std::vector<std::vector<int32_t>> prompts;
  // Per prompt, with echo: the text put before each choice's output (completions: the prompt;
  // chat: a final assistant message); empty otherwise.
  std::vector<std::string> echo_texts;
  int n = 1;  // choices per prompt
  bool stream = false;
  bool include_usage = false;  // stream_options.include_usage
  bool logprobs = false;       // report the sampled tokens' logprobs
  int top_logprobs = 0;        // and this many alternatives per token
  bool echo = false;
  int prompt_logprobs = -1;       // vLLM's prompt_logprobs field (-1: not asked)
  bool return_token_ids = false;  // token_ids and prompt_token_ids in the response (vLLM)
  bool tokens_as_ids = false;     // return_tokens_as_token_ids: logprobs tokens as "token_id:N"
  std::vector<int> max_tokens;    // per prompt (a default shrinks to fit the context)
  // Chat with tools and a tool_choice other than none: calls are parsed out of the output in
  // this format (tool_calls.h), and a choice that made any finishes with "tool_calls".
  bool parse_tool_calls = false;
  ToolCallFormat tool_format = ToolCallFormat::hermes;
  int max_tool_calls = 0;  // per choice; 0: all the model writes (parallel_tool_calls: false: 1)

  // Completions with echo and logprobs list the prompt's tokens (the first with null logprobs)
  // before the output's, as vLLM does.
  bool echo_logprobs() const { return echo && logprobs && endpoint == Endpoint::completions; }
  // Shared by every choice; prompt and max_tokens are filled in per choice.
  engine::RequestParams params;

  int choices() const { return n * int(prompts.size()); }
  // The engine request of choice `index`: prompt index / n, seed + index % n (distinct seeds
  // for the n choices; without a seed the engine draws one per request). Every choice computes
  // its prompt logprobs when any are shown (the same bits each time).
  engine::RequestParams choice_params(int index) const;
};

// Parses `body` (raw bytes as received) for `endpoint`. On failure returns the error to send.
// Structured output (response_format json_object / json_schema, guided_json, guided_regex,
// guided_choice, guided_grammar, and tool_choice required or named) is compiled by `grammars`;
// without one it is refused.
std::optional<ApiError> parse_completion_request(Endpoint endpoint, std::string_view body,
                                                 const tokenizer::Tokenizer& tok,
                                                 const RequestLimits& limits,
                                                 CompletionRequest* out,
                                                 engine::GrammarCompiler* grammars = nullptr);

// The body as a JSON object: a 400 for bytes that are not UTF-8, malformed JSON or another type.
std::optional<ApiError> parse_json_object(std::string_view body, nlohmann::json* out);

// `model`, when given, must be the served one (404 model_not_found otherwise); `*name` is the
// name to show in responses.
std::optional<ApiError> check_model(const Fields& f, const std::string& served_model,
                                    std::string* name);

// Whether `s` is well-formed UTF-8; on failure `*bad_offset` is the first offending byte.
bool valid_utf8(std::string_view s, size_t* bad_offset = nullptr);

}  // namespace invar::server
