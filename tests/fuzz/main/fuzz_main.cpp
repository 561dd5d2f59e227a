// The libFuzzer entry point of one target of fuzz_targets.h, named at compile time
// (-DINVAR_FUZZ_ENTRY=fuzz_gguf); tests/fuzz/CMakeLists.txt builds one program per target.
#include "fuzz/fuzz_targets.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  return invar::fuzz::INVAR_FUZZ_ENTRY(data, size);
}
