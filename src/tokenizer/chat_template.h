// Chat templates: renders a conversation the way the model's own Jinja template does, for the
// template families invar recognizes. There is no general Jinja engine: the family is
// recognized from the template source, and the parts that vary between models of a family
// (default system prompts, knowledge-cutoff lines, separators) are read out of that source.
//
// Families (all rendered as Hugging Face does: trim_blocks and lstrip_blocks on):
//   ChatML   <|im_start|>role\n...<|im_end|>\n — generic, SmolLM2 and Qwen2 (default system
//            prompt inside the template), Qwen2.5 (tool messages), Qwen3 (<think> handling).
//   Llama-3  <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> — 3.0, and 3.1/3.2/3.3
//            with the "Cutting Knowledge Date" system header.
//   Llama-2  <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s>
//   Zephyr   <|user|>\n...</s>\n (also TinyLlama-Chat).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace invar::tokenizer {

struct ChatMessage {
  std::string role, content;
};

// Variables some templates read besides the messages.
struct ChatTemplateOptions {
  // Llama-3.1+: the "Today Date" line. Unset: the template's own default ("26 Jul 2024"), or,
  // for templates that call strftime_now, today's local date as Hugging Face renders it.
  std::optional<std::string> date_string;
  // Qwen3: false adds an empty <think></think> block after the generation prompt.
  std::optional<bool> enable_thinking;
};

enum class ChatTemplateFamily { chatml, llama3, llama2, zephyr };

// The family of a template source, or an error naming the supported ones.
Result<ChatTemplateFamily> chat_template_family(const std::string& template_source);

Result<std::string> apply_chat_template(const std::string& template_source,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& bos_token,
                                        const std::string& eos_token);
Result<std::string> apply_chat_template(const std::string& template_source,
                                        const std::vector<ChatMessage>& messages,
                                        bool add_generation_prompt, const std::string& bos_token,
                                        const std::string& eos_token,
                                        const ChatTemplateOptions& options);

}  // namespace invar::tokenizer
