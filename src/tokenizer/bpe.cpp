#include "tokenizer/bpe.h"

#include <algorithm>
#include <cmath>
#include <queue>

#include "tokenizer/unicode.h"

namespace invar::tokenizer {

namespace {

constexpr size_t kCacheEntries = size_t(1) << 16;  // cleared whole when full

uint64_t pair_key(int32_t a, int32_t b) {
  return (uint64_t(uint32_t(a)) << 32) | uint32_t(b);
}

// A doubly linked list of symbols over a fixed array; merged-away symbols are marked dead.
struct Symbol {
  int32_t id;
  int32_t prev, next;
  bool alive;
};

}  // namespace

// ---- ByteLevelBpe ----

ByteLevelBpe::ByteLevelBpe(ByteLevelBpe&& o) noexcept
    : merges_(std::move(o.merges_)), ignore_merges_(o.ignore_merges_), unk_id_(o.unk_id_) {
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), byte_ids_);
}
ByteLevelBpe& ByteLevelBpe::operator=(ByteLevelBpe&& o) noexcept {
  merges_ = std::move(o.merges_);
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), byte_ids_);
  ignore_merges_ = o.ignore_merges_;
  unk_id_ = o.unk_id_;
  std::lock_guard lock(cache_mutex_);
  cache_.clear();
  return *this;
}

Result<ByteLevelBpe> ByteLevelBpe::build(const TokenIndex& index,
                                         const std::vector<std::string>& merges, bool ignore_merges,
                                         std::optional<int32_t> unk_id) {
  ByteLevelBpe m;
  m.ignore_merges_ = ignore_merges;
  m.unk_id_ = unk_id;
  const auto& alphabet = byte_alphabet();
  for (int b = 0; b < 256; ++b) {
    auto it = index.find(alphabet.byte_to_utf8[b]);
    m.byte_ids_[b] = it == index.end() ? -1 : it->second;
  }
  m.merges_.reserve(merges.size() * 2);
  std::string joined;
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const std::string& line = merges[rank];
    // The separator is the first space that leaves a non-empty left side.
    const size_t sp = line.find(' ', 1);
    if (sp == std::string::npos)
      return Status::errorf("merge {} ('{}') is not of the form 'left right'", rank, line);
    const std::string_view left(line.data(), sp), right(line.data() + sp + 1, line.size() - sp - 1);
    auto l = index.find(left), r = index.find(right);
    joined.assign(left);
    joined.append(right);
    auto res = index.find(joined);
    if (l == index.end() || r == index.end() || res == index.end())
      return Status::errorf("merge {} ('{}') names a token that is not in the vocabulary", rank,
                            line);
    // A pair listed twice keeps its first (highest) priority.
    m.merges_.try_emplace(pair_key(l->second, r->second), Merge{int32_t(rank), res->second});
  }
  return m;
}

