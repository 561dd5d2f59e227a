// OpenAI response shapes for completions and chat completions: whole responses, SSE chunks,
// logprobs, usage, the model list and error bodies. Pure formatting: no I/O, no engine calls.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/request.h"
#include "server/completion_request.h"

namespace invar::server {

// What every response and chunk of one API request repeats.
struct ResponseHeader {
  Endpoint endpoint = Endpoint::completions;
  std::string id;  // cmpl-... / chatcmpl-...
  int64_t created = 0;
  std::string model;
  std::string fingerprint;  // Engine::fingerprint(): equal fingerprints promise equal bits
};

// One choice as the engine delivered it, accumulated over its events.
struct ChoiceResult {
  std::string text;
  std::vector<engine::GeneratedToken> tokens;          // with logprobs or return_token_ids
  std::vector<engine::PromptLogprob> prompt_logprobs;  // from the second prompt token on
  engine::FinishReason finish = engine::FinishReason::none;
};

struct Usage {
  int prompt_tokens = 0;  // each prompt counted once, whatever n is
  int completion_tokens = 0;
  int cached_tokens = 0;
};

// A token's text for logprobs: itself when valid UTF-8, else OpenAI's "bytes:\xe2\x80" form.
std::string token_display(const std::string& bytes);

// echo with logprobs: the prompt's tokens as logprobs entries, the first one's logprob unused
// (shown as null), each with the `top` best of its alternatives.
std::vector<engine::GeneratedToken> echo_tokens(const std::vector<int32_t>& prompt,
                                                const std::vector<engine::PromptLogprob>& scored,
                                                int top, const tokenizer::Tokenizer& tok);
// "stop", "length"; "abort" for cancelled, "error" for errors.
const char* finish_reason_text(engine::FinishReason r);
// The finish reason shown: "tool_calls" for an output that stopped after making calls.
const char* finish_reason_text(engine::FinishReason r, bool called_tools);

// The whole (non-streaming) response. With parse_tool_calls, a chat choice's text is split into
// content (null when only calls remain) and tool_calls, each call given a fresh id.
std::string format_response(const ResponseHeader& h, const CompletionRequest& request,
                            const std::vector<ChoiceResult>& choices, const Usage& usage,
                            const tokenizer::Tokenizer& tok);

// One streamed chunk for choice `index`: new text and its tokens (logprobs when asked), and the
// finish reason on the last. `text_offset` is where this text starts in the choice's output
// (completions logprobs). Chat's first chunk of a choice carries the assistant role.
struct ChunkPart {
  int index = 0;
  std::string text;
  const std::vector<engine::GeneratedToken>* tokens = nullptr;
  // echo with logprobs: tokens begin with this many of the prompt's (the first without a logprob)
  size_t echoed = 0;
  int text_offset = 0;
  bool first = false;
  // return_token_ids: the choice's prompt, on its first chunk
  const std::vector<int32_t>* prompt_ids = nullptr;
  engine::FinishReason finish = engine::FinishReason::none;
  bool called_tools = false;  // with finish: the choice made tool calls
  // A tool call delta instead of text (chat): delta.tool_calls[0] = {index, id, type,
  // function: {name, arguments}}, where the call's first delta carries id, type and name (and
  // arguments ""), and the next ones arguments only.
  struct ToolCallPart {
    int index = -1;  // -1: no tool call in this chunk
    std::string id, name, arguments;
  } tool_call;
};
std::string format_chunk(const ResponseHeader& h, const CompletionRequest& request,
                         const ChunkPart& part, const tokenizer::Tokenizer& tok);
// The final stream chunk with usage and no choices (stream_options.include_usage).
std::string format_usage_chunk(const ResponseHeader& h, const Usage& usage);

// "data: <json>\n\n"
std::string sse_event(const std::string& json);
inline constexpr const char* kSseDone = "data: [DONE]\n\n";

std::string format_model_list(const std::string& model, int64_t created, int max_context);
std::string format_model(const std::string& model, int64_t created, int max_context);

}  // namespace invar::server
