// JSON text exactly as Python's json.dumps writes it, for the `tojson` filter of chat templates
// (transformers defines tojson as json.dumps with ensure_ascii=False). Tool schemas reach the
// prompt through it, so its spacing, escapes and key order are part of the prompt's bytes.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace invar::tokenizer {

struct PythonJsonOptions {
  bool ensure_ascii = false;  // transformers' default; json.dumps' own is true
  std::optional<int> indent;  // unset: one line; n: newline and n spaces per level
  // Unset: json.dumps' defaults, ", " and ": " on one line, "," and ": " with an indent.
  std::optional<std::string> item_separator, key_separator;
  bool sort_keys = false;
};

std::string python_json_dumps(const nlohmann::ordered_json& value,
                              const PythonJsonOptions& options);

}  // namespace invar::tokenizer
