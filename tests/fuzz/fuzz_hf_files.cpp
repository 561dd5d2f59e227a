// The files of a Hugging Face model directory as `invar serve --model DIR` reads them. The first
// byte picks the file (its value mod 4; the seeds use the digits '0'..'3'), the rest is it:
//   0  model.safetensors: the header, each tensor converted to f32 and bf16
//   1  config.json: the config, and the weights of tests/data/tiny-llama loaded for it
//   2  model.safetensors.index.json, over the two shards of tests/data/tiny-llama-sharded
//   3  tokenizer.json, then tokenizer_config.json and chat_template.jinja after the separators
//      of input_part (absent when empty), loaded and used as a tokenizer on a fixed text and on
//      the fourth part (check_tokenizer's properties; the fifth part read as ids)
#include <filesystem>
#include <string>
#include <vector>

#include "fuzz/fuzz_targets.h"
#include "fuzz/fuzz_util.h"
#include "model/config_parse.h"
#include "model/safetensors.h"
#include "model/weight_loader.h"
#include "test_paths.h"
#include "tokenizer/tokenizer.h"

namespace invar::fuzz {

namespace {

constexpr int64_t kMaxElements = int64_t(1) << 20;  // per input, to bound the work

void check_failure(const Status& s) {
  if (!s.ok()) INVAR_FUZZ_CHECK(!s.message().empty(), "an error without a message");
}
template <typename T>
void check_failure(const Result<T>& r) {
  check_failure(r.status());
}

void read_tensors(const model::SafetensorsFile& f) {
  int64_t budget = kMaxElements;
  for (const auto& t : f.tensors()) {
    int64_t n = 1;
    for (int64_t d : t.shape) n = d > 0 && n <= budget / d ? n * d : (d == 0 ? 0 : budget + 1);
    if (n > budget) continue;
    budget -= n;
    std::vector<float> f32(size_t(n) + 1);
    std::vector<uint16_t> bf16(size_t(n) + 1);
    check_failure(f.read_tensor(t, DType::f32, f32.data()));
    check_failure(f.read_tensor(t, DType::bf16, bf16.data()));
  }
}

// A scratch directory with files of tests/data linked into it: (name in the directory, path
// under tests/data).
struct LinkedDir : ScratchDir {
  LinkedDir(const char* name, std::vector<std::pair<std::string, std::string>> links)
      : ScratchDir(name) {
    for (const auto& [as, from] : links)
      std::filesystem::create_symlink(testing::test_data(from), path() + "/" + as);
  }
};

}  // namespace

int fuzz_hf_files(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  switch (data[0] % 4) {
    case 0: {
      MemFile file(body.data(), body.size());
      auto f = model::SafetensorsFile::open(file.path());
      check_failure(f);
      if (f.ok()) read_tensors(*f);
      check_failure(model::SafetensorsSet::open_file(file.path()));
      break;
    }
    case 1: {
      auto config = model::parse_hf_config(body, "config.json");
      check_failure(config);
      if (!config.ok()) break;
      (void)model::rope_inv_freq(*config);
      static const LinkedDir dir("config", {{"model.safetensors", "tiny-llama/model.safetensors"}});
      dir.write("config.json", body);
      check_failure(model::load_hf_model(dir.path(), "", model::LoadOptions{}));
      break;
    }
    case 2: {
      static const LinkedDir dir("index",
                                 {{"model-00001-of-00002.safetensors",
                                   "tiny-llama-sharded/model-00001-of-00002.safetensors"},
                                  {"model-00002-of-00002.safetensors",
                                   "tiny-llama-sharded/model-00002-of-00002.safetensors"}});
      dir.write("model.safetensors.index.json", body);
      auto set = model::SafetensorsSet::open_dir(dir.path());
      check_failure(set);
      if (set.ok())
        for (const auto& f : set->files()) read_tensors(f);
      break;
    }
    case 3: {
      static const ScratchDir dir("tokenizer");
      dir.write("tokenizer.json", input_part(body, 0));
      for (auto [name, index] :
           {std::pair{"tokenizer_config.json", 1}, {"chat_template.jinja", 2}}) {
        const std::string_view part = input_part(body, index);
        if (part.empty())
          dir.remove(name);
        else
          dir.write(name, part);
      }
      auto tok = tokenizer::Tokenizer::from_hf_dir(dir.path());
      check_failure(tok);
      if (tok.ok()) {
        check_tokenizer(*tok, "Hello world! <s> 123 \xE4\xB8\xAD\xE6\x96\x87</s>", true, true,
                        input_part(body, 4));
        check_tokenizer(*tok, input_part(body, 3), false, true, {});
      }
      break;
    }
  }
  return 0;
}

}  // namespace invar::fuzz
