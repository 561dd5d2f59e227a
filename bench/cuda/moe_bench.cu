// Benchmark of the mixture-of-experts MLP (model/cuda/moe_mlp.h) at Qwen3-30B-A3B's shapes
// (H 2048, 128 experts, 8 per token, 768 features each), invariant vs fast in the same run:
//   layer: the whole MLP of a sparse layer (router, routing, grouping, experts, combine), as the
//          runner launches it: invariant mode from a CUDA graph, fast mode eagerly (its group
//          sizes come to the host: no graph can hold that sync).
//   experts: the expert GEMMs alone (gate/up, SiLU-mul, down) for the same routing: the grouped
//          GEMM (graph) vs cuBLAS per expert with the group sizes known on the host in advance
//          (graph; a lower bound for the fast path, which must first fetch them).
// Random data; each point the median of 15 timings. Weights 1.2 GB: every read is from HBM.
//   T = tokens
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <functional>
#include <vector>

#include "kernels/cuda/gemm.h"
#include "kernels/cuda/grouped_gemm.h"
#include "kernels/cuda/moe.h"
#include "kernels/cuda/ops.h"
#include "model/cuda/moe_mlp.h"

#include "bench_util.cuh"

using invar::kernels::KernelMode;
using namespace invar::kernels::cuda;
using bf16 = __nv_bfloat16;

namespace {

constexpr int kHidden = 2048, kExperts = 128, kTopK = 8, kInter = 768;

cudaStream_t g_stream;

// Median time in us of one `op()`, from a graph of `launches` calls or eagerly.
double time_op(const std::function<void()>& op, bool graph, int launches = 10) {
  constexpr int kReps = 15;
  for (int i = 0; i < 2; ++i) op();
  CHECK_CUDA(cudaStreamSynchronize(g_stream));
  cudaGraphExec_t exec = nullptr;
  cudaGraph_t g = nullptr;
  if (graph) {
    CHECK_CUDA(cudaStreamBeginCapture(g_stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < launches; ++i) op();
    CHECK_CUDA(cudaStreamEndCapture(g_stream, &g));
    CHECK_CUDA(cudaGraphInstantiate(&exec, g, 0));
  }
  cudaEvent_t a, b;
  CHECK_CUDA(cudaEventCreate(&a));
  CHECK_CUDA(cudaEventCreate(&b));
  std::vector<double> t;
  for (int r = 0; r < kReps; ++r) {
    CHECK_CUDA(cudaEventRecord(a, g_stream));
    if (graph) {
      CHECK_CUDA(cudaGraphLaunch(exec, g_stream));
    } else {
      for (int i = 0; i < launches; ++i) op();
    }
    CHECK_CUDA(cudaEventRecord(b, g_stream));
    CHECK_CUDA(cudaEventSynchronize(b));
    float ms = 0;
    CHECK_CUDA(cudaEventElapsedTime(&ms, a, b));
    t.push_back(double(ms) * 1e3 / launches);
  }
  if (graph) {
    CHECK_CUDA(cudaGraphExecDestroy(exec));
    CHECK_CUDA(cudaGraphDestroy(g));
  }
  CHECK_CUDA(cudaEventDestroy(a));
  CHECK_CUDA(cudaEventDestroy(b));
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void* random_device(size_t elems, uint64_t seed) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, elems * 2));
  fill_random_bf16<<<1024, 256, 0, g_stream>>>(static_cast<uint16_t*>(p), int64_t(elems), seed);
  return p;
}

void* device(size_t bytes) {
  void* p = nullptr;
  CHECK_CUDA(cudaMalloc(&p, bytes));
  return p;
}

}  // namespace

