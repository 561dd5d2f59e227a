# CUDA backend (INVAR_CUDA=ON): Hopper kernels built for sm_90a, the cuBLAS baseline, and the
# GPU tests and benchmarks. Included from the top-level CMakeLists.txt only when INVAR_CUDA is
# ON, so the default CPU build never looks for nvcc.
#
#   cmake -S . -B build-cuda -G Ninja -DINVAR_CUDA=ON
#   cmake --build build-cuda   (invar_cuda; {gemm,attention,ops}_test; {gemm,attention,ops}_bench)
#
# CUTLASS/CuTe headers (header-only use) come pinned from PyPI through scripts/setup-cuda, into
# a cache outside the source tree; -DINVAR_CUTLASS_INCLUDE=<dir> points at another copy.

# Architectures are given as explicit -gencode flags below: the wgmma GEMM configs (sm90/) only
# for sm_90a (wgmma, setmaxnreg); everything else also for sm_80 (SASS, and PTX that newer GPUs
# compile at load), the portable path: other GPUs run the portable invariant GEMM (sm80/).
if(NOT DEFINED CMAKE_CUDA_ARCHITECTURES)
  set(CMAKE_CUDA_ARCHITECTURES OFF)
endif()
if(NOT DEFINED CMAKE_CUDA_HOST_COMPILER)
  set(CMAKE_CUDA_HOST_COMPILER ${CMAKE_CXX_COMPILER})
endif()
enable_language(CUDA)
find_package(CUDAToolkit 12.3 REQUIRED)
# C++17 for device code: nvcc's C++20 front end rejects fmt 9's consteval checks (core/status.h).
set(CMAKE_CUDA_STANDARD 17)
set(CMAKE_CUDA_STANDARD_REQUIRED ON)
set(CMAKE_CUDA_EXTENSIONS OFF)

set(INVAR_CUTLASS_INCLUDE "" CACHE PATH "CUTLASS include directory (empty: fetch the pinned copy)")
if(NOT INVAR_CUTLASS_INCLUDE)
  execute_process(
    COMMAND bash ${PROJECT_SOURCE_DIR}/scripts/setup-cuda
    OUTPUT_VARIABLE invar_cutlass_out
    RESULT_VARIABLE invar_cutlass_rc
    OUTPUT_STRIP_TRAILING_WHITESPACE)
  if(NOT invar_cutlass_rc EQUAL 0 OR NOT EXISTS "${invar_cutlass_out}/cutlass/cutlass.h")
    message(FATAL_ERROR "scripts/setup-cuda could not fetch the CUTLASS headers; run it by hand "
                        "to see why, or pass -DINVAR_CUTLASS_INCLUDE=<dir>")
  endif()
  set(INVAR_CUTLASS_INCLUDE "${invar_cutlass_out}" CACHE PATH
      "CUTLASS include directory (empty: fetch the pinned copy)" FORCE)
endif()
message(STATUS "invar: CUTLASS headers from ${INVAR_CUTLASS_INCLUDE}")

option(INVAR_CUDA_PORTABLE "Also build for sm_80 (non-Hopper GPUs from Ampere on)" ON)
set(INVAR_CUDA_FLAGS
  --expt-relaxed-constexpr
  -lineinfo
  # CUTLASS's own headers: deprecated lambda captures in sm100 files we do not instantiate.
  -diag-suppress=2908)
set(INVAR_CUDA_ARCH_HOPPER -gencode=arch=compute_90a,code=sm_90a)
set(INVAR_CUDA_ARCH_ALL ${INVAR_CUDA_ARCH_HOPPER})
if(INVAR_CUDA_PORTABLE)
  list(APPEND INVAR_CUDA_ARCH_ALL -gencode=arch=compute_80,code=sm_80
                                  -gencode=arch=compute_80,code=compute_80)
endif()

# `archs`: HOPPER for sources that only build for sm_90a, ALL for the rest.
function(invar_cuda_target target)
  set_target_properties(${target} PROPERTIES CUDA_ARCHITECTURES OFF)
  target_compile_options(${target} PRIVATE $<$<COMPILE_LANGUAGE:CUDA>:${INVAR_CUDA_FLAGS}>)
  get_target_property(srcs ${target} SOURCES)
  foreach(src ${srcs})
    if(src MATCHES "\\.cu$")
      if(src MATCHES "/sm90/")
        set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${INVAR_CUDA_ARCH_HOPPER}")
      else()
        set_source_files_properties(${src} PROPERTIES COMPILE_OPTIONS "${INVAR_CUDA_ARCH_ALL}")
      endif()
    endif()
  endforeach()
