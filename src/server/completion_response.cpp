// OpenAI response shapes; see completion_response.h.
#include "server/completion_response.h"

#include <fmt/format.h>

#include <cmath>
#include <nlohmann/json.hpp>

namespace invar::server {

using Json = nlohmann::ordered_json;  // keeps "id" first, as OpenAI writes it

namespace {

// Invalid UTF-8 in generated text never reaches here (the engine's stream decoder holds
// partial characters), but a replacement beats an exception if it ever does.
std::string dump(const Json& j) {
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

// JSON has no -inf; a token of probability 0 gets vLLM's floor.
double finite_logprob(float lp) {
  return std::isfinite(lp) ? double(lp) : -9999.0;
}

Json byte_list(const std::string& s) {
  Json bytes = Json::array();
  for (unsigned char c : s) bytes.push_back(int(c));
  return bytes;
}

// completions: {tokens, token_logprobs, top_logprobs, text_offset}
Json completion_logprobs(const std::vector<engine::GeneratedToken>& tokens, int text_offset,
                         const tokenizer::Tokenizer& tok) {
  Json out = {{"tokens", Json::array()},
              {"token_logprobs", Json::array()},
              {"top_logprobs", Json::array()},
              {"text_offset", Json::array()}};
  int offset = text_offset;
  for (const auto& t : tokens) {
    std::string shown = token_display(t.text);
    out["tokens"].push_back(shown);
    out["token_logprobs"].push_back(finite_logprob(t.logprob));
    Json top = Json::object();
    for (const auto& alt : t.top) {
      std::string alt_shown = token_display(tok.token_bytes(alt.id));
      if (!top.contains(alt_shown)) top[alt_shown] = finite_logprob(alt.logprob);
    }
    if (t.top.empty()) top[shown] = finite_logprob(t.logprob);  // logprobs=0: the token itself
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(offset);
    offset += int(t.text.size());
  }
  return out;
}

// chat: {content: [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}
Json chat_logprobs(const std::vector<engine::GeneratedToken>& tokens,
                   const tokenizer::Tokenizer& tok) {
  Json content = Json::array();
  for (const auto& t : tokens) {
    Json top = Json::array();
    for (const auto& alt : t.top) {
      std::string bytes = tok.token_bytes(alt.id);
      top.push_back({{"token", token_display(bytes)},
                     {"logprob", finite_logprob(alt.logprob)},
                     {"bytes", byte_list(bytes)}});
    }
    content.push_back({{"token", token_display(t.text)},
                       {"logprob", finite_logprob(t.logprob)},
                       {"bytes", byte_list(t.text)},
                       {"top_logprobs", std::move(top)}});
  }
  return {{"content", std::move(content)}};
}

Json logprobs_json(const CompletionRequest& r, const std::vector<engine::GeneratedToken>* tokens,
                   int text_offset, const tokenizer::Tokenizer& tok) {
  if (!r.logprobs) return nullptr;
  static const std::vector<engine::GeneratedToken> kNone;
  const auto& list = tokens ? *tokens : kNone;
  return r.endpoint == Endpoint::chat ? chat_logprobs(list, tok)
                                      : completion_logprobs(list, text_offset, tok);
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

Json finish_json(engine::FinishReason r) {
  return r == engine::FinishReason::none ? Json(nullptr) : Json(finish_reason_text(r));
}

}  // namespace

std::string token_display(const std::string& bytes) {
  if (valid_utf8(bytes)) return bytes;
  std::string out = "bytes:";
  for (unsigned char c : bytes) out += fmt::format("\\x{:02x}", c);
  return out;
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

std::string format_response(const ResponseHeader& h, const CompletionRequest& request,
                            const std::vector<ChoiceResult>& choices, const Usage& usage,
                            const tokenizer::Tokenizer& tok) {
  bool chat = h.endpoint == Endpoint::chat;
  Json out = envelope(h, chat ? "chat.completion" : "text_completion");
  Json list = Json::array();
  for (size_t i = 0; i < choices.size(); ++i) {
    const ChoiceResult& c = choices[i];
    Json choice = {{"index", int(i)}};
    if (chat) {
      choice["message"] = {{"role", "assistant"}, {"content", c.text}};
    } else {
      choice["text"] = c.text;
    }
    choice["logprobs"] = logprobs_json(request, &c.tokens, 0, tok);
    choice["finish_reason"] = finish_json(c.finish);
    list.push_back(std::move(choice));
  }
  out["choices"] = std::move(list);
  out["usage"] = usage_json(usage);
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
    choice["delta"] = std::move(delta);
  } else {
    choice["text"] = part.text;
  }
  choice["logprobs"] =
      has_tokens ? logprobs_json(request, part.tokens, part.text_offset, tok) : Json(nullptr);
  choice["finish_reason"] = finish_json(part.finish);
  out["choices"] = Json::array({std::move(choice)});
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
