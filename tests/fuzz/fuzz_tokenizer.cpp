// Arbitrary bytes through the tokenizers of the test data: encoded (with and without BOS and
// special-token matching), and the same bytes read as token ids decoded whole and streamed.
// The first byte picks: bits 0-1 the tokenizer (SmolLM2's byte-level BPE, a Qwen3 subset with
// its regex pre-tokenizer, a sentencepiece BPE from GGUF and from tokenizer.json), bit 2
// add_bos, bit 3 parse_special. The properties are check_tokenizer's.
#include <memory>

#include "engine/tokenizer_from_gguf.h"
#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "model/gguf.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace invar::fuzz {

namespace {

tokenizer::Tokenizer must(Result<tokenizer::Tokenizer> r, const std::string& what) {
  INVAR_FUZZ_CHECK(r.ok(), "{}: {}", what, r.status().message());
  return std::move(r).value();
}

tokenizer::Tokenizer from_gguf(const std::string& path) {
  auto f = model::GgufFile::open(path);
  INVAR_FUZZ_CHECK(f.ok(), "{}", f.status().message());
  auto spec = engine::tokenizer_spec_from_gguf(*f);
  INVAR_FUZZ_CHECK(spec.ok(), "{}", spec.status().message());
  return must(tokenizer::Tokenizer::from_spec(std::move(spec).value()), path);
}

struct Tokenizers {
  tokenizer::Tokenizer t[4] = {
      must(tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/smollm2")), "smollm2"),
      must(tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/qwen3_subset")),
           "qwen3_subset"),
      from_gguf(testing::test_data("tokenizer/spm_tiny.gguf")),
      must(tokenizer::Tokenizer::from_hf_dir(testing::test_data("tokenizer/spm_tiny_hf")),
           "spm_tiny_hf"),
  };
};

}  // namespace

int fuzz_tokenizer(const uint8_t* data, size_t size) {
  static const Tokenizers* toks = new Tokenizers();  // loaded once, never freed (no exit race)
  if (size == 0) return 0;
  const std::string_view text(reinterpret_cast<const char*>(data) + 1, size - 1);
  const tokenizer::Tokenizer& tok = toks->t[data[0] & 3];
  check_tokenizer(tok, text, (data[0] & 4) != 0, (data[0] & 8) != 0, text);
  return 0;
}

}  // namespace invar::fuzz
