#!/usr/bin/env bash
# CPU prefill and decode speed and peak memory of `invar generate` and of llama.cpp on the same
# GGUF (default: SmolLM2-135M-Instruct Q4_1), same prompt, same thread count, in one run, with
# the runs interleaved (invar, llama.cpp, invar, ...) so that both see the same machine load.
#
#   bash bench/model/llama_cpp_compare.sh [--threads N] [--gen G] [--reps R] [--model GGUF]
#
# llama.cpp comes from llama-cpp-python==0.3.36 (pinned), installed from PyPI into a venv under
# the build folder ($BUILD, default build): pip builds llama.cpp from source, CPU only (this
# machine's SIMD up to AVX-512 VNNI/BF16, no AMX; OpenMP threads), which takes a while the
# first time. Its peak RSS includes the
# Python interpreter (printed separately). Both use a 4096-token context with an f16 KV cache.
# Each figure is the median over the repetitions; the ratio is invar / llama.cpp.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD:-build}
[[ "$build" == /* ]] || build="$root/$build"
threads=$(nproc)
gen=128
reps=3
model=""
while (($#)); do
  case "$1" in
    --threads) threads=$2; shift 2 ;;
    --gen) gen=$2; shift 2 ;;
    --reps) reps=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
[[ -n "$model" ]] || model=$(bash "$root/scripts/fetch-model")
invar="$build/invar"
[[ -x "$invar" ]] || { echo "no $invar: build first (make build)" >&2; exit 1; }

venv="$build/llama-cpp-venv"
# CPU only, this machine's SIMD named explicitly rather than -march=native: native enables AMX,
# which some VMs advertise but do not grant (llama.cpp then dies of SIGILL on its first matmul).
llama_cmake_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
  -DGGML_BMI2=ON -DGGML_AVX_VNNI=$(grep -qw avx_vnni /proc/cpuinfo && echo ON || echo OFF) \
  -DGGML_AVX512=$(grep -qw avx512f /proc/cpuinfo && echo ON || echo OFF) \
  -DGGML_AVX512_VBMI=$(grep -qw avx512vbmi /proc/cpuinfo && echo ON || echo OFF) \
  -DGGML_AVX512_VNNI=$(grep -qw avx512_vnni /proc/cpuinfo && echo ON || echo OFF) \
  -DGGML_AVX512_BF16=$(grep -qw avx512_bf16 /proc/cpuinfo && echo ON || echo OFF) \
  -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF \
  -DGGML_BLAS=OFF -DGGML_CUDA=OFF -DGGML_OPENMP=ON -DLLAMA_CURL=OFF -DLLAVA_BUILD=OFF"
if ! "$venv/bin/python" -c "import llama_cpp, numpy" 2>/dev/null; then
  echo "llama_cpp_compare: installing llama-cpp-python==0.3.36 into $venv (builds llama.cpp)" >&2
  python3 -m venv "$venv"
  CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) \
    CMAKE_ARGS="$llama_cmake_args" \
    "$venv/bin/pip" install --quiet --no-cache-dir llama-cpp-python==0.3.36 numpy==2.4.6 >&2
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# About 150 tokens of plain English: a prefill long enough to time, short next to the context.
cat > "$tmp/prompt.txt" <<'EOF'
The history of the printing press begins in the fifteenth century, when Johannes Gutenberg combined movable metal type, oil-based ink and a wooden screw press into a system that could produce books faster and more cheaply than scribes ever could. Within fifty years, presses were running in more than two hundred cities across Europe, and millions of books had been printed. The effects reached far beyond the workshop: literacy spread, scientific results could be checked and repeated by readers far away, and new ideas travelled faster than any authority could suppress them. Write a short summary of why this invention mattered so much.
EOF

# No trailing newline: `invar generate --prompt "$(cat ...)"` drops it, so llama.cpp must not see it.
printf '%s' "$(cat "$tmp/prompt.txt")" >"$tmp/prompt.txt.trim" && mv "$tmp/prompt.txt.trim" "$tmp/prompt.txt"

median() { sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

for ((r = 1; r <= reps; ++r)); do
  /usr/bin/time -v "$invar" generate --model "$model" --prompt "$(cat "$tmp/prompt.txt")" \
    --max-tokens "$gen" --ignore-eos --threads "$threads" --context 4096 \
    >"$tmp/invar.out" 2>"$tmp/invar.err"
  line=$(grep -E '^\[[0-9]+ prompt tokens' "$tmp/invar.err")
  echo "$line" | sed -E 's/^\[([0-9]+) prompt tokens.*/\1/' >>"$tmp/invar_prompt"
  echo "$line" | sed -E 's/.*\(([0-9.]+) prompt tok\/s\).*/\1/' >>"$tmp/invar_prefill"
  echo "$line" | sed -E 's/.*decode ([0-9.]+) tok\/s.*/\1/' >>"$tmp/invar_decode"
  grep "Maximum resident set size" "$tmp/invar.err" | awk '{print $NF}' >>"$tmp/invar_rss"

  "$venv/bin/python" "$root/bench/model/llama_cpp_run.py" "$model" "$tmp/prompt.txt" \
    --threads "$threads" --gen "$gen" --ctx 4096 >"$tmp/llama.json" 2>"$tmp/llama.err" || {
    cat "$tmp/llama.err" >&2
    exit 1
  }
  "$venv/bin/python" - "$tmp" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1] + "/llama.json"))
