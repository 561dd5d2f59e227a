// A nesting limit for the JSON invar reads (request bodies, config.json, tokenizer.json,
// safetensors headers). nlohmann's parser is iterative, but copying, comparing and dumping a
// parsed value recurse once per level, so a document nested a million levels deep (two bytes a
// level: a 4 MiB body holds two million) would overflow the stack wherever it is used. Real
// documents nest a handful of levels.
#pragma once

#include <string_view>

namespace invar {

inline constexpr int kMaxJsonDepth = 128;

// Whether no array or object of `text` opens more than `max_depth` levels deep. Only brackets
// outside strings count; the text need not be valid JSON (the parser says what else is wrong).
bool json_depth_within(std::string_view text, int max_depth = kMaxJsonDepth);

}  // namespace invar
