// Tokenizer::from_hf_dir: reads a Hugging Face tokenizer.json (BPE model, added tokens,
// normalizer and pre-tokenizer), tokenizer_config.json (bos/eos, add_bos_token, chat_template)
// and chat_template.jinja into a TokenizerSpec.
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "core/json_depth.h"
#include "tokenizer/bpe.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

using nlohmann::json;

constexpr const char* kSpaceMark = "\xE2\x96\x81";

Result<json> read_json(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::errorf("{}: cannot open", path.string());
  std::stringstream ss;
  ss << in.rdbuf();
  if (!json_depth_within(ss.view()))
    return Status::errorf("{}: nests arrays and objects more than {} levels deep", path.string(),
                          kMaxJsonDepth);
  json j = json::parse(ss.str(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::errorf("{}: not valid JSON", path.string());
  return j;
}

// What the normalizer and pre-tokenizer chains say, flattened.
struct Pipeline {
  std::vector<std::string> regexes;
  bool byte_level = false;         // ByteLevel pre-tokenizer present
  bool byte_level_prefix = false;  // ByteLevel(add_prefix_space)
  bool metaspace = false;          // Metaspace pre-tokenizer or Replace(" " -> "▁") normalizer
  bool space_prefix = false;       // Metaspace prepend / Prepend("▁") normalizer
};

std::string escape_literal(const std::string& s) {
  std::string out = "\\Q";
  for (size_t i = 0; i < s.size(); ++i) {
    if (s.compare(i, 2, "\\E") == 0) {
      out += "\\E\\\\E\\Q";
      ++i;
    } else {
      out += s[i];
    }
  }
  return out + "\\E";
}

Status parse_normalizer(const json& n, const std::string& where, Pipeline& p) {
  if (n.is_null()) return {};
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : n.value("normalizers", json::array()))
      INVAR_RETURN_IF_ERROR(parse_normalizer(sub, where, p));
    return {};
  }
  // NFC is accepted but not applied: text already in NFC (nearly all text) tokenizes the same.
  if (type == "NFC") return {};
  if (type == "Prepend" && n.value("prepend", "") == kSpaceMark) {
    p.space_prefix = true;
    return {};
  }
  if (type == "Replace" && n.contains("pattern") && n["pattern"].value("String", "") == " " &&
      n.value("content", "") == kSpaceMark) {
    p.metaspace = true;
    return {};
  }
  return Status::errorf(
      "{}: normalizer '{}' is not supported (supported: NFC, Prepend(\"▁\"), "
      "Replace(\" \", \"▁\"), Sequence)",
      where, type);
}

Status parse_pretokenizer(const json& n, const std::string& where, Pipeline& p) {
  if (n.is_null()) return {};
  const std::string type = n.value("type", "");
  if (type == "Sequence") {
    for (const auto& sub : n.value("pretokenizers", json::array()))
      INVAR_RETURN_IF_ERROR(parse_pretokenizer(sub, where, p));
    return {};
  }
  if (type == "ByteLevel") {
    p.byte_level = true;
    p.byte_level_prefix = n.value("add_prefix_space", false);
    if (n.value("use_regex", true)) p.regexes.push_back(kGpt2Regex);
    return {};
  }
  if (type == "Digits") {
    p.regexes.push_back(n.value("individual_digits", false) ? kDigitsIndividualRegex
                                                            : kDigitsRegex);
    return {};
  }
  if (type == "Split") {
    const std::string behavior = n.value("behavior", "");
    if (behavior != "Isolated" || n.value("invert", false))
      return Status::errorf(
          "{}: Split pre-tokenizer with behavior '{}'{} is not supported (only "
          "Isolated)",
          where, behavior, n.value("invert", false) ? " inverted" : "");
    const json& pat = n.value("pattern", json::object());
    if (pat.contains("Regex")) {
      p.regexes.push_back(pat["Regex"].get<std::string>());
    } else if (pat.contains("String")) {
      p.regexes.push_back(escape_literal(pat["String"].get<std::string>()));
    } else {
      return Status::errorf("{}: Split pre-tokenizer without a pattern", where);
    }
    return {};
  }
  if (type == "Metaspace") {
    if (n.value("split", false))
      return Status::errorf("{}: Metaspace(split=true) is not supported", where);
    p.metaspace = true;
    const std::string scheme =
        n.value("prepend_scheme", n.value("add_prefix_space", true) ? "always" : "never");
    p.space_prefix = scheme != "never";
    return {};
  }
  return Status::errorf(
      "{}: pre-tokenizer '{}' is not supported (supported: ByteLevel, Split, "
      "Digits, Metaspace, Sequence)",
      where, type);
}

