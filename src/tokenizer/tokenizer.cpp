#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <array>

#include "tokenizer/bpe.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

constexpr std::string_view kSpaceMark = "\xE2\x96\x81";  // U+2581, sentencepiece's space

// Generation ends at these when the vocabulary has them as special tokens.
constexpr std::array<std::string_view, 4> kEndOfTurnTokens = {"<|im_end|>", "<|eot_id|>",
                                                              "<|endoftext|>", "</s>"};

struct AddedToken {
  std::string text;
  int32_t id;
  bool needs_parse_special;  // control/unknown tokens; user-defined ones are always matched
};

std::string replace_all(std::string_view s, std::string_view from, std::string_view to) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  for (size_t j; (j = s.find(from, i)) != std::string_view::npos; i = j + from.size()) {
    out.append(s.data() + i, j - i);
    out.append(to);
  }
  out.append(s.data() + i, s.size() - i);
  return out;
}

}  // namespace

struct Tokenizer::Impl {
  TokenizerSpec spec;
  TokenIndex index;                // token text -> id (first id wins on duplicates)
  std::vector<std::string> bytes;  // id -> decoded bytes
  std::vector<uint8_t> special;    // id -> control or unknown
  // Added tokens by first byte, longest first.
  std::array<std::vector<AddedToken>, 256> added;
  Pretokenizer pre;
  std::optional<ByteLevelBpe> byte_bpe;
  std::optional<SentencePieceBpe> spm;
  std::vector<int32_t> stop_ids;
  // The parsed chat template, or why there is none.
  std::optional<ChatTemplate> chat_template;
  Status chat_template_error;

