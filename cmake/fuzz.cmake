# -DINVAR_FUZZ=ON (clang): the libFuzzer targets of tests/fuzz, built with AddressSanitizer and
# UndefinedBehaviorSanitizer (cmake/sanitizers.cmake); `cmake --build B --target invar_fuzzers`
# (scripts/fuzz does). They need only the code that reads untrusted input: the model file
# readers, the tokenizer and chat templates, and the request parser. That code is compiled
# once more here with libFuzzer's coverage instrumentation, and nothing else is: the rest of the
# layers (the CPU kernels above all) is neither needed nor instrumented.
if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
  message(FATAL_ERROR "-DINVAR_FUZZ=ON needs clang (libFuzzer): configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ (scripts/fuzz does)")
endif()
file(GLOB invar_fuzz_input_srcs CONFIGURE_DEPENDS src/core/*.cpp src/tokenizer/*.cpp)
foreach(f model/gguf model/gguf_dequant model/safetensors model/config model/config_parse
          model/load_weights model/weights engine/tokenizer_from_gguf engine/grammar engine/sampler
          server/completion_request server/completion_response server/request_fields
          server/prompt_input server/tools_input server/tool_calls server/tool_call_reader
          server/json_reader)
  list(APPEND invar_fuzz_input_srcs ${PROJECT_SOURCE_DIR}/src/${f}.cpp)
endforeach()
add_library(invar_fuzz_inputs STATIC ${invar_fuzz_input_srcs})
target_include_directories(invar_fuzz_inputs PUBLIC ${PROJECT_SOURCE_DIR}/src
                           ${PROJECT_SOURCE_DIR}/include)
target_include_directories(invar_fuzz_inputs SYSTEM PRIVATE ${invar_minja_include})
# XGrammar (structured output: the request parser compiles a request's grammar) is linked as
# built for the other layers, without coverage instrumentation: its code is not ours to fuzz.
target_link_libraries(invar_fuzz_inputs PUBLIC fmt::fmt Threads::Threads nlohmann_json::nlohmann_json
                      Boost::headers PRIVATE PkgConfig::PCRE2 invar_xgrammar)
target_compile_options(invar_fuzz_inputs PRIVATE -fsanitize=fuzzer-no-link)
invar_set_warnings(invar_fuzz_inputs)
add_subdirectory(tests/fuzz)