endfunction()

file(GLOB invar_cuda_srcs CONFIGURE_DEPENDS
  ${PROJECT_SOURCE_DIR}/src/kernels/cuda/*.cu
  ${PROJECT_SOURCE_DIR}/src/kernels/cuda/sm80/*.cu
  ${PROJECT_SOURCE_DIR}/src/kernels/cuda/sm90/*.cu)
add_library(invar_cuda STATIC ${invar_cuda_srcs})
invar_cuda_target(invar_cuda)
target_include_directories(invar_cuda PUBLIC ${PROJECT_SOURCE_DIR}/src ${PROJECT_SOURCE_DIR}/include)
target_include_directories(invar_cuda SYSTEM PRIVATE ${INVAR_CUTLASS_INCLUDE})
# core/status.h is header-only; fmt's headers come with it (no libfmt at run time: the GPU
# machine's image does not have it).
target_include_directories(invar_cuda SYSTEM PUBLIC $<TARGET_PROPERTY:fmt::fmt,INTERFACE_INCLUDE_DIRECTORIES>)
# cuBLAS and cuBLASLt (fast mode; cuBLASLt for the block-scaled FP8 GEMM) and the driver API
# (TMA descriptors) are shared libraries of the toolkit; the CUDA runtime is linked statically.
target_link_libraries(invar_cuda PUBLIC CUDA::cudart_static CUDA::cublas CUDA::cublasLt
                      PRIVATE CUDA::cuda_driver)
# The host-side planners (src/kernels/cuda/*.cpp) live in invar_kernels.
target_link_libraries(invar_cuda PUBLIC invar_kernels)

# The CUDA backend of the model (ModelRunner): host C++20 compiled by g++ that calls the
# launchers above; the engine's runner factory offers it as --device cuda.
file(GLOB invar_model_cuda_srcs CONFIGURE_DEPENDS ${PROJECT_SOURCE_DIR}/src/model/cuda/*.cpp)
add_library(invar_model_cuda STATIC ${invar_model_cuda_srcs})
target_link_libraries(invar_model_cuda PUBLIC invar_model invar_cuda)
invar_set_warnings(invar_model_cuda)
# PRIVATE: the engine's users see no CUDA header (model_runner_factory.h hides the runner), so
# turning CUDA on in a CPU build folder recompiles only the engine and what is new.
target_link_libraries(invar_engine PRIVATE invar_model_cuda)
target_compile_definitions(invar_engine PRIVATE INVAR_WITH_CUDA)

# The NCCL communicator of tensor parallelism (src/model/cuda/nccl/, docs/tensor-parallel.md):
# the CUDA runner joins ranks on different GPUs with it. It has not run on several GPUs yet. Off
# by default, so that the CUDA build needs no NCCL (ranks then meet at host barriers).
option(INVAR_NCCL "Join tensor-parallel ranks on different GPUs by NCCL (not yet run on several GPUs)" OFF)
if(INVAR_NCCL)
  find_path(INVAR_NCCL_INCLUDE nccl.h HINTS ${CUDAToolkit_INCLUDE_DIRS} REQUIRED)
  find_library(INVAR_NCCL_LIBRARY nccl HINTS ${CUDAToolkit_LIBRARY_DIR} REQUIRED)
  add_library(invar_nccl STATIC ${PROJECT_SOURCE_DIR}/src/model/cuda/nccl/nccl_communicator.cu)
  invar_cuda_target(invar_nccl)
  target_include_directories(invar_nccl PUBLIC ${PROJECT_SOURCE_DIR}/src)
  target_include_directories(invar_nccl SYSTEM PUBLIC ${INVAR_NCCL_INCLUDE})
  target_link_libraries(invar_nccl PUBLIC invar_core invar_cuda CUDA::cudart_static ${INVAR_NCCL_LIBRARY})
  target_link_libraries(invar_model_cuda PUBLIC invar_nccl)
  target_compile_definitions(invar_model_cuda PRIVATE INVAR_WITH_NCCL)
endif()

# The GPU tests and benchmark have their own switches, independent of the CPU suites.
option(INVAR_CUDA_TESTS "Build the CUDA tests (CTest label cuda)" ON)
option(INVAR_CUDA_BENCH "Build the CUDA benchmarks" ON)

if(INVAR_CUDA_TESTS)
  find_package(GTest REQUIRED)
  enable_testing()
  add_executable(gemm_test ${PROJECT_SOURCE_DIR}/tests/cuda/gemm_test.cu)
  invar_cuda_target(gemm_test)
  target_link_libraries(gemm_test PRIVATE invar_cuda GTest::gtest GTest::gtest_main)
  # A relative command so the build folder can be carried to the GPU machine and run there
  # by ctest (scripts/gpu-check); ctest runs it from this binary directory.
  add_test(NAME cuda_gemm COMMAND ./gemm_test)
  set_tests_properties(cuda_gemm PROPERTIES LABELS cuda TIMEOUT 1200)
  foreach(t attention_test ops_test gate_up_test fp8_gemm_test)
    add_executable(${t} ${PROJECT_SOURCE_DIR}/tests/cuda/${t}.cu)
    invar_cuda_target(${t})
    target_link_libraries(${t} PRIVATE invar_cuda GTest::gtest GTest::gtest_main)
  endforeach()
  # The MoE MLP of the CUDA runner (model layer) and its kernels.
  add_executable(moe_test ${PROJECT_SOURCE_DIR}/tests/cuda/moe_test.cu)
  invar_cuda_target(moe_test)
  target_link_libraries(moe_test PRIVATE invar_model_cuda GTest::gtest GTest::gtest_main)
  add_test(NAME cuda_moe COMMAND ./moe_test)
  set_tests_properties(cuda_moe PROPERTIES LABELS cuda TIMEOUT 1200)
  # Whole models on CUDA against the CPU backend (host C++ over the engine's runner factory).
  add_executable(model_test ${PROJECT_SOURCE_DIR}/tests/cuda/model_test.cpp
                            ${PROJECT_SOURCE_DIR}/tests/test_paths.cpp)
  target_link_libraries(model_test PRIVATE invar_engine invar_model_cuda GTest::gtest GTest::gtest_main)
  target_include_directories(model_test PRIVATE ${PROJECT_SOURCE_DIR}/tests)
  target_compile_definitions(model_test PRIVATE INVAR_TEST_DATA_DIR="${PROJECT_SOURCE_DIR}/tests/data")
  invar_set_warnings(model_test)
  add_test(NAME cuda_model COMMAND ./model_test)
  set_tests_properties(cuda_model PROPERTIES LABELS cuda TIMEOUT 1200)
  # sample_rows under structured-output masks against the engine's host sampler (invar_engine).
  add_executable(sample_mask_test ${PROJECT_SOURCE_DIR}/tests/cuda/sample_mask_test.cu)
  invar_cuda_target(sample_mask_test)
  target_link_libraries(sample_mask_test PRIVATE invar_engine GTest::gtest GTest::gtest_main)
  add_test(NAME cuda_sample_mask COMMAND ./sample_mask_test)
  set_tests_properties(cuda_sample_mask PROPERTIES LABELS cuda TIMEOUT 600)

  # The Hopper attention kernel's tile layout and wgmma descriptors against CuTe: host only, no GPU.
  add_executable(attention_sm90_layout_test
                 ${PROJECT_SOURCE_DIR}/tests/cuda/attention_sm90_layout_test.cu)
  invar_cuda_target(attention_sm90_layout_test)
  target_include_directories(attention_sm90_layout_test PRIVATE ${PROJECT_SOURCE_DIR}/src)
  target_include_directories(attention_sm90_layout_test SYSTEM PRIVATE ${INVAR_CUTLASS_INCLUDE})
  target_link_libraries(attention_sm90_layout_test PRIVATE GTest::gtest GTest::gtest_main)
  add_test(NAME cuda_attention_sm90_layout COMMAND ./attention_sm90_layout_test)
  set_tests_properties(cuda_attention_sm90_layout PROPERTIES LABELS cuda TIMEOUT 60)
  add_test(NAME cuda_attention COMMAND ./attention_test)
  add_test(NAME cuda_ops COMMAND ./ops_test)
  add_test(NAME cuda_gate_up COMMAND ./gate_up_test)
  add_test(NAME cuda_fp8_gemm COMMAND ./fp8_gemm_test)
  set_tests_properties(cuda_attention cuda_ops cuda_gate_up cuda_fp8_gemm PROPERTIES
                       LABELS cuda TIMEOUT 1200)
endif()

if(INVAR_CUDA_BENCH)
  foreach(b gemm_bench attention_bench ops_bench fp8_gemm_bench)
    add_executable(${b} ${PROJECT_SOURCE_DIR}/bench/cuda/${b}.cu)
    invar_cuda_target(${b})
    target_link_libraries(${b} PRIVATE invar_cuda)
  endforeach()
  add_executable(moe_bench ${PROJECT_SOURCE_DIR}/bench/cuda/moe_bench.cu)
  invar_cuda_target(moe_bench)
  target_link_libraries(moe_bench PRIVATE invar_model_cuda)
endif()