  int32_t type_of(size_t id) const {
    return id < spec.token_types.size() ? spec.token_types[id] : int32_t(kTokenNormal);
  }
  void encode_text(std::string_view text, bool after_special, std::vector<int32_t>& out) const;
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Result<Tokenizer> Tokenizer::from_spec(TokenizerSpec spec) {
  auto impl = std::make_unique<Impl>();
  const size_t n = spec.tokens.size();
  if (n == 0) return Status::error("tokenizer: the vocabulary is empty");
  if (!spec.token_types.empty() && spec.token_types.size() != n)
    return Status::errorf("tokenizer: {} token types for {} tokens", spec.token_types.size(), n);
  if (!spec.scores.empty() && spec.scores.size() != n)
    return Status::errorf("tokenizer: {} scores for {} tokens", spec.scores.size(), n);
  for (auto [name, id] : {std::pair{"bos", spec.bos_id},
                          {"eos", spec.eos_id},
                          {"unknown", spec.unk_id},
                          {"padding", spec.pad_id}}) {
    if (id && (*id < 0 || size_t(*id) >= n))
      return Status::errorf("tokenizer: {} token id {} is outside the vocabulary of {}", name, *id,
                            n);
  }
  impl->spec = std::move(spec);
  const TokenizerSpec& s = impl->spec;
  const bool spm = s.kind == TokenizerKind::sentencepiece_bpe;

  impl->index.reserve(n);
  for (size_t id = 0; id < n; ++id) impl->index.try_emplace(s.tokens[id], int32_t(id));

  impl->bytes.resize(n);
  impl->special.assign(n, 0);
  for (size_t id = 0; id < n; ++id) {
    const int32_t type = impl->type_of(id);
    const std::string& t = s.tokens[id];
    impl->special[id] = type == kTokenControl || type == kTokenUnknown;
    if (spm) {
      // A byte token that is not <0xHH> is decoded as its text (SentencePieceBpe never makes it).
      if (const int byte = type == kTokenByte ? parse_byte_token(t) : -1; byte >= 0) {
        impl->bytes[id] = std::string(1, char(byte));
      } else {
        impl->bytes[id] = replace_all(t, kSpaceMark, " ");
      }
    } else {
      const bool raw = type == kTokenControl || type == kTokenUserDefined || type == kTokenUnknown;
      impl->bytes[id] = raw ? t : byte_level_decode(t);
    }
  }

  std::vector<int32_t> added_ids = s.special_ids;
  if (added_ids.empty()) {
    for (size_t id = 0; id < n; ++id) {
      const int32_t type = impl->type_of(id);
      if (type == kTokenControl || type == kTokenUserDefined || type == kTokenUnknown)
        added_ids.push_back(int32_t(id));
    }
  }
  for (int32_t id : added_ids) {
    if (id < 0 || size_t(id) >= n)
      return Status::errorf("tokenizer: special token id {} is outside the vocabulary of {}", id,
                            n);
    const std::string& t = s.tokens[id];
    if (t.empty()) continue;
    impl->added[static_cast<unsigned char>(t[0])].push_back(
        {t, id, impl->type_of(id) != kTokenUserDefined});
  }
  for (auto& bucket : impl->added) {
    std::stable_sort(bucket.begin(), bucket.end(), [](const AddedToken& a, const AddedToken& b) {
      return a.text.size() > b.text.size();
    });
  }

  if (spm) {
    impl->spm = SentencePieceBpe::build(s.tokens, s.scores, s.token_types, s.unk_id);
  } else {
    INVAR_ASSIGN_OR_RETURN(auto bpe,
                           ByteLevelBpe::build(impl->index, s.merges, s.ignore_merges, s.unk_id));
    impl->byte_bpe.emplace(std::move(bpe));
    INVAR_ASSIGN_OR_RETURN(impl->pre, Pretokenizer::compile(s.pretokenizer_regexes));
  }

  if (s.eos_id) impl->stop_ids.push_back(*s.eos_id);
  for (std::string_view t : kEndOfTurnTokens) {
    auto it = impl->index.find(t);
    if (it == impl->index.end()) continue;
    const int32_t type = impl->type_of(size_t(it->second));
    const bool is_added =
        type == kTokenControl || type == kTokenUserDefined ||
        std::find(added_ids.begin(), added_ids.end(), it->second) != added_ids.end();
    if (is_added &&
        std::find(impl->stop_ids.begin(), impl->stop_ids.end(), it->second) == impl->stop_ids.end())
      impl->stop_ids.push_back(it->second);
  }
  Tokenizer tok(std::move(impl));
  if (s.chat_template.empty()) {
    tok.impl_->chat_template_error = Status::error(
        StatusCode::not_found,
        "the model has no chat template (no tokenizer.chat_template in its GGUF file; no "
        "chat_template in tokenizer_config.json nor a chat_template.jinja beside it): pass one "
        "with --chat-template FILE (a Jinja chat template), or send a plain prompt");
  } else if (Status st = tok.set_chat_template(s.chat_template, s.chat_template_origin); !st.ok()) {
    // A template minja cannot parse does not stop the model from loading: plain prompts still
    // work, and a chat request gets this error.
    tok.impl_->chat_template_error = st;
  }
  return tok;
}

Result<const ChatTemplate*> Tokenizer::chat_template() const {
  if (impl_->chat_template) return &*impl_->chat_template;
  return impl_->chat_template_error;
}

Status Tokenizer::set_chat_template(const std::string& source, std::string origin) {
  const std::string bos = bos_id() ? token_bytes(*bos_id()) : std::string();
  const std::string eos = eos_id() ? token_bytes(*eos_id()) : std::string();
  if (origin.empty()) origin = "the model's chat template";
  INVAR_ASSIGN_OR_RETURN(ChatTemplate parsed, ChatTemplate::parse(source, origin, bos, eos));
  impl_->chat_template = std::move(parsed);
  impl_->chat_template_error = {};
  impl_->spec.chat_template = source;
  impl_->spec.chat_template_origin = std::move(origin);
  return {};
}

void Tokenizer::Impl::encode_text(std::string_view text, bool after_special,
                                  std::vector<int32_t>& out) const {
  if (spm) {
    std::string s;
    if (spec.add_space_prefix && after_special) s += kSpaceMark;
    s += replace_all(text, " ", kSpaceMark);
    spm->encode(s, out);
    return;
  }
  std::string prefixed;
  if (spec.add_space_prefix && !text.empty() && text[0] != ' ') {
    prefixed = " ";
    prefixed += text;
    text = prefixed;
  }
  std::vector<std::string_view> pieces;
  pre.split(text, pieces);
  for (auto piece : pieces) byte_bpe->encode(piece, index, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_bos,
                                       bool parse_special) const {
  const Impl& im = *impl_;
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 2);
  if (add_bos && im.spec.bos_id) out.push_back(*im.spec.bos_id);
  bool after_special = true;  // the start of the text counts as following a special token
  size_t plain_start = 0;
  for (size_t i = 0; i < text.size();) {
    const auto& bucket = im.added[static_cast<unsigned char>(text[i])];
    const AddedToken* hit = nullptr;
    for (const auto& a : bucket) {
      if (a.needs_parse_special && !parse_special) continue;
      if (text.compare(i, a.text.size(), a.text) == 0) {
        hit = &a;
        break;
      }
    }
    if (!hit) {
      ++i;
      continue;
    }
    if (i > plain_start)
      im.encode_text(text.substr(plain_start, i - plain_start), after_special, out);
    out.push_back(hit->id);
    after_special = true;
    i += hit->text.size();
    plain_start = i;
  }
  if (plain_start < text.size()) im.encode_text(text.substr(plain_start), after_special, out);
  return out;
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->bytes.size()) return {};
  return impl_->bytes[id];
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids) const {
  return decode(ids, false);
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  std::string raw;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= impl_->bytes.size()) continue;
    if (skip_special && impl_->special[id]) continue;
    raw += impl_->bytes[id];
  }
  std::string_view view = raw;
  if (strips_leading_space() && !view.empty() && view[0] == ' ') view.remove_prefix(1);
  std::string out;
  out.reserve(view.size());
  append_valid_utf8(view, out, /*final=*/true);
  return out;
}

