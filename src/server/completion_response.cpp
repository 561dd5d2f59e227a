// OpenAI response shapes; see completion_response.h.
#include "server/completion_response.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <nlohmann/json.hpp>

namespace invar::server {

using Json = nlohmann::ordered_json;  // keeps "id" first, as OpenAI writes it

namespace {

// Invalid UTF-8 in generated text never reaches here (the engine's stream decoder holds
// partial characters), but a replacement beats an exception if it ever does.
std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// JSON has no -inf; a token of probability 0 gets vLLM's floor. NaN marks a logprob that was
// never computed (an echoed prompt whose request was cancelled first): null.
Json finite_logprob(float lp) {
  if (std::isnan(lp)) return nullptr;
  return std::isfinite(lp) ? double(lp) : -9999.0;
}

Json byte_list(const std::string& s) {
  Json bytes = Json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return bytes;
}

// How a token is named in logprobs: its text (token_display), or "token_id:N" with
// return_tokens_as_token_ids, so that a client can map it back to the id exactly.
std::string token_name(const CompletionRequest& r, int32_t id, const std::string& bytes) {
  return r.tokens_as_ids ? fmt::format("token_id:{}", id) : token_display(bytes);
}

// completions: {tokens, token_logprobs, top_logprobs, text_offset}; with first_null (echo) the
// first entry's logprob and alternatives are null.
Json completion_logprobs(const CompletionRequest& r,
                         const std::vector<engine::GeneratedToken>& tokens, bool first_null,
                         int text_offset, const tokenizer::Tokenizer& tok) {
  Json out = {{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
  int offset = text_offset;
  for (size_t i = 0; i < tokens.size(); ++i) {
    const auto& t = tokens[i];
    std::string shown = token_name(r, t.id, t.text);
    out["tokens"].push_back(shown);
    out["text_offset"].push_back(offset);
    offset += int(t.text.size());
    if (i == 0 && first_null) {
      out["token_logprobs"].push_back(nullptr);
      out["top_logprobs"].push_back(nullptr);
      continue;
    }
    out["token_logprobs"].push_back(finite_logprob(t.logprob));
    Json top = Json::object();
    for (const auto& alt : t.top) {
      std::string alt_shown = token_name(r, alt.id, tok.token_bytes(alt.id));
      if (!top.contains(alt_shown)) top[alt_shown] = finite_logprob(alt.logprob);
    }
    if (t.top.empty()) top[shown] = finite_logprob(t.logprob);  // logprobs=0: the token itself
    out["top_logprobs"].push_back(std::move(top));
  }
  return out;
}

// chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}
Json chat_logprobs(const CompletionRequest& r, const std::vector<engine::GeneratedToken>& tokens,
                   const tokenizer::Tokenizer& tok) {
  Json content = Json::array();
  for (const auto& t : tokens) {
    Json top = Json::array();
    for (const auto& alt : t.top) {
      std::string bytes = tok.token_bytes(alt.id);
      top.push_back({{"token", token_name(r, alt.id, bytes)},
                     {"logprob", finite_logprob(alt.logprob)},
                     {"bytes", byte_list(bytes)}});
    }
    content.push_back({{"token", token_name(r, t.id, t.text)},
                       {"logprob", finite_logprob(t.logprob)},
                       {"bytes", byte_list(t.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

Json logprobs_json(const CompletionRequest& r, const std::vector<engine::GeneratedToken>* tokens,
                   bool first_null, int text_offset, const tokenizer::Tokenizer& tok) {
  if (!r.logprobs) return nullptr;
  static const std::vector<engine::GeneratedToken> kNone;
  const auto& list = tokens ? *tokens : kNone;
  return r.endpoint == Endpoint::chat ? chat_logprobs(r, list, tok)
                                      : completion_logprobs(r, list, first_null, text_offset, tok);
}

// vLLM's prompt_logprobs: [null, {"id": {logprob, rank, decoded_token}, ...}, ...], the prompt
// token first, then its best `top` alternatives.
Json prompt_logprobs_json(const std::vector<engine::PromptLogprob>& scored, int top,
                          const tokenizer::Tokenizer& tok) {
  Json out = Json::array({nullptr});
  auto entry = [&](int32_t id, float logprob, int32_t rank) {
    return Json{{"logprob", finite_logprob(logprob)},
                {"rank", rank},
                {"decoded_token", token_display(tok.token_bytes(id))}};
  };
  for (const auto& p : scored) {
    Json position = Json::object();
    position[std::to_string(p.id)] = entry(p.id, p.logprob, p.rank);
    for (size_t i = 0; i < p.top.size() && int(i) < top; ++i) {
      std::string key = std::to_string(p.top[i].id);
      if (!position.contains(key)) position[key] = entry(p.top[i].id, p.top[i].logprob, int(i + 1));
    }
    out.push_back(std::move(position));
  }
  return out;
}

Json token_ids_json(const std::vector<engine::GeneratedToken>& tokens) {
  Json ids = Json::array();
  for (const auto& t : tokens) ids.push_back(t.id);
  return ids;
}

Json usage_json(const Usage& u) {
  return {{"prompt_tokens", u.prompt_tokens},
          {"completion_tokens", u.completion_tokens},
          {"total_tokens", u.prompt_tokens + u.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", u.cached_tokens}}}};
}

Json envelope(const ResponseHeader& h, const char* object) {
  return {{"id", h.id},
          {"object", object},
          {"created", h.created},
          {"model", h.model},
          {"system_fingerprint", h.fingerprint}};
}

Json finish_json(engine::FinishReason r, bool called_tools = false) {
  return r == engine::FinishReason::none ? Json(nullptr)
                                         : Json(finish_reason_text(r, called_tools));
}

// A chat choice's message; with tool-call parsing, the calls split out of the text.
Json chat_message(const CompletionRequest& request, const std::string& text, bool* called) {
  *called = false;
  if (!request.parse_tool_calls) return {{"role", "assistant"}, {"content", text}};
  ToolCallDelta parsed = parse_tool_calls(request.tool_format, text);
  if (request.max_tool_calls > 0 && int(parsed.calls.size()) > request.max_tool_calls)
    parsed.calls.resize(size_t(request.max_tool_calls));
  if (parsed.calls.empty()) return {{"role", "assistant"}, {"content", parsed.content}};
  *called = true;
  Json calls = Json::array();
  for (const ToolCall& c : parsed.calls) {
    calls.push_back({{"id", tool_call_id(c.id, request.tool_format)},
                     {"type", "function"},
                     {"function", {{"name", c.name}, {"arguments", c.arguments}}}});
  }
  return {{"role", "assistant"},
          {"content", parsed.content.empty() ? Json(nullptr) : Json(parsed.content)},
          {"tool_calls", std::move(calls)}};
}

}  // namespace

std::string token_display(const std::string& bytes) {
  if (valid_utf8(bytes)) return bytes;
  std::string out = "bytes:";
  for (unsigned char c : bytes) out += fmt::format("\\x{:02x}", c);
  return out;
}

const char* finish_reason_text(engine::FinishReason r, bool called_tools) {
  return called_tools && r == engine::FinishReason::stop ? "tool_calls" : finish_reason_text(r);
}

const char* finish_reason_text(engine::FinishReason r) {
  switch (r) {
    case engine::FinishReason::stop:
      return "stop";
    case engine::FinishReason::length:
      return "length";
    case engine::FinishReason::cancelled:
      return "abort";
    case engine::FinishReason::error:
      return "error";
    case engine::FinishReason::none:
      break;
  }
  return "stop";
}

std::vector<engine::GeneratedToken> echo_tokens(const std::vector<int32_t>& prompt,
                                                const std::vector<engine::PromptLogprob>& scored,
                                                int top, const tokenizer::Tokenizer& tok) {
  std::vector<engine::GeneratedToken> out(prompt.size());
  for (size_t i = 0; i < prompt.size(); ++i) {
    out[i].id = prompt[i];
    out[i].text = tok.token_bytes(prompt[i]);
    out[i].logprob = std::numeric_limits<float>::quiet_NaN();
    if (i == 0 || i - 1 >= scored.size()) continue;
    const engine::PromptLogprob& p = scored[i - 1];
    out[i].logprob = p.logprob;
    out[i].top.assign(p.top.begin(), p.top.begin() + std::min<long>(long(p.top.size()), top));
  }
  return out;
}

std::string format_response(const ResponseHeader& h, const CompletionRequest& request,
                            const std::vector<ChoiceResult>& choices, const Usage& usage,
                            const tokenizer::Tokenizer& tok) {
  bool chat = h.endpoint == Endpoint::chat;
  Json out = envelope(h, chat ? "chat.completion" : "text_completion");
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    const size_t prompt = i / size_t(std::max(1, request.n));
    const std::string& echo =
        prompt < request.echo_texts.size() ? request.echo_texts[prompt] : std::string();
    Json choice = {{"index", int(i)}};
    bool called_tools = false;
    if (chat) {
      choice["message"] = chat_message(request, echo + c.text, &called_tools);
    } else {
      choice["text"] = echo + c.text;
    }
    if (request.echo_logprobs() && prompt < request.prompts.size()) {
      auto tokens =
          echo_tokens(request.prompts[prompt], c.prompt_logprobs, request.top_logprobs, tok);
      tokens.insert(tokens.end(), c.tokens.begin(), c.tokens.end());
      choice["logprobs"] = logprobs_json(request, &tokens, true, 0, tok);
    } else {
      choice["logprobs"] = logprobs_json(request, &c.tokens, false, 0, tok);
    }
    choice["finish_reason"] = finish_json(c.finish, called_tools);
    if (request.return_token_ids) {
      choice["token_ids"] = token_ids_json(c.tokens);
      if (!chat && prompt < request.prompts.size())
        choice["prompt_token_ids"] = request.prompts[prompt];
    }
    if (!chat && request.prompt_logprobs >= 0)
      choice["prompt_logprobs"] =
          prompt_logprobs_json(c.prompt_logprobs, request.prompt_logprobs, tok);
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
  // Chat has one prompt: its logprobs and ids are the response's (vLLM).
  if (chat && request.prompt_logprobs >= 0 && !choices.empty())
    out["prompt_logprobs"] =
        prompt_logprobs_json(choices[0].prompt_logprobs, request.prompt_logprobs, tok);
  if (chat && request.return_token_ids && !request.prompts.empty())
    out["prompt_token_ids"] = request.prompts[0];
  return dump(out);
}

std::string format_chunk(const ResponseHeader& h, const CompletionRequest& request,
                         const ChunkPart& part, const tokenizer::Tokenizer& tok) {
  bool chat = h.endpoint == Endpoint::chat;
  Json out = envelope(h, chat ? "chat.completion.chunk" : "text_completion");
  Json choice = {{"index", part.index}};
  bool has_tokens = part.tokens && !part.tokens->empty();
  if (chat) {
    Json delta = Json::object();
    if (part.first) delta["role"] = "assistant";
    if (!part.text.empty() || part.first) delta["content"] = part.text;
    if (const auto& call = part.tool_call; call.index >= 0) {
      Json entry = {{"index", call.index}};
      if (!call.id.empty()) {
        entry["id"] = call.id;
        entry["type"] = "function";
        entry["function"] = {{"name", call.name}, {"arguments", call.arguments}};
      } else {
        entry["function"] = {{"arguments", call.arguments}};
      }
      delta["tool_calls"] = Json::array({std::move(entry)});
    }
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = part.text;
  }
  choice["logprobs"] =
      has_tokens ? logprobs_json(request, part.tokens, part.echoed > 0, part.text_offset, tok)
                 : Json(nullptr);
  choice["finish_reason"] = finish_json(part.finish, part.called_tools);
  if (request.return_token_ids && part.finish == engine::FinishReason::none) {
    static const std::vector<engine::GeneratedToken> kNone;
    const auto& tokens = part.tokens ? *part.tokens : kNone;
    // An echoed prompt is in prompt_token_ids, not among the output's ids.
    Json ids = Json::array();
    for (size_t i = part.echoed; i < tokens.size(); ++i) ids.push_back(tokens[i].id);
    choice["token_ids"] = std::move(ids);
    if (part.prompt_ids && !chat) choice["prompt_token_ids"] = *part.prompt_ids;
  }
  out["choices"] = Json::array({std::move(choice)});
  if (chat && part.prompt_ids) out["prompt_token_ids"] = *part.prompt_ids;
  return dump(out);
}

std::string format_usage_chunk(const ResponseHeader& h, const Usage& usage) {
  Json out =
      envelope(h, h.endpoint == Endpoint::chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = Json::array();
  out["usage"] = usage_json(usage);
  return dump(out);
}

std::string sse_event(const std::string& json) {
  return "data: " + json + "\n\n";
}

std::string format_model(const std::string& model, int64_t created, int max_context) {
  Json m = {{"id", model},
            {"object", "model"},
            {"created", created},
            {"owned_by", "invar"},
            {"max_model_len", max_context}};
  return dump(m);
}

std::string format_model_list(const std::string& model, int64_t created, int max_context) {
  Json list = {{"object", "list"},
               {"data", Json::array({Json::parse(format_model(model, created, max_context))})}};
  return dump(list);
}

std::string error_body(const ApiError& e) {
  Json err = {{"message", e.message},
              {"type", e.type},
              {"param", e.param.empty() ? Json(nullptr) : Json(e.param)},
              {"code", e.code.empty() ? Json(nullptr) : Json(e.code)}};
  return dump(Json{{"error", std::move(err)}});
}

}  // namespace invar::server
