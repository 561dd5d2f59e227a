// POST /tokenize and POST /detokenize with vLLM's request and response shapes:
//   /tokenize   {prompt, add_special_tokens = true, return_token_strs = false}
//            or {messages, add_generation_prompt, continue_final_message, chat_template_kwargs,
//                add_special_tokens = false, return_token_strs}
//            -> {count, max_model_len, tokens, token_strs}
//   /detokenize {tokens} -> {prompt}
// The same tokenizer and chat template as the completion routes, so /tokenize gives exactly the
// prompt ids a completion with the same fields would run.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "server/completion_request.h"

namespace invar::server {

struct RouteReply {
  std::optional<ApiError> error;
  std::string body;  // the JSON answer when there is no error
};

RouteReply tokenize(std::string_view body, const tokenizer::Tokenizer& tok,
                    const RequestLimits& limits);
RouteReply detokenize(std::string_view body, const tokenizer::Tokenizer& tok,
                      const RequestLimits& limits);

}  // namespace invar::server