bool more_than_one_char(const std::string& s) {
  return !s.empty() && utf8_len(static_cast<unsigned char>(s[0])) < s.size();
}

// A special token named in tokenizer_config.json: a string or {"content": ...}.
std::optional<std::string> config_token(const json& cfg, const char* key) {
  if (!cfg.contains(key)) return std::nullopt;
  const json& v = cfg[key];
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return std::nullopt;
}

// from_hf_dir, which catches what this throws: nlohmann's accessors throw on a value of the
// wrong type (a number where the file should have a string or an object).
Result<Tokenizer> load_hf_dir(const std::string& dir) {
  namespace fs = std::filesystem;
  const fs::path tok_path = fs::path(dir) / "tokenizer.json";
  if (!fs::exists(tok_path))
    return Status::errorf("{}: no tokenizer.json (a Hugging Face tokenizer directory is expected)",
                          dir);
  INVAR_ASSIGN_OR_RETURN(json j, read_json(tok_path));
  const std::string where = tok_path.string();
  json cfg = json::object();
  if (fs::exists(fs::path(dir) / "tokenizer_config.json")) {
    INVAR_ASSIGN_OR_RETURN(cfg, read_json(fs::path(dir) / "tokenizer_config.json"));
  }

  const json& model = j.value("model", json::object());
  if (model.value("type", "BPE") != "BPE")
    return Status::errorf("{}: model type '{}' is not supported (only BPE)", where,
                          model.value("type", ""));
  if (!model.contains("vocab") || !model["vocab"].is_object())
    return Status::errorf("{}: model.vocab is missing", where);

  Pipeline p;
  INVAR_RETURN_IF_ERROR(parse_normalizer(j.value("normalizer", json()), where, p));
  INVAR_RETURN_IF_ERROR(parse_pretokenizer(j.value("pre_tokenizer", json()), where, p));

  TokenizerSpec spec;
  const bool spm = !p.byte_level && (p.metaspace || model.value("byte_fallback", false));
  if (!p.byte_level && !spm)
    return Status::errorf(
        "{}: neither a ByteLevel pre-tokenizer nor a sentencepiece-style "
        "(Metaspace / byte_fallback) BPE",
        where);
  spec.kind = spm ? TokenizerKind::sentencepiece_bpe : TokenizerKind::byte_level_bpe;
  spec.pretokenizer_regexes = spm ? std::vector<std::string>{} : p.regexes;
  spec.add_space_prefix = spm ? p.space_prefix : p.byte_level_prefix;
  spec.ignore_merges = model.value("ignore_merges", false);

  // Vocabulary and added tokens, by id.
  std::map<int64_t, std::pair<std::string, int32_t>> by_id;  // id -> (text, type)
  // A token id: a non-negative integer, else -1. Never get<int64_t>() of a float: a value past
  // int64 (1e22) converts with undefined behaviour.
  auto token_id = [](const json& v) -> int64_t {
    return v.is_number_integer() && v.get<int64_t>() >= 0 ? v.get<int64_t>() : -1;
  };
  for (const auto& [text, id] : model["vocab"].items()) {
    if (token_id(id) < 0)
      return Status::errorf("{}: vocab entry '{}' has no valid id", where, text);
    by_id[token_id(id)] = {text, kTokenNormal};
  }
  for (const auto& a : j.value("added_tokens", json::array())) {
    const int64_t id = a.is_object() && a.contains("id") ? token_id(a["id"]) : -1;
    if (id < 0 || !a.contains("content")) {
      return Status::errorf(
          "{}: added token {} has no valid id (a non-negative integer) or no content", where,
          a.dump());
    }
    const int32_t type = a.value("special", false) ? kTokenControl : kTokenUserDefined;
    by_id[id] = {a["content"].get<std::string>(), type};
    spec.special_ids.push_back(int32_t(id));
  }
  if (by_id.empty()) return Status::errorf("{}: the vocabulary is empty", where);
  const int64_t n = by_id.rbegin()->first + 1;
  if (n > (int64_t(1) << 24))
    return Status::errorf("{}: token id {} is implausibly large", where, n - 1);
  spec.tokens.assign(size_t(n), std::string());
  spec.token_types.assign(size_t(n), kTokenUnused);  // ids the file skips stay unused
  for (const auto& [id, tt] : by_id) {
    spec.tokens[id] = tt.first;
    spec.token_types[id] = tt.second;
  }
  if (spm) {
    for (int64_t id = 0; id < n; ++id) {
      if (spec.token_types[id] == kTokenNormal && parse_byte_token(spec.tokens[id]) >= 0)
        spec.token_types[id] = kTokenByte;
    }
  }

  // Merges: "a b" strings or [a, b] pairs.
  std::vector<std::pair<std::string, std::string>> merges;
  for (const auto& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      const std::string s = m.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) return Status::errorf("{}: merge '{}' has no space", where, s);
      merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    } else {
      return Status::errorf("{}: a merge is neither \"a b\" nor [\"a\", \"b\"]", where);
    }
  }
  if (spm) {
    // Sentencepiece merges by the score of the merged piece: the earliest merge that makes a
    // piece gives it the highest score; pieces no merge makes are never formed by merging.
    std::map<std::string, int64_t> first_rank;
    for (size_t r = 0; r < merges.size(); ++r)
      first_rank.try_emplace(merges[r].first + merges[r].second, int64_t(r));
    spec.scores.assign(size_t(n), 0.0f);
    for (int64_t id = 0; id < n; ++id) {
      auto it = first_rank.find(spec.tokens[id]);
      if (it != first_rank.end()) {
        spec.scores[id] = -float(it->second);
      } else if (spec.token_types[id] == kTokenNormal && more_than_one_char(spec.tokens[id])) {
        // Multi-character pieces no merge produces: keep them out of the merge table.
        spec.token_types[id] = kTokenUnused;
      }
    }
  } else {
    spec.merges.reserve(merges.size());
    for (auto& [a, b] : merges) spec.merges.push_back(a + " " + b);
  }

  auto id_of = [&](const std::optional<std::string>& text) -> std::optional<int32_t> {
    if (!text) return std::nullopt;
    for (const auto& [id, tt] : by_id)
      if (tt.first == *text) return int32_t(id);
    return std::nullopt;
  };
  spec.bos_id = id_of(config_token(cfg, "bos_token"));
  spec.eos_id = id_of(config_token(cfg, "eos_token"));
  spec.unk_id = id_of(config_token(cfg, "unk_token"));
  if (!spec.unk_id && model.contains("unk_token") && model["unk_token"].is_string())
    spec.unk_id = id_of(model["unk_token"].get<std::string>());
  spec.pad_id = id_of(config_token(cfg, "pad_token"));
  if (spec.unk_id && spm) spec.token_types[*spec.unk_id] = kTokenUnknown;

  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    spec.add_bos = cfg["add_bos_token"].get<bool>();
  } else {
    // A TemplateProcessing post-processor that opens with a special token adds a BOS.
    const json& post = j.value("post_processor", json());
    if (post.is_object() && post.value("type", "") == "TemplateProcessing" &&
        post.contains("single") && post["single"].is_array() && !post["single"].empty() &&
        post["single"][0].contains("SpecialToken"))
      spec.add_bos = true;
  }

  // chat_template.jinja, the newer separate file, wins over tokenizer_config.json's
  // chat_template, as in transformers.
  const fs::path jinja_path = fs::path(dir) / "chat_template.jinja";
  if (fs::exists(jinja_path)) {
    std::ifstream in(jinja_path, std::ios::binary);
    if (!in) return Status::errorf("{}: cannot open", jinja_path.string());
    std::stringstream ss;
    ss << in.rdbuf();
    spec.chat_template = ss.str();
    spec.chat_template_origin = jinja_path.string();
  } else if (cfg.contains("chat_template")) {
    const json& t = cfg["chat_template"];
    if (t.is_string()) {
      spec.chat_template = t.get<std::string>();
    } else if (t.is_array()) {  // named templates: take "default"
      for (const auto& e : t)
        if (e.value("name", "") == "default") spec.chat_template = e.value("template", "");
    }
    spec.chat_template_origin = (fs::path(dir) / "tokenizer_config.json").string();
  }
  return Tokenizer::from_spec(std::move(spec));
}

}  // namespace

Result<Tokenizer> Tokenizer::from_hf_dir(const std::string& dir) {
  try {
    return load_hf_dir(dir);
  } catch (const nlohmann::json::exception& e) {
    return Status::errorf(
        "{}: tokenizer.json or tokenizer_config.json holds a value of the wrong type: {}", dir,
        e.what());
  }
}

}  // namespace invar::tokenizer
