// --chat-template FILE and --chat-template-kwargs JSON, shared by generate, chat and serve.
#include <fstream>
#include <sstream>

#include "cli/common_options.h"
#include "tokenizer/chat_template.h"

namespace invar::cli {

void add_chat_template_option(CLI::App* cmd, std::string* path) {
  cmd->add_option("--chat-template", *path,
                  "Jinja chat template file to use instead of the model's own")
      ->check(CLI::ExistingFile);
}

void add_chat_template_kwargs_option(CLI::App* cmd, std::string* json_text) {
  cmd->add_option("--chat-template-kwargs", *json_text,
                  "JSON object of extra chat template variables, e.g. "
                  "'{\"enable_thinking\": false}' for Qwen3");
}

Status use_chat_template_file(const std::string& path, tokenizer::Tokenizer& tok) {
  if (path.empty()) return {};
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::errorf("--chat-template {}: cannot open", path);
  std::stringstream ss;
  ss << in.rdbuf();
  if (ss.str().empty()) return Status::errorf("--chat-template {}: the file is empty", path);
  return tok.set_chat_template(ss.str(), path);
}

Result<nlohmann::ordered_json> parse_chat_template_kwargs(const std::string& json_text) {
  if (json_text.empty()) return nlohmann::ordered_json();
  auto parsed = nlohmann::ordered_json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded() || !parsed.is_object())
    return Status::errorf("--chat-template-kwargs: '{}' is not a JSON object", json_text);
  return parsed;
}

}  // namespace invar::cli