for k, f in [("prompt_tokens", "llama_prompt"), ("prefill_tok_s", "llama_prefill"),
             ("decode_tok_s", "llama_decode"), ("peak_rss_kb", "llama_rss"),
             ("python_rss_kb", "llama_python_rss")]:
    open(f"{sys.argv[1]}/{f}", "a").write(f"{d[k]}\n")
open(sys.argv[1] + "/llama_text", "w").write(d["text"])
EOF
done

m() { median <"$tmp/$1"; }
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
echo "# invar generate vs llama.cpp (llama-cpp-python 0.3.36), CPU, same GGUF, prompt and threads"
echo "# date: $(date -u +%Y-%m-%d)  commit: $(git -C "$root" rev-parse --short=12 HEAD)$(git -C "$root" diff --quiet HEAD -- src || echo ' (+ uncommitted changes)')"
echo "# machine: $cpu, $(nproc) cores, $(free -g | awk '/^Mem:/{print $2}') GiB; load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# model: $(basename "$model"); threads $threads; prompt $(m invar_prompt) tokens (invar) / $(m llama_prompt) (llama.cpp); $gen generated greedily; median of $reps interleaved runs"
echo "#   invar: \`invar generate --ignore-eos --context 4096\` (prefill = prompt tokens / time to the first token; decode = tokens after the first / their time; RSS = /usr/bin/time -v)"
echo "#   llama.cpp: one llama_eval of the prompt, then one per token (n_ctx 4096, n_batch 512, mmap); RSS = peak of the Python process"
printf "%-24s | %12s | %12s | %8s\n" "" "invar" "llama.cpp" "ratio"
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }
pi=$(m invar_prefill) pl=$(m llama_prefill)
di=$(m invar_decode) dl=$(m llama_decode)
ri=$(m invar_rss) rl=$(m llama_rss) rp=$(m llama_python_rss)
printf "%-24s | %12.1f | %12.1f | %8s\n" "prefill tok/s" "$pi" "$pl" "$(ratio "$pi" "$pl")"
printf "%-24s | %12.1f | %12.1f | %8s\n" "decode tok/s" "$di" "$dl" "$(ratio "$di" "$dl")"
printf "%-24s | %12.1f | %12.1f | %8s\n" "peak RSS MB" "$(awk -v k="$ri" 'BEGIN{print k/1024}')" \
  "$(awk -v k="$rl" 'BEGIN{print k/1024}')" "$(ratio "$ri" "$rl")"
printf "%-24s | %12s | %12.1f |\n" "  of which Python MB" "-" "$(awk -v k="$rp" 'BEGIN{print k/1024}')"
echo "# invar text:     $(tail -c 160 "$tmp/invar.out" | tr '\n' ' ')"
echo "# llama.cpp text: $(tail -c 160 "$tmp/llama_text" | tr '\n' ' ')"
