// Chat templates: a conversation turned into the model's prompt by the model's own Jinja
// template, executed as written by minja (a Jinja engine made for chat templates). The template
// sees what Hugging Face transformers' apply_chat_template gives it:
//   messages               the conversation, a list of {role, content, ...} objects as sent
//   add_generation_prompt  whether to open the assistant's turn
//   tools                  a list of tool schemas, when given (else undefined)
//   bos_token, eos_token   the tokenizer's special tokens as text
//   raise_exception(msg)   fails the render with msg (ChatTemplate::render returns it)
//   strftime_now(format)   the local time, formatted as C strftime does
//   any extra variable     chat_template_kwargs, e.g. Qwen3's enable_thinking
// with trim_blocks and lstrip_blocks on, as transformers compiles templates.
#pragma once

#include <ctime>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace invar::tokenizer {

class Tokenizer;

struct ChatMessage {
  std::string role, content;
};

struct ChatTemplateInputs {
  // [{"role": ..., "content": ...}, ...]; objects keep their key order (tojson shows it).
  nlohmann::ordered_json messages = nlohmann::ordered_json::array();
  nlohmann::ordered_json tools;  // null: `tools` is undefined in the template
  bool add_generation_prompt = true;
  // The prompt ends inside the last message, which the model then continues (a prefilled
  // answer): the text the template writes after that message's content is cut off, as
  // transformers does. Excludes add_generation_prompt.
  bool continue_final_message = false;
  // More variables for the template (chat_template_kwargs): an object, or null for none. They
  // cannot replace messages, tools, add_generation_prompt or the special tokens.
  nlohmann::ordered_json kwargs;
  // The local time strftime_now formats; unset: now. Tests fix it.
  std::optional<std::tm> now;
};

// Whether `kwargs` can be given to a template: null, or an object that does not set a variable
// the render sets itself (messages, tools, add_generation_prompt, the special tokens, ...).
Status check_chat_template_kwargs(const nlohmann::ordered_json& kwargs);

// Plain text messages as the list a template reads.
nlohmann::ordered_json chat_messages_json(const std::vector<ChatMessage>& messages);

class ChatTemplate {
 public:
  // Parses `source`. `origin` says where it came from (a file, a GGUF key) for error messages.
  static Result<ChatTemplate> parse(const std::string& source, std::string origin,
                                    std::string bos_token, std::string eos_token);

  // The prompt text. A failure is StatusCode::invalid_argument: the conversation is one the
  // template refuses (its raise_exception: the message is the template's own) or cannot render
  // (e.g. a role it does not know); the message names the template's origin.
  Result<std::string> render(const ChatTemplateInputs& inputs) const;

  const std::string& source() const;
  const std::string& origin() const;

 private:
  struct Impl;
  explicit ChatTemplate(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<const Impl> impl_;  // immutable once parsed: renders may run concurrently
};

// `inputs` rendered by the tokenizer's chat template and encoded as a prompt. The template
// writes its own BOS where it wants one, so none is added; the special tokens it writes are
// matched as such.
Result<std::vector<int32_t>> encode_chat(const Tokenizer& tok, const ChatTemplateInputs& inputs);

}  // namespace invar::tokenizer
