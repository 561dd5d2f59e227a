// Benchmark of paged attention on the GPU: the invariant path against fast mode (the usual
// batch-dependent split heuristic, same kernels otherwise) in the same run.
//   B = sequences, KV = cached tokens per sequence, Hq / Hkv = heads, D = head dim
// Decode: B sequences of one query token each; the cache pages are rotated over enough
// disjoint copies (>= 256 MiB) that every call reads KV from device memory, not L2.
// Prefill: causal, q_len = kv_len. Mixed: one 512-token chunk plus decode steps.
// Each point: random bf16 data; warm-up, then a CUDA graph of `launches` calls per variant,
// replays interleaved (A B A B ...), median replay time / launches. Rates: TB/s = K + V bytes
// read (+ q, out) / t; TFLOP/s = 4 D Hq sum(positions attended) / t.
// Two variants per point, A and B, ratio = t(B) / t(A) (> 1: A faster):
//   default            A = invariant, B = fast, both on the mma.sync kernel
//   --kernel wgmma     the same, with prefill (whole-row) items on the Hopper wgmma kernel
//   --compare-kernels  A = invariant on wgmma (prefill items), B = invariant on mma.sync: the
//                      same bits (attention_test proves it), so the ratio is the kernel's speedup
//   --compare-spread   A = invariant with spread CTAs (items of <= 16 rows: four warps share
//                      each tile), B = invariant with one-warp CTAs: the same bits again
//   --compare-pipelines  A = invariant on wgmma with the schedule of --pipeline (pingpong by
//                      default), B = the same with the serial schedule: the same bits again
//                      (attention_test), so the ratio is what the overlaps buy
//   --compare-decode-paths  A = invariant as served (merge placement and load stages chosen
//                      per step), B = invariant with a merge launch and two
//                      stages (the path before both): the same bits (attention_test)
// --merge-launch: every variant gets a merge launch and two load stages (the earlier path).
// --decode-sweep: only decode, B = 1..16 x KV = 512..32k (small-batch decode); --decode B KV: one
// decode point (e.g. under a profiler).
// --prefill-sweep: only causal prefills, 1 x L for L = 1k..16k and two batched points (the torch
// SDPA numbers for the same points: bench/cuda/attention_sdpa.py --prefill-sweep).
// Usage: attention_bench [--smollm2] [--reps N] [--quick] [--block-size N] [--kernel
// mma_sync|wgmma]
//                        [--pipeline serial|overlap|pingpong] [--compare-kernels]
//                        [--compare-spread] [--compare-pipelines] [--prefill-sweep]
//                        [--decode-sweep] [--compare-decode-paths] [--merge-launch]
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "bench_util.cuh"
#include "kernels/cuda/attention.h"

using invar::Status;
using invar::kernels::AttentionPlan;
using invar::kernels::KernelMode;
using namespace invar::kernels::cuda;

