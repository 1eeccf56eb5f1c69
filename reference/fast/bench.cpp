// Benchmark support (see bench.hpp).
#include "reference/fast/bench.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <thread>

#include "reference/fast/gemm.hpp"

namespace dsr1::fast {

Config bench_config() {
  Config c = preset("tiny-v3");  // V3 rules; every size below is overridden
  c.name = "bench-medium";
  c.vocab_size = 8192;
  c.hidden_size = 1024;
  c.intermediate_size = 2816;
  c.moe_intermediate_size = 256;
  c.num_hidden_layers = 4;
  c.num_attention_heads = 16;
  c.num_key_value_heads = 16;
  c.n_shared_experts = 1;
  c.n_routed_experts = 32;
  c.num_experts_per_tok = 4;
  c.n_group = 4;
  c.topk_group = 2;
  c.routed_scaling_factor = 2.5;
  c.first_k_dense_replace = 1;
  c.q_lora_rank = 384;
  c.kv_lora_rank = 128;
  c.qk_nope_head_dim = 64;
  c.qk_rope_head_dim = 32;
  c.v_head_dim = 64;
  c.rope_scaling.type = "yarn";
  c.rope_scaling.factor = 40.0;
  c.rope_scaling.original_max_position_embeddings = 4096;
  c.rope_scaling.mscale = 1.0;
  c.rope_scaling.mscale_all_dim = 1.0;
  c.max_position_embeddings = 163840;
  c.num_nextn_predict_layers = 0;
  validate(c);
  return c;
}

std::vector<GemmShape> prefill_gemms(const Config& c, std::int64_t T) {
  const std::int64_t d = c.d(), n_h = c.n_h(), d_qk = c.d_qk(), r_kv = c.kv_lora_rank,
                     d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, L = c.num_hidden_layers;
  std::int64_t dense = 0;
  for (std::int64_t l = 0; l < L; ++l) dense += c.is_moe_layer(l) ? 0 : 1;
  const std::int64_t moe = L - dense;
  std::vector<GemmShape> g;
  if (c.has_q_lora()) {
    g.push_back({"attention", c.q_lora_rank + r_kv + d_rope, d, T, L});
    g.push_back({"attention", n_h * d_qk, c.q_lora_rank, T, L});
  } else {
    g.push_back({"attention", n_h * d_qk + r_kv + d_rope, d, T, L});
  }
  g.push_back({"attention", d, n_h * d_v, T, L});
  if (dense > 0) {
    g.push_back({"dense_ffn", 2 * c.intermediate_size, d, T, dense});
    g.push_back({"dense_ffn", d, c.intermediate_size, T, dense});
  }
  if (moe > 0) {
    const std::int64_t I_e = c.moe_intermediate_size, N_r = c.n_routed_experts;
    const std::int64_t per_expert = std::max<std::int64_t>(1, T * c.num_experts_per_tok / N_r);
    g.push_back({"experts", 2 * I_e, d, per_expert, moe * N_r});
    g.push_back({"experts", d, I_e, per_expert, moe * N_r});
    if (c.n_shared_experts > 0) {
      g.push_back({"experts", 2 * c.n_shared_experts * I_e, d, T, moe});
      g.push_back({"experts", d, c.n_shared_experts * I_e, T, moe});
    }
    g.push_back({"router", N_r, d, T, moe});
  }
  g.push_back({"head", c.vocab_size, d, T, 1});
  return g;
}

std::map<std::string, double> forward_flops_by_stage(const Config& c, std::int64_t T, std::int64_t cached) {
  std::map<std::string, double> flops;
  for (const GemmShape& s : prefill_gemms(c, T)) {
    const std::string stage = std::string(s.stage) == "attention" ? "attention_projections" : s.stage;
    flops[stage] += 2.0 * s.M * s.K * s.N * s.count;
  }
  const double n_h = c.n_h(), r_kv = c.kv_lora_rank, d_rope = c.qk_rope_head_dim,
               L = c.num_hidden_layers;
  // Absorption per head and token: q_tilde (r_kv x d_nope) and o (d_v x r_kv).
  flops["attention_projections"] += L * T * n_h * 2.0 * r_kv * (c.qk_nope_head_dim + c.v_head_dim);
  // Attention: query t sees cached + t + 1 keys; per key and head 2 (r_kv + d_rope) + 2 r_kv.
  const double keys = static_cast<double>(T) * cached + static_cast<double>(T) * (T + 1) / 2.0;
  flops["attention_core"] += L * n_h * keys * (2.0 * (r_kv + d_rope) + 2.0 * r_kv);
  return flops;
}

double forward_flops(const Config& c, std::int64_t T, std::int64_t cached) {
  double flops = 0;
  for (const auto& [stage, f] : forward_flops_by_stage(c, T, cached)) flops += f;
  return flops;
}

namespace {
DSR1_FAST_CLONES
float sum_floats(const float* x, std::int64_t n) {
  float acc[32] = {};  // 32 independent lanes so the loop vectorises without reassociation
  std::int64_t i = 0;
  for (; i + 32 <= n; i += 32)
    for (int j = 0; j < 32; ++j) acc[j] += x[i + j];
  float s = 0;
  for (int j = 0; j < 32; ++j) s += acc[j];
  for (; i < n; ++i) s += x[i];
  return s;
}
}  // namespace

double stream_read_bandwidth(int threads, std::int64_t bytes, int reps) {
  const std::int64_t n = bytes / 4;
  std::unique_ptr<float[]> buf(new float[static_cast<std::size_t>(n)]);
  for (std::int64_t i = 0; i < n; ++i) buf[i] = static_cast<float>(i & 7);
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep <= reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    std::vector<float> partial(threads);
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        const std::int64_t lo = n * t / threads, hi = n * (t + 1) / threads;
        partial[t] = sum_floats(buf.get() + lo, hi - lo);
      });
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float p : partial) sink = sink + p;
    if (rep > 0) best = std::max(best, static_cast<double>(bytes) / s);
  }
  return best;
}

