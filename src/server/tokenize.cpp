// /tokenize and /detokenize; see tokenize.h.
#include "server/tokenize.h"

#include "server/prompt_input.h"
#include "server/request_fields.h"
#include "server/tools_input.h"

namespace invar::server {

using nlohmann::json;

RouteReply tokenize(std::string_view body, const tokenizer::Tokenizer& tok,
                    const RequestLimits& limits) {
  json parsed;
  if (auto e = parse_json_object(body, &parsed)) return {e, {}};
  Fields f(parsed);
  std::string model;
  if (auto e = check_model(f, limits.served_model, &model)) return {e, {}};
  const bool chat = f.get("messages") != nullptr;
  if (chat && f.get("prompt")) {
    return {ApiError::bad_request("prompt", "give either 'prompt' or 'messages', not both"), {}};
  }
  if (auto e = check_fields(chat ? FieldSet::tokenize_chat : FieldSet::tokenize_prompt, parsed))
    return {e, {}};
  bool add_special = !chat;  // as the completion routes: BOS for a prompt, none for a chat
  bool token_strs = false;
  if (auto e = f.boolean("add_special_tokens", &add_special)) return {e, {}};
  if (auto e = f.boolean("return_token_strs", &token_strs)) return {e, {}};
  if (!chat) {
    const json* prompt = f.get("prompt");
    if (prompt && !prompt->is_string()) return {Fields::type_error("prompt", "a string"), {}};
  }
  ToolsInput tools;  // chat: the template renders them as for a chat completion
  if (chat) {
    if (auto e = parse_tools_input(f, body, limits.tool_format, &tools)) return {e, {}};
  }
  PromptInput input;
  if (auto e = chat ? parse_messages(f, tok, add_special, tools.tools, &input)
                    : parse_prompt(f, tok, add_special, &input)) {
    return {e, {}};
  }
  const std::vector<int32_t>& ids = input.ids.at(0);
  json out = {{"count", ids.size()}, {"max_model_len", limits.max_context}, {"tokens", ids}};
  if (token_strs) {
    json strs = json::array();
    for (int32_t id : ids) strs.push_back(tok.spec().tokens.at(size_t(id)));
    out["token_strs"] = std::move(strs);
  } else {
    out["token_strs"] = nullptr;
  }
  return {std::nullopt, out.dump(-1, ' ', false, json::error_handler_t::replace)};
}

RouteReply detokenize(std::string_view body, const tokenizer::Tokenizer& tok,
                      const RequestLimits& limits) {
  json parsed;
  if (auto e = parse_json_object(body, &parsed)) return {e, {}};
  Fields f(parsed);
  std::string model;
  if (auto e = check_model(f, limits.served_model, &model)) return {e, {}};
  if (auto e = check_fields(FieldSet::detokenize, parsed)) return {e, {}};
  const json* tokens = f.get("tokens");
  if (!tokens) return {ApiError::bad_request("tokens", "'tokens' is required"), {}};
  std::vector<int32_t> ids;
  if (auto e = parse_token_list(*tokens, "tokens", tok.vocab_size(), &ids)) return {e, {}};
  // Special tokens are written out, as vLLM's /detokenize does.
  json out = {{"prompt", tok.decode(ids, /*skip_special=*/false)}};
  return {std::nullopt, out.dump(-1, ' ', false, json::error_handler_t::replace)};
}

}  // namespace invar::server
