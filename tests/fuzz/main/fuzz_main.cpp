// The libFuzzer entry point of one target of fuzz_targets.h, named at compile time
// (-DINVAR_FUZZ_ENTRY=fuzz_gguf); tests/fuzz/CMakeLists.txt builds one program per target.
#include "fuzz/fuzz_targets.h"

// An empty input once before fuzzing: a target's one-time setup (the 18 chat templates parsed,
// the test tokenizers loaded) runs here, before libFuzzer's per-input -timeout starts counting;
// on a loaded machine it could take longer than the timeout and be reported as a hang.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  static const uint8_t none = 0;
  invar::fuzz::INVAR_FUZZ_ENTRY(&none, 0);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return invar::fuzz::INVAR_FUZZ_ENTRY(data, size);
}