int main() {
  CHECK_CUDA(cudaStreamCreate(&g_stream));
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  std::printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
  std::printf("MoE MLP, Qwen3-30B-A3B shapes: H %d, %d experts, %d per token, %d features\n",
              kHidden, kExperts, kTopK, kInter);

  invar::model::ModelConfig config;
  config.hidden_size = kHidden;
  config.moe.num_experts = kExperts;
  config.moe.experts_per_token = kTopK;
  config.moe.expert_intermediate_size = kInter;
  config.moe.normalize_top_k = true;
  invar::model::cuda::DeviceLayer w;
  auto put = [](DeviceBuffer& b, size_t elems, uint64_t seed) {
    check(b.reserve(elems * 2, "weights"), "weights");
    fill_random_bf16<<<1024, 256, 0, g_stream>>>(b.as<uint16_t>(), int64_t(elems), seed);
  };
  put(w.router, size_t(kExperts) * kHidden, 1);
  put(w.experts_gate_up, size_t(kExperts) * 2 * kInter * kHidden, 2);
  put(w.experts_down, size_t(kExperts) * kHidden * kInter, 3);

  const std::vector<int> token_counts{1, 4, 16, 64, 128, 256, 512, 1024, 2048, 4096, 8192};
  const int max_tokens = token_counts.back();
  const size_t max_rows = size_t(max_tokens) * kTopK;
  auto* h = static_cast<bf16*>(random_device(size_t(max_tokens) * kHidden, 4));
  auto* out = static_cast<bf16*>(device(size_t(max_tokens) * kHidden * 2));
  // The expert-only comparison's inputs: one routing's groups.
  auto* logits = static_cast<float*>(device(size_t(max_tokens) * kExperts * 4));
  auto* ids = static_cast<int32_t*>(device(max_rows * 4));
  auto* weights = static_cast<float*>(device(max_rows * 4));
  auto* counts = static_cast<int32_t*>(device(kExperts * 4));
  auto* starts = static_cast<int32_t*>(device((kExperts + 1) * 4));
  auto* row_of_pick = static_cast<int32_t*>(device(max_rows * 4));
  auto* token_of_row = static_cast<int32_t*>(device(max_rows * 4));
  auto* gx = static_cast<bf16*>(random_device(max_rows * kHidden, 5));
  auto* gu = static_cast<bf16*>(device(max_rows * 2 * kInter * 2));
  auto* act = static_cast<bf16*>(device(max_rows * kInter * 2));
  auto* y = static_cast<bf16*>(device(max_rows * kHidden * 2));
  void* ws = device(grouped_gemm_workspace_bytes(kExperts));

  invar::model::cuda::MoeMlp moe(config);
  check(moe.reserve(max_tokens, 0), "reserve");
  auto ctas = grouped_gemm_ctas(0);
  check(ctas.status(), "grouped_gemm_ctas");
  auto gemm = CudaGemm::create(0);
  check(gemm.status(), "CudaGemm");
  auto no_probe = [](invar::model::ProbeOp, const void*, bool, int64_t, int64_t) {};

  std::printf("\n%6s %8s | %12s %12s %7s | %12s %12s %7s\n", "T", "experts", "layer inv us",
              "layer fast", "ratio", "gemms grp us", "cublas/exp", "ratio");
  for (int tokens : token_counts) {
    auto layer = [&](KernelMode mode) {
      return [&, mode] {
        check(moe.run(w, h, tokens, out, mode, **gemm, g_stream, no_probe), "moe.run");
      };
    };
    const double inv = time_op(layer(KernelMode::invariant), true);
    const double fast = time_op(layer(KernelMode::fast), false);

    check(moe_router_logits(h, kHidden, w.router.as<bf16>(), tokens, kExperts, kHidden, logits,
                            g_stream), "router");
    check(moe_route(logits, tokens, kExperts, kTopK, true, ids, weights, g_stream), "route");
    check(moe_group(ids, tokens, kTopK, kExperts, counts, starts, row_of_pick, token_of_row,
                    g_stream), "group");
    std::vector<int32_t> host_starts(kExperts + 1);
    CHECK_CUDA(cudaMemcpyAsync(host_starts.data(), starts, host_starts.size() * 4,
                               cudaMemcpyDeviceToHost, g_stream));
    CHECK_CUDA(cudaStreamSynchronize(g_stream));
    int active = 0;
    for (int e = 0; e < kExperts; ++e) active += host_starts[e + 1] > host_starts[e];
    const int64_t rows = int64_t(tokens) * kTopK;
    auto grouped = [&] {
      check(grouped_gemm({.groups = kExperts, .starts = starts, .x = gx, .ldx = kHidden,
                          .w = w.experts_gate_up.as(), .y = gu, .ldy = 2 * kInter,
                          .n = 2 * kInter, .k = kHidden, .workspace = ws},
                         *ctas, g_stream), "grouped gate/up");
      check(silu_mul_paired(gu, 2 * kInter, rows, kInter, act, kInter, g_stream), "silu");
      check(grouped_gemm({.groups = kExperts, .starts = starts, .x = act, .ldx = kInter,
                          .w = w.experts_down.as(), .y = y, .ldy = kHidden, .n = kHidden,
                          .k = kInter, .workspace = ws},
                         *ctas, g_stream), "grouped down");
    };
    auto per_expert = [&] {
      for (int e = 0; e < kExperts; ++e) {
        const int64_t first = host_starts[e], m = host_starts[e + 1] - first;
        if (m == 0) continue;
        check((*gemm)->run_gate_up({.x = gx + first * kHidden, .ldx = kHidden,
                                    .w = w.experts_gate_up.as<bf16>() + int64_t(e) * 2 * kInter * kHidden,
                                    .ldw = kHidden, .h = act + first * kInter, .ldh = kInter,
                                    .scratch = gu + first * 2 * kInter, .m = m, .inter = kInter,
                                    .k = kHidden},
                                   KernelMode::fast, g_stream), "cuBLAS gate/up");
        check((*gemm)->run({.x = act + first * kInter, .ldx = kInter,
                            .w = w.experts_down.as<bf16>() + int64_t(e) * kHidden * kInter,
                            .ldw = kInter, .y = y + first * kHidden, .ldy = kHidden, .m = m,
                            .n = kHidden, .k = kInter},
                           KernelMode::fast, g_stream), "cuBLAS down");
      }
    };
    const double grp = time_op(grouped, true, 4);
    const double cub = time_op(per_expert, true, 2);
    std::printf("%6d %8d | %12.1f %12.1f %7.2f | %12.1f %12.1f %7.2f\n", tokens, active, inv, fast,
                fast / inv, grp, cub, cub / grp);
  }
  std::printf("\nratio = fast time / invariant time (> 1: invariant is faster)\n");
  return 0;
}
