// A GGUF file as `invar serve --model x.gguf` reads it: the reader, every typed metadata lookup,
// the config and the tokenizer built from the metadata, each tensor dequantized, and the
// weights loaded for the config. Every malformed file must be a Status, never a crash, a read
// out of bounds or an allocation the file's size does not justify.
#include <string>
#include <vector>

#include "engine/tokenizer_from_gguf.h"
#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "model/config_parse.h"
#include "model/gguf.h"
#include "model/weight_loader.h"
#include "tokenizer/tokenizer.h"

namespace invar::fuzz {

namespace {

// Elements dequantized per input at most: a file may describe large tensors honestly (their
// bytes are there), but a fuzz input is small, so this only bounds the work per input.
constexpr int64_t kMaxElements = int64_t(1) << 20;

void check_failure(const Status& s) {
  if (!s.ok()) INVAR_FUZZ_CHECK(!s.message().empty(), "an error without a message");
}
template <typename T>
void check_failure(const Result<T>& r) {
  check_failure(r.status());
}

}  // namespace

int fuzz_gguf(const uint8_t* data, size_t size) {
  MemFile file(data, size);
  auto opened = model::GgufFile::open(file.path());
  check_failure(opened);
  if (!opened.ok()) return 0;
  const model::GgufFile& f = *opened;

  for (const auto& [key, value] : f.metadata()) {
    check_failure(f.get_int(key));
    check_failure(f.get_float(key));
    check_failure(f.get_string(key));
    check_failure(f.get_string_array(key));
    check_failure(f.get_float_array(key));
    check_failure(f.get_int_array(key));
  }

  auto config = model::config_from_gguf(f);
  check_failure(config);
  if (config.ok()) (void)model::rope_inv_freq(*config);

  auto spec = engine::tokenizer_spec_from_gguf(f);
  check_failure(spec);
  if (spec.ok()) {
    auto tok = tokenizer::Tokenizer::from_spec(std::move(spec).value());
    check_failure(tok);
    if (tok.ok()) {
      check_tokenizer(*tok, "Hello world! <|im_start|>user\n 123 \xE4\xB8\xAD\xE6\x96\x87</s>",
                      true, true, std::string_view(reinterpret_cast<const char*>(data), size));
    }
  }

  int64_t budget = kMaxElements;
  for (const auto& t : f.tensors()) {
    int64_t n = 1;
    for (int64_t d : t.shape) n = d > 0 && n <= budget / d ? n * d : budget + 1;
    if (n > budget) continue;
    budget -= n;
    std::vector<float> f32(static_cast<size_t>(n) + 1);
    std::vector<uint16_t> bf16(static_cast<size_t>(n) + 1);
    check_failure(f.read_tensor(t, DType::f32, f32.data()));
    check_failure(f.read_tensor(t, DType::bf16, bf16.data()));
  }

  if (config.ok()) {
    for (DType dtype : {DType::f32, DType::bf16}) {
      model::LoadOptions options;
      options.weight_dtype = dtype;
      check_failure(model::load_gguf_model(file.path(), options));
    }
  }
  return 0;
}

}  // namespace invar::fuzz
