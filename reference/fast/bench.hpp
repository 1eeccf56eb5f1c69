// What `dsr1 bench` measures with: the medium benchmark config, the model's FLOP count, and the
// machine's own limits: a streaming read benchmark for its memory bandwidth and a
// register-resident multiply-add loop for its float32 arithmetic peak.
// Leaves out: the timing loops and the report (reference/cli/cmd_bench.cpp).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "reference/deepseek/config.hpp"

namespace dsr1::fast {

// The medium config of the benchmark: hidden 1024, 16 heads, q rank 384, kv rank 128, nope 64,
// rope 32, v 64, 4 layers (1 dense of intermediate 2816), 32 routed experts of width 256, top-4,
// 1 shared, vocab 8192, V3 routing (sigmoid, noaux_tc, 4 groups, top-2 groups), YaRN factor 40
// over 4096 positions (163840 positions, so the 128K decode is in range).
Config bench_config();

// One matrix product of a forward pass: Y [M, N] = W [M, K] X [K, N], `count` times.
struct GemmShape {
  const char* stage;  // "attention", "dense_ffn", "experts", "router", "head"
  std::int64_t M, K, N, count;
};
// The products of a prefill of T tokens (experts with the average T*K/N_r tokens each).
std::vector<GemmShape> prefill_gemms(const Config& c, std::int64_t T);

// Model FLOPs (a multiply-add = 2) of a forward over T new tokens after `cached` tokens:
// every product above plus attention (absorbed: scores over r_kv + d_rope and z over r_kv per
// visible key, per head) and the per-head absorptions (W_UK^T, W_UV).
double forward_flops(const Config& c, std::int64_t T, std::int64_t cached);
// The same FLOPs split by the stages of stage_times.hpp: attention_projections (the attention
// products and absorptions), attention_core, dense_ffn, router, experts (routed and shared), head.
std::map<std::string, double> forward_flops_by_stage(const Config& c, std::int64_t T, std::int64_t cached);

// Read bandwidth in bytes/s: `threads` threads sum disjoint halves of a `bytes`-long buffer
// (best of `reps` passes, after one warm-up pass).
double stream_read_bandwidth(int threads, std::int64_t bytes, int reps);

// The machine's float32 multiply-add peak in FLOP/s (a multiply-add = 2): `threads` threads at
// once each run a loop of 12 independent vector fused multiply-adds on registers (16 floats each:
// one AVX-512 register, two AVX2 registers), long enough that memory and loop overhead do not
// count; best of `reps` runs. What a matrix product could reach if it never waited for memory.
double fma_peak_flops(int threads, int reps);

// Peak resident set size of this process (getrusage), in bytes.
std::int64_t peak_rss_bytes();

}  // namespace dsr1::fast
