#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "tokenizer/unicode.h"

namespace invar::tokenizer {

Result<std::vector<std::string>> pretokenizer_regexes_for(const std::string& name) {
  if (name == "gpt2" || name == "default" || name.empty())
    return std::vector<std::string>{kGpt2Regex};
  if (name == "llama-bpe" || name == "llama3") return std::vector<std::string>{kLlama3Regex};
  if (name == "qwen2" || name == "deepseek-r1-qwen") return std::vector<std::string>{kQwen2Regex};
  // SmolLM2's tokenizer.json: Sequence[Digits(individual_digits), ByteLevel(use_regex)].
  if (name == "smollm" || name == "starcoder" || name == "refact")
    return std::vector<std::string>{kDigitsIndividualRegex, kGpt2Regex};
  return Status::errorf(
      "unknown pre-tokenizer '{}': known ones are gpt2, default, llama-bpe, llama3, qwen2, "
      "deepseek-r1-qwen, smollm, starcoder, refact",
      name);
}

namespace {

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
using CodePtr = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchDataPtr = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

// PCRE2's \s (with UCP) also matches U+180E, which stopped being whitespace in Unicode 6.3;
// the reference tokenizers' \s is the White_Space property. Spell it out.
std::string with_white_space_property(const std::string& pattern) {
  std::string out;
  out.reserve(pattern.size() + 32);
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '\\' || i + 1 == pattern.size()) {
      out += pattern[i];
      continue;
    }
    const char e = pattern[++i];
    if (e == 'Q') {  // a literal section, copied as it is up to \E
      const size_t end = pattern.find("\\E", i + 1);
      const size_t stop = end == std::string::npos ? pattern.size() : end + 2;
      out.append(pattern, i - 1, stop - (i - 1));
      i = stop - 1;
    } else if (e == 's') {
      out += "\\p{White_Space}";
    } else if (e == 'S') {
      out += "\\P{White_Space}";
    } else {
      out += '\\';
      out += e;
    }
  }
  return out;
}

}  // namespace

struct Pretokenizer::Impl {
  std::vector<CodePtr> codes;
};

Pretokenizer::Pretokenizer() : impl_(std::make_unique<Impl>()) {}
Pretokenizer::Pretokenizer(Pretokenizer&&) noexcept = default;
Pretokenizer& Pretokenizer::operator=(Pretokenizer&&) noexcept = default;
Pretokenizer::~Pretokenizer() = default;

Result<Pretokenizer> Pretokenizer::compile(const std::vector<std::string>& patterns) {
  Pretokenizer p;
  for (const auto& source : patterns) {
    const std::string pattern = with_white_space_property(source);
    int err = 0;
    PCRE2_SIZE err_offset = 0;
    // UCP: \s, \w and friends follow Unicode, as in the Oniguruma/fancy-regex engines the
    // reference tokenizers use. MATCH_INVALID_UTF: invalid bytes never match, so they end up
    // in gaps and still reach the byte-level model.
    CodePtr code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                               PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_offset,
                               nullptr));
    if (!code) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(err, msg, sizeof(msg));
      return Status::errorf("pre-tokenizer regex '{}' does not compile at offset {}: {}", pattern,
                            size_t(err_offset), reinterpret_cast<const char*>(msg));
    }
    pcre2_jit_compile(code.get(), PCRE2_JIT_COMPLETE);  // falls back to the interpreter if absent
    p.impl_->codes.push_back(std::move(code));
  }
  return p;
}

namespace {

// Splits one piece with one regex, Isolated behaviour.
void split_one(const pcre2_code* code, pcre2_match_data* md, std::string_view text,
               std::vector<std::string_view>& out) {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t offset = 0, emitted = 0;
  while (offset < n) {
    int rc = pcre2_match(code, subject, n, offset, 0, md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // very long runs: the interpreter uses the heap
      rc = pcre2_match(code, subject, n, offset, PCRE2_NO_JIT, md, nullptr);
    if (rc < 0) break;  // no match (or a resource error): the rest is one gap
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t start = ov[0], end = ov[1];
    if (end == start) {  // empty match: move on one character, emit nothing
      if (start >= n) break;  // at the very end (a pattern like "$"): no character to skip
      offset = start + utf8_len(static_cast<unsigned char>(text[start]));
      continue;
    }
    if (start > emitted) out.push_back(text.substr(emitted, start - emitted));
    out.push_back(text.substr(start, end - start));
    emitted = offset = end;
  }
  if (emitted < n) out.push_back(text.substr(emitted));
}

}  // namespace

void Pretokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  if (text.empty()) return;
  if (impl_->codes.empty()) {
    out.push_back(text);
    return;
  }
  MatchDataPtr md(pcre2_match_data_create(1, nullptr));
  std::vector<std::string_view> current{text}, next;
  for (size_t r = 0; r < impl_->codes.size(); ++r) {
    auto& target = r + 1 == impl_->codes.size() ? out : next;
    for (auto piece : current) split_one(impl_->codes[r].get(), md.get(), piece, target);
    if (&target == &next) {
      current.swap(next);
      next.clear();
    }
  }
}

}  // namespace invar::tokenizer