namespace {
typedef float v16f __attribute__((vector_size(64), aligned(64)));

// iters x 12 x 16 multiply-adds on 12 independent accumulators (an FMA has a latency of about 4
// cycles and two can start per cycle, so 8 or more independent chains keep the units busy).
// a * m + c with m just below 1 and c small keeps every value near 1: no overflow, no subnormals.
DSR1_FAST_CLONES
float fma_loop(std::int64_t iters, float seed) {
  v16f acc[12];
  for (int j = 0; j < 12; ++j) acc[j] = v16f{} + (seed + static_cast<float>(j));
  const v16f m = v16f{} + 0.9999999f, c = v16f{} + 1e-7f;
  for (std::int64_t i = 0; i < iters; ++i)
    for (int j = 0; j < 12; ++j) acc[j] = acc[j] * m + c;  // one fused multiply-add (-ffp-contract=fast)
  v16f sum{};
  for (int j = 0; j < 12; ++j) sum += acc[j];
  float s = 0;
  for (int i = 0; i < 16; ++i) s += sum[i];
  return s;
}
}  // namespace

double fma_peak_flops(int threads, int reps) {
  const std::int64_t iters = std::int64_t{1} << 23;  // ~0.2 s per thread at ~100 GFLOP/s
  double best = 0;
  volatile float sink = 0;
  for (int rep = 0; rep < reps; ++rep) {
    std::vector<float> out(threads);
    const auto t0 = std::chrono::steady_clock::now();
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) pool.emplace_back([&, t] { out[t] = fma_loop(iters, static_cast<float>(t)); });
    for (auto& th : pool) th.join();
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    for (float o : out) sink = sink + o;
    best = std::max(best, static_cast<double>(threads) * iters * 12 * 16 * 2 / s);
  }
  return best;
}

std::int64_t peak_rss_bytes() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return static_cast<std::int64_t>(u.ru_maxrss) * 1024;
}

}  // namespace dsr1::fast