int32_t Tokenizer::vocab_size() const {
  return int32_t(impl_->spec.tokens.size());
}
std::optional<int32_t> Tokenizer::bos_id() const {
  return impl_->spec.bos_id;
}
std::optional<int32_t> Tokenizer::eos_id() const {
  return impl_->spec.eos_id;
}
const std::vector<int32_t>& Tokenizer::stop_ids() const {
  return impl_->stop_ids;
}
bool Tokenizer::add_bos_default() const {
  return impl_->spec.add_bos;
}
const TokenizerSpec& Tokenizer::spec() const {
  return impl_->spec;
}

std::optional<int32_t> Tokenizer::token_id(std::string_view token_text) const {
  auto it = impl_->index.find(token_text);
  if (it == impl_->index.end()) return std::nullopt;
  return it->second;
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->special.size() && impl_->special[id];
}

bool Tokenizer::strips_leading_space() const {
  return impl_->spec.kind == TokenizerKind::sentencepiece_bpe && impl_->spec.add_space_prefix;
}

// ---- StreamDecoder ----

std::string StreamDecoder::push(int32_t id) {
  if (skip_special_ && tok_.is_special(id)) return {};
  std::string bytes = tok_.token_bytes(id);
  if (first_ && !bytes.empty()) {
    first_ = false;
    if (tok_.strips_leading_space() && bytes[0] == ' ') bytes.erase(0, 1);
  }
  pending_ += bytes;
  std::string out;
  const size_t used = append_valid_utf8(pending_, out, /*final=*/false);
  pending_.erase(0, used);
  return out;
}

std::string StreamDecoder::flush() {
  std::string out;
  append_valid_utf8(pending_, out, /*final=*/true);
  pending_.clear();
  return out;
}

}  // namespace invar::tokenizer