void ByteLevelBpe::merge_word(std::string_view piece, std::vector<int32_t>& out) const {
  std::vector<Symbol> sym;
  sym.reserve(piece.size());
  for (unsigned char b : piece) {
    const int32_t id = byte_ids_[b];
    // A byte whose alphabet character is not in the vocabulary (SmolLM2 lacks a few control
    // bytes) is dropped, as Hugging Face (with no unk_token) and llama.cpp both do.
    if (id < 0) continue;
    sym.push_back({id, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1, true});
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  struct Candidate {
    int32_t rank, left;  // ordered by rank, then leftmost position
    int32_t left_id, right_id;
    bool operator>(const Candidate& o) const {
      return rank != o.rank ? rank > o.rank : left > o.left;
    }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> queue;
  auto consider = [&](int32_t left) {
    if (left < 0) return;
    const int32_t right = sym[left].next;
    if (right < 0) return;
    auto it = merges_.find(pair_key(sym[left].id, sym[right].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, sym[left].id, sym[right].id});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Symbol& left = sym[c.left];
    // Stale entries: either side changed since the pair was queued.
    if (!left.alive || left.id != c.left_id || left.next < 0) continue;
    Symbol& right = sym[left.next];
    if (right.id != c.right_id) continue;
    left.id = merges_.at(pair_key(c.left_id, c.right_id)).result;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.left;
    consider(left.prev);
    consider(c.left);
  }
  for (int32_t i = 0; i >= 0 && i < int32_t(sym.size()); i = sym[i].next) out.push_back(sym[i].id);
}

void ByteLevelBpe::encode(std::string_view piece, const TokenIndex& index,
                          std::vector<int32_t>& out) const {
  if (piece.empty()) return;
  {
    std::lock_guard lock(cache_mutex_);
    auto it = cache_.find(piece);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  std::vector<int32_t> ids;
  if (ignore_merges_) {  // Llama-3: a piece that is itself a token is taken whole
    auto it = index.find(byte_level_encode(piece));
    if (it != index.end()) ids.push_back(it->second);
  }
  if (ids.empty()) merge_word(piece, ids);
  out.insert(out.end(), ids.begin(), ids.end());
  std::lock_guard lock(cache_mutex_);
  if (cache_.size() >= kCacheEntries) cache_.clear();
  cache_.emplace(std::string(piece), std::move(ids));
}

// ---- SentencePieceBpe ----

SentencePieceBpe::SentencePieceBpe(SentencePieceBpe&& o) noexcept
    : pieces_(std::move(o.pieces_)), scores_(std::move(o.scores_)), unk_id_(o.unk_id_) {
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), byte_ids_);
}
SentencePieceBpe& SentencePieceBpe::operator=(SentencePieceBpe&& o) noexcept {
  pieces_ = std::move(o.pieces_);
  scores_ = std::move(o.scores_);
  std::copy(std::begin(o.byte_ids_), std::end(o.byte_ids_), byte_ids_);
  unk_id_ = o.unk_id_;
  return *this;
}

int parse_byte_token(std::string_view t) {
  if (t.size() != 6 || t.substr(0, 3) != "<0x" || t[5] != '>') return -1;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(t[3]), lo = hex(t[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

SentencePieceBpe SentencePieceBpe::build(const std::vector<std::string>& tokens,
                                         const std::vector<float>& scores,
                                         const std::vector<int32_t>& token_types,
                                         std::optional<int32_t> unk_id) {
  SentencePieceBpe m;
  m.unk_id_ = unk_id;
  std::fill(std::begin(m.byte_ids_), std::end(m.byte_ids_), -1);
  m.scores_.assign(tokens.size(), 0.0f);
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (id < scores.size()) m.scores_[id] = scores[id];
    const int32_t type = id < token_types.size() ? token_types[id] : 1;
    const int byte = parse_byte_token(tokens[id]);
    if (byte >= 0 && (type == 6 || token_types.empty())) {
      if (m.byte_ids_[byte] < 0) m.byte_ids_[byte] = int32_t(id);
      continue;
    }
    // Control (3), unknown (2), unused (5) and byte (6) pieces are never formed by merging
    // (sentencepiece keeps them out of its merge table).
    if (type == 2 || type == 3 || type == 5 || type == 6) continue;
    if (unk_id && int32_t(id) == *unk_id) continue;
    m.pieces_.try_emplace(tokens[id], int32_t(id));
  }
  return m;
}

void SentencePieceBpe::encode(std::string_view text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  // Symbols are character spans of `text`.
  struct Span {
    uint32_t begin, len;
    int32_t prev, next;
  };
  std::vector<Span> sym;
  for (size_t i = 0; i < text.size();) {
    size_t len = utf8_len(static_cast<unsigned char>(text[i]));
    if (i + len > text.size()) len = text.size() - i;
    sym.push_back({uint32_t(i), uint32_t(len), int32_t(sym.size()) - 1, int32_t(sym.size()) + 1});
    i += len;
  }
  sym.back().next = -1;

  struct Candidate {
    float score;
    int32_t left;
    uint32_t size;  // combined length when queued, to detect stale entries
    bool operator<(const Candidate& o) const {  // max-heap: highest score, then leftmost
      return score != o.score ? score < o.score : left > o.left;
    }
  };
  std::priority_queue<Candidate> queue;
  auto consider = [&](int32_t left) {
    if (left < 0 || sym[left].next < 0) return;
    const Span& l = sym[left];
    const Span& r = sym[l.next];
    auto it = pieces_.find(text.substr(l.begin, l.len + r.len));
    if (it != pieces_.end()) queue.push({scores_[it->second], left, l.len + r.len});
  };
  for (int32_t i = 0; i + 1 < int32_t(sym.size()); ++i) consider(i);

  while (!queue.empty()) {
    const Candidate c = queue.top();
    queue.pop();
    Span& l = sym[c.left];
    if (l.len == 0 || l.next < 0) continue;
    Span& r = sym[l.next];
    if (l.len + r.len != c.size) continue;  // one side changed since it was queued
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) sym[r.next].prev = c.left;
    consider(l.prev);
    consider(c.left);
  }

  for (int32_t i = 0; i >= 0 && i < int32_t(sym.size()); i = sym[i].next) {
    const std::string_view piece = text.substr(sym[i].begin, sym[i].len);
    auto it = pieces_.find(piece);
    if (it != pieces_.end()) {
      out.push_back(it->second);
      continue;
    }
    bool all_bytes = true;
    for (unsigned char b : piece) all_bytes = all_bytes && byte_ids_[b] >= 0;
    if (all_bytes) {
      for (unsigned char b : piece) out.push_back(byte_ids_[b]);
    } else if (unk_id_) {
      out.push_back(*unk_id_);
    }
  }
}

}  // namespace invar::tokenizer