namespace {

struct Shape {
  const char* name;
  int hq, hkv, d;
};

constexpr int kDefaultBlockSize = 16;  // vLLM's and serve's default page size

// One step's sequences: (q_len, kv_len) each.
struct Seq {
  int q_len, kv_len;
};

struct Point {
  std::string label;
  std::vector<Seq> seqs;
};

// One column of the table: a kernel mode and the kernel of prefill items.
struct Variant {
  const char* label;  // column header, <= 10 characters
  KernelMode mode;
  AttentionKernel prefill;
  bool spread = true;                                // CudaAttention::set_spread_ctas
  WgmmaPipeline pipeline = WgmmaPipeline::pingpong;  // CudaAttention::set_wgmma_pipeline
  MergePlacement merges = MergePlacement::per_step;  // CudaAttention::set_merge_placement
  int load_stages = 0;                               // CudaAttention::set_load_stages (0: per step)
  bool scores_ahead = false;                         // CudaAttention::set_scores_ahead
};

// The cache, big enough for the largest rotation set of the run.
struct Bench {
  Shape shape;
  KvCacheRef cache{};
  int64_t cache_tokens = 0;
  cudaStream_t stream = nullptr;
  Variant variant[2];
  std::unique_ptr<CudaAttention> attn[2];  // variant A, B
  int reps = 15;
  int block_size = kDefaultBlockSize;  // --block-size: cache rows per page
};

struct Result {
  double us[2];
  int64_t ctas[2];
};

Result run_point(Bench& b, const Point& pt) {
  const Shape& sh = b.shape;
  const int S = int(pt.seqs.size());
  std::vector<int32_t> q_indptr{0}, kv_lens;
  int64_t tokens = 0, kv_tokens = 0;
  int max_blocks = 1;
  for (const Seq& s : pt.seqs) {
    q_indptr.push_back(q_indptr.back() + s.q_len);
    kv_lens.push_back(s.kv_len);
    tokens += s.q_len;
    kv_tokens += s.kv_len;
    max_blocks = std::max(max_blocks, (s.kv_len + b.block_size - 1) / b.block_size);
  }
  // Rotation sets of disjoint pages: >= 256 MiB of KV per rotation, as many as fit.
  const int64_t kv_bytes = kv_tokens * sh.hkv * sh.d * 4;
  const int64_t blocks_per_set = int64_t(S) * max_blocks;
  const int64_t cache_blocks = b.cache_tokens / b.block_size;
  int sets = int(std::max<int64_t>(
      1, std::min<int64_t>((int64_t(256) << 20) / std::max<int64_t>(kv_bytes, 1) + 1, 16)));
  sets = int(std::max<int64_t>(1, std::min<int64_t>(sets, cache_blocks / blocks_per_set)));
  std::vector<int32_t> tables(size_t(sets) * S * max_blocks);
  for (size_t i = 0; i < tables.size(); ++i) tables[i] = int32_t(i);
  int32_t* d_tables = nullptr;
  CHECK_CUDA(cudaMalloc(&d_tables, tables.size() * 4));
  CHECK_CUDA(cudaMemcpy(d_tables, tables.data(), tables.size() * 4, cudaMemcpyHostToDevice));
  const int64_t row = int64_t(sh.hq) * sh.d;
  void *q = nullptr, *out = nullptr;
  CHECK_CUDA(cudaMalloc(&q, size_t(tokens * row) * 2));
  CHECK_CUDA(cudaMalloc(&out, size_t(tokens * row) * 2));
  fill_random_bf16<<<1024, 256, 0, b.stream>>>(static_cast<uint16_t*>(q), tokens * row, 99);

  AttentionPlan hp;
  hp.num_seqs = S;
  hp.q_indptr = q_indptr.data();
  hp.kv_lens = kv_lens.data();
  hp.max_blocks_per_seq = max_blocks;
  hp.block_size = b.block_size;
  const AttentionDims dims{.q_heads = sh.hq,
                           .kv_heads = sh.hkv,
                           .head_dim = sh.d,
                           .scale = 1.0f / std::sqrt(float(sh.d))};
  const int64_t work = kv_tokens;  // rough size of a call, for the launch count
  const int launches = work < 100000 ? 20 : work < 2000000 ? 8 : 3;

  Result res{};
  cudaGraphExec_t exec[2];
  for (int v = 0; v < 2; ++v) {
    const KernelMode mode = b.variant[v].mode;
    check(b.attn[v]->plan(hp, dims, mode, b.stream), "plan");
    res.ctas[v] = b.attn[v]->stats().ctas;
    auto enqueue = [&](int i) {
      AttentionPlan dp = hp;
      dp.q_indptr = nullptr;
      dp.kv_lens = nullptr;
      dp.block_tables = d_tables + int64_t(i % sets) * S * max_blocks;
      check(b.attn[v]->run(static_cast<const __nv_bfloat16*>(q), row, b.cache, dp,
                           static_cast<__nv_bfloat16*>(out), row, b.stream),
            "run");
    };
    for (int i = 0; i < 3; ++i) enqueue(i);  // warm-up
    CHECK_CUDA(cudaStreamSynchronize(b.stream));
    cudaGraph_t g;
    CHECK_CUDA(cudaStreamBeginCapture(b.stream, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < launches; ++i) enqueue(i);
    CHECK_CUDA(cudaStreamEndCapture(b.stream, &g));
    CHECK_CUDA(cudaGraphInstantiate(&exec[v], g, 0));
    CHECK_CUDA(cudaGraphDestroy(g));
    CHECK_CUDA(cudaGraphLaunch(exec[v], b.stream));
    CHECK_CUDA(cudaStreamSynchronize(b.stream));
  }
  cudaEvent_t e0, e1;
  CHECK_CUDA(cudaEventCreate(&e0));
  CHECK_CUDA(cudaEventCreate(&e1));
  std::vector<double> t[2];
  for (int r = 0; r < b.reps; ++r) {
    for (int v = 0; v < 2; ++v) {
      CHECK_CUDA(cudaEventRecord(e0, b.stream));
      CHECK_CUDA(cudaGraphLaunch(exec[v], b.stream));
      CHECK_CUDA(cudaEventRecord(e1, b.stream));
      CHECK_CUDA(cudaEventSynchronize(e1));
      float ms = 0;
      CHECK_CUDA(cudaEventElapsedTime(&ms, e0, e1));
      t[v].push_back(double(ms) * 1e3 / launches);
    }
  }
  for (int v = 0; v < 2; ++v) {
    std::sort(t[v].begin(), t[v].end());
    res.us[v] = t[v][t[v].size() / 2];
    CHECK_CUDA(cudaGraphExecDestroy(exec[v]));
  }
  CHECK_CUDA(cudaEventDestroy(e0));
  CHECK_CUDA(cudaEventDestroy(e1));
  CHECK_CUDA(cudaFree(d_tables));
  CHECK_CUDA(cudaFree(q));
  CHECK_CUDA(cudaFree(out));
  return res;
}

void print_header(const Bench& b, const char* what) {
  const std::string a = std::string(b.variant[0].label) + " us";
  const std::string c = std::string(b.variant[1].label) + " us";
  std::printf("\n%-28s | %13s %7s %7s %6s | %13s %7s %7s %6s | %5s\n", what, a.c_str(), "TB/s",
              "TFLOP/s", "CTAs", c.c_str(), "TB/s", "TFLOP/s", "CTAs", "ratio");
}

void report(Bench& b, const Point& pt) {
  const Shape& sh = b.shape;
  const Result r = run_point(b, pt);
  double bytes = 0, flops = 0;
  for (const Seq& s : pt.seqs) {
    bytes += double(s.kv_len) * sh.hkv * sh.d * 4 + double(s.q_len) * sh.hq * sh.d * 4;
    // Query at position p attends p + 1 positions.
    const double first = s.kv_len - s.q_len;
    const double attended = double(s.q_len) * (first + 1) + double(s.q_len) * (s.q_len - 1) / 2;
    flops += 4.0 * sh.d * sh.hq * attended;
  }
  std::printf("%-28s | %13.1f %7.2f %7.1f %6lld | %13.1f %7.2f %7.1f %6lld | %5.2f\n",
              pt.label.c_str(), r.us[0], bytes / r.us[0] * 1e-6, flops / r.us[0] * 1e-6,
              (long long)r.ctas[0], r.us[1], bytes / r.us[1] * 1e-6, flops / r.us[1] * 1e-6,
              (long long)r.ctas[1], r.us[1] / r.us[0]);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  bool smol = false, quick = false, compare_kernels = false, prefill_sweep = false;
  bool compare_spread = false, decode_sweep = false, compare_pipelines = false;
  bool compare_decode_paths = false, merge_launch = false, compare_scores_ahead = false;
  WgmmaPipeline pipeline = WgmmaPipeline::pingpong;
  int block_size = kDefaultBlockSize;
  int one_b = 0, one_kv = 0;         // --decode B KV: that point only (e.g. under a profiler)
  int prefill_b = 0, prefill_l = 0;  // --prefill B L: likewise, causal prefill
  AttentionKernel kernel = AttentionKernel::mma_sync;
  int reps = 15;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--smollm2"))
      smol = true;
    else if (!std::strcmp(argv[i], "--quick"))
      quick = true;
    else if (!std::strcmp(argv[i], "--reps") && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--kernel") && i + 1 < argc &&
             (!std::strcmp(argv[i + 1], "wgmma") || !std::strcmp(argv[i + 1], "mma_sync")))
      kernel =
          !std::strcmp(argv[++i], "wgmma") ? AttentionKernel::wgmma : AttentionKernel::mma_sync;
    else if (!std::strcmp(argv[i], "--compare-kernels"))
      compare_kernels = true;
    else if (!std::strcmp(argv[i], "--compare-spread"))
      compare_spread = true;
    else if (!std::strcmp(argv[i], "--compare-decode-paths"))
      compare_decode_paths = true;
    else if (!std::strcmp(argv[i], "--compare-scores-ahead"))
      compare_scores_ahead = true;
    else if (!std::strcmp(argv[i], "--merge-launch"))
      merge_launch = true;
    else if (!std::strcmp(argv[i], "--block-size") && i + 1 < argc)
      block_size = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--compare-pipelines"))
      compare_pipelines = true;
    else if (!std::strcmp(argv[i], "--pipeline") && i + 1 < argc &&
             (!std::strcmp(argv[i + 1], "serial") || !std::strcmp(argv[i + 1], "overlap") ||
              !std::strcmp(argv[i + 1], "pingpong") || !std::strcmp(argv[i + 1], "lean"))) {
      ++i;
      pipeline = !std::strcmp(argv[i], "serial")     ? WgmmaPipeline::serial
                 : !std::strcmp(argv[i], "overlap")  ? WgmmaPipeline::overlap
                 : !std::strcmp(argv[i], "pingpong") ? WgmmaPipeline::pingpong
                                                     : WgmmaPipeline::lean;
    } else if (!std::strcmp(argv[i], "--prefill-sweep"))
      prefill_sweep = true;
    else if (!std::strcmp(argv[i], "--decode-sweep"))
      decode_sweep = true;
    else if (!std::strcmp(argv[i], "--decode") && i + 2 < argc) {
      one_b = std::atoi(argv[++i]);
      one_kv = std::atoi(argv[++i]);
    } else if (!std::strcmp(argv[i], "--prefill") && i + 2 < argc) {
      prefill_b = std::atoi(argv[++i]);
      prefill_l = std::atoi(argv[++i]);
    } else {
      std::fprintf(stderr,
                   "usage: attention_bench [--smollm2] [--quick] [--reps N] [--block-size N] "
                   "[--kernel mma_sync|wgmma] [--pipeline serial|overlap|pingpong|lean] "
                   "[--compare-kernels] [--compare-spread] [--compare-pipelines] "
                   "[--prefill-sweep] [--decode-sweep] [--decode B KV] [--prefill B L] "
                   "[--compare-decode-paths] [--compare-scores-ahead] [--merge-launch]\n");
      return 2;
    }
  }
  Bench b;
  if (compare_pipelines) {
    b.variant[0] = {wgmma_pipeline_name(pipeline), KernelMode::invariant, AttentionKernel::wgmma,
                    true, pipeline};
    b.variant[1] = {"serial", KernelMode::invariant, AttentionKernel::wgmma, true,
                    WgmmaPipeline::serial};
  } else if (compare_kernels) {
    b.variant[0] = {"wgmma", KernelMode::invariant, AttentionKernel::wgmma, true, pipeline};
    b.variant[1] = {"mma_sync", KernelMode::invariant, AttentionKernel::mma_sync, true};
  } else if (compare_scores_ahead) {
    b.variant[0] = {"ahead", KernelMode::invariant, kernel, true, pipeline};
    b.variant[0].scores_ahead = true;
    b.variant[1] = {"in order", KernelMode::invariant, kernel, true, pipeline};
  } else if (compare_decode_paths) {
    b.variant[0] = {"inv", KernelMode::invariant, kernel, true, pipeline};
    b.variant[1] = {"inv before", KernelMode::invariant,      kernel, true,
                    pipeline,     MergePlacement::own_launch, 2};
  } else if (compare_spread) {
    b.variant[0] = {"spread", KernelMode::invariant, kernel, true, pipeline};
    b.variant[1] = {"one warp", KernelMode::invariant, kernel, false, pipeline};
  } else {
    const bool w = kernel == AttentionKernel::wgmma;
    b.variant[0] = {w ? "inv wgmma" : "inv", KernelMode::invariant, kernel, true, pipeline};
    b.variant[1] = {w ? "fast wgmma" : "fast", KernelMode::fast, kernel, true, pipeline};
  }
  if (merge_launch) {
    for (Variant& v : b.variant) {
      v.merges = MergePlacement::own_launch;
      v.load_stages = 2;
    }
  }
  b.shape = smol ? Shape{"smollm2-135m", 9, 3, 64} : Shape{"qwen3-8b", 32, 8, 128};
  b.reps = reps;
  b.block_size = block_size;
  cudaDeviceProp prop{};
  CHECK_CUDA(cudaGetDeviceProperties(&prop, 0));
  CHECK_CUDA(cudaStreamCreateWithFlags(&b.stream, cudaStreamNonBlocking));
  // INVAR_ATTN_SPLIT_TILES: another split size for the invariant path (an experiment: the
  // split size is part of the recipe, kAttnSplitTiles).
  const char* split_env = std::getenv("INVAR_ATTN_SPLIT_TILES");
  const int split_tiles = split_env ? std::atoi(split_env) : kAttnSplitTiles;
  // INVAR_ATTN_SPLIT_GROUP: splits per split CTA for variant A instead of the planner's choice
  // from the load (grouping never changes bits: attention_test's *SplitGrouping*).
  const char* group_env = std::getenv("INVAR_ATTN_SPLIT_GROUP");
  const int split_group = group_env ? std::atoi(group_env) : 0;
  for (int i = 0; i < 2; ++i) {
    auto created = CudaAttention::create(0);
    check(created.status(), "CudaAttention::create");
    b.attn[i] = std::move(*created);
    b.attn[i]->set_split_tiles_for_experiments(split_tiles);
    if (i == 0 && split_group > 0) b.attn[i]->set_split_group(split_group);
    check(b.attn[i]->set_prefill_kernel(b.variant[i].prefill), "set_prefill_kernel");
    b.attn[i]->set_spread_ctas(b.variant[i].spread);
    b.attn[i]->set_wgmma_pipeline(b.variant[i].pipeline);
    b.attn[i]->set_merge_placement(b.variant[i].merges);
    check(b.attn[i]->set_load_stages(b.variant[i].load_stages), "set_load_stages");
    b.attn[i]->set_scores_ahead(b.variant[i].scores_ahead);
  }
  // Cache: 4M tokens (Qwen3-8B: 16 GiB per K and V... halved for SmolLM2's smaller rows).
  b.cache_tokens = int64_t(4) << 20;
  const int64_t elems = b.cache_tokens * b.shape.hkv * b.shape.d;
  void *k = nullptr, *v = nullptr;
  CHECK_CUDA(cudaMalloc(&k, size_t(elems) * 2));
  CHECK_CUDA(cudaMalloc(&v, size_t(elems) * 2));
  fill_random_bf16<<<4096, 256, 0, b.stream>>>(static_cast<uint16_t*>(k), elems, 1);
  fill_random_bf16<<<4096, 256, 0, b.stream>>>(static_cast<uint16_t*>(v), elems, 2);
  CHECK_CUDA(cudaStreamSynchronize(b.stream));
  b.cache = {static_cast<__nv_bfloat16*>(k),
             static_cast<__nv_bfloat16*>(v),
             int(b.cache_tokens / b.block_size),
             b.block_size,
             b.shape.hkv,
             b.shape.d};

  std::printf("device: %s (%d SMs, L2 %d MiB)\n", prop.name, prop.multiProcessorCount,
              prop.l2CacheSize >> 20);
  std::printf("invariant split: %d tiles of %d positions%s\n", split_tiles, kAttnKvTile,
              split_tiles == kAttnSplitTiles ? "" : " (experiment: not the recipe's size)");
  if (split_group > 0)
    std::printf("A: %d splits per split CTA (INVAR_ATTN_SPLIT_GROUP)\n", split_group);
  std::printf("shape: %s (Hq %d, Hkv %d, D %d), block size %d; median of %d graph replays\n",
              b.shape.name, b.shape.hq, b.shape.hkv, b.shape.d, b.block_size, reps);
  for (int i = 0; i < 2; ++i) {
    const std::string stages = b.variant[i].load_stages == 0
                                   ? "per step (4 up to one CTA per SM, else 2)"
                                   : std::to_string(b.variant[i].load_stages);
    std::printf(
        "%c = %s: %s mode, prefill items on the %s kernel%s%s, split items on mma_sync, "
        "spread CTAs %s, merges %s, load stages %s%s\n",
        i == 0 ? 'A' : 'B', b.variant[i].label, kernel_mode_name(b.variant[i].mode),
        attention_kernel_name(b.variant[i].prefill),
        b.variant[i].prefill == AttentionKernel::wgmma ? " schedule " : "",
        b.variant[i].prefill == AttentionKernel::wgmma ? wgmma_pipeline_name(b.variant[i].pipeline)
                                                       : "",
        b.variant[i].spread ? "on" : "off",
        b.variant[i].merges == MergePlacement::per_step
            ? "per step (in the attention launch up to one CTA per SM)"
        : b.variant[i].merges == MergePlacement::fused ? "in the attention launch"
                                                       : "in their own launch",
        stages.c_str(), b.variant[i].scores_ahead ? ", scores ahead" : "");
  }
  std::printf("ratio = t(B) / t(A) (> 1: A faster); fast = split count from batch and SM count\n");

  if (prefill_sweep) {
    print_header(b, "prefill B x L (causal)");
    for (auto [bsz, len] : std::vector<std::pair<int, int>>{
             {1, 1024}, {1, 2048}, {1, 4096}, {1, 8192}, {1, 16384}, {4, 4096}, {16, 1024}}) {
      Point pt{"prefill " + std::to_string(bsz) + " x " + std::to_string(len), {}};
      pt.seqs.assign(size_t(bsz), Seq{len, len});
      report(b, pt);
    }
    CHECK_CUDA(cudaFree(k));
    CHECK_CUDA(cudaFree(v));
    return 0;
  }

  if (prefill_b > 0 && prefill_l > 0) {
    print_header(b, "prefill B x L (causal)");
    Point pt{"prefill " + std::to_string(prefill_b) + " x " + std::to_string(prefill_l), {}};
    pt.seqs.assign(size_t(prefill_b), Seq{prefill_l, prefill_l});
    report(b, pt);
    CHECK_CUDA(cudaFree(k));
    CHECK_CUDA(cudaFree(v));
    return 0;
  }
  if (one_b > 0 && one_kv > 0) {
    print_header(b, "decode B x KV");
    Point pt{"decode " + std::to_string(one_b) + " x " + std::to_string(one_kv), {}};
    pt.seqs.assign(size_t(one_b), Seq{1, one_kv});
    report(b, pt);
    CHECK_CUDA(cudaFree(k));
    CHECK_CUDA(cudaFree(v));
    return 0;
  }
  if (decode_sweep) {
    print_header(b, "decode B x KV");
    for (int bsz : {1, 2, 4, 8, 16}) {
      for (int kv : {512, 1024, 2048, 4096, 8192, 32768}) {
        Point pt{"decode " + std::to_string(bsz) + " x " + std::to_string(kv), {}};
        pt.seqs.assign(size_t(bsz), Seq{1, kv});
        report(b, pt);
      }
    }
    CHECK_CUDA(cudaFree(k));
    CHECK_CUDA(cudaFree(v));
    return 0;
  }

  print_header(b, "decode B x KV");
  const std::vector<int> batches =
      quick ? std::vector<int>{1, 16, 128} : std::vector<int>{1, 4, 16, 64, 256};
  const std::vector<int> kvs =
      quick ? std::vector<int>{1024, 8192} : std::vector<int>{512, 2048, 4096, 8192, 32768};
  for (int bsz : batches) {
    for (int kv : kvs) {
      if (int64_t(bsz) * kv > b.cache_tokens / 2) continue;
      Point pt{"decode " + std::to_string(bsz) + " x " + std::to_string(kv), {}};
      pt.seqs.assign(size_t(bsz), Seq{1, kv});
      report(b, pt);
    }
  }
  print_header(b, "prefill B x L (causal)");
  for (auto [bsz, len] : quick ? std::vector<std::pair<int, int>>{{1, 2048}, {1, 8192}}
                               : std::vector<std::pair<int, int>>{
                                     {1, 512}, {1, 2048}, {1, 8192}, {4, 4096}, {16, 1024}}) {
    Point pt{"prefill " + std::to_string(bsz) + " x " + std::to_string(len), {}};
    pt.seqs.assign(size_t(bsz), Seq{len, len});
    report(b, pt);
  }
  print_header(b, "mixed step");
  for (int dec : {15, 63}) {
    Point pt{"chunk 512@4096 + " + std::to_string(dec) + " dec@4096", {}};
    pt.seqs.push_back({512, 4096});
    for (int i = 0; i < dec; ++i) pt.seqs.push_back({1, 4096});
    report(b, pt);
  }
  CHECK_CUDA(cudaFree(k));
  CHECK_CUDA(cudaFree(v));
  return 0;
}
