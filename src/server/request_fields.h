// The field policy of the OpenAI routes: every top-level field of a request body is either
// implemented, accepted and ignored by design (documented), or refused with a 400 naming it.
// A field invar does not know is refused too, so that a client never silently gets something
// other than what it asked for. docs/server.md lists every field and which of the three it is.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>

#include "server/api_error.h"

namespace invar::server {

// Which body a field is checked against. The completions and chat routes share the sampling
// fields; /tokenize and /detokenize have their own.
enum class FieldSet : uint8_t { completions, chat, tokenize_prompt, tokenize_chat, detokenize };

// Checks every field of `body` (an object) against `set`: the first one refused or unknown is
// the error (a null value is always accepted, as an absent field). Implemented fields are
// parsed, with their types and ranges checked, elsewhere.
std::optional<ApiError> check_fields(FieldSet set, const nlohmann::json& body);

}  // namespace invar::server
