// dsr1 bench: speed of the fast path (reference/fast/) on the medium config, against the
// machine's own limits measured in the same run (its float32 multiply-add peak, its streaming
// read bandwidth, OpenBLAS sgemm) and against the reference. A benchmark, not a test: it reports, it asserts nothing. docs/fast-path.md.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <thread>

#include "reference/cli/command.hpp"
#include "reference/cli/private_memory.hpp"
#include "reference/fast/source_model.hpp"
#include "reference/fast/stage_times.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/fast/bench.hpp"
#include "reference/fast/model.hpp"
#include "reference/fast/pack.hpp"
#include "reference/fast/weights.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/model.hpp"

// OpenBLAS extensions, declared weak so that the program still links against another BLAS.
extern "C" {
char* openblas_get_corename(void) __attribute__((weak));
void openblas_set_num_threads(int) __attribute__((weak));
}

namespace dsr1::cli {
namespace {

using Clock = std::chrono::steady_clock;

struct BenchArgs {
  bool json = false;
  bool quick = false;
  int threads = 0;  // 0: all hardware threads
  std::uint64_t seed = 1;
  std::string weights = "f32";  // storage of the packed matrices: f32 or bf16
  fast::Options blocks;  // block sizes (the thread count is set separately)
  std::string checkpoint;        // --checkpoint DIR: the whole-run figures on that checkpoint
  bool checkpoint_only = false;  // --checkpoint-only: nothing else
};

// The whole-run figures a user compares, on a checkpoint used where it lies (the fast path's
// SourceModel, mapped): from a warm page cache (every file read once first), the time to the
// first token of an 8-token prompt (opening the model, the prefill, the argmax), then 8 tokens
// decoded greedily one at a time; three runs, the median and the spread; and the private
// (anonymous) memory the process held, sampled throughout, which leaves out the mapped files'
// pages (they are the page cache's). Run before anything else, so the private memory is the
// checkpoint run's own.
nlohmann::json checkpoint_figures(const std::string& dir, int threads,
                                  const std::function<void(const std::string&)>& say) {
  PrivatePeakSampler sampler;
  const double private_before = private_bytes_now();
  const Config c = load_config_json(dir + "/config.json");
  CheckpointOptions co;
  co.weight_block_size = c.weight_block_size;
  const Checkpoint ck(dir, co);
  // Warm the page cache: every shard read once, in 8 MB pieces.
  double file_bytes = 0;
  {
    std::vector<char> buf(std::size_t{8} << 20);
    std::set<std::string> files;
    for (const std::string& n : ck.names()) files.insert(ck.file_of(n));
    for (const std::string& f : files) {
      std::ifstream in(f, std::ios::binary);
      while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0)
        file_bytes += static_cast<double>(in.gcount());
    }
  }
  fast::Options opt;
  opt.threads = threads;
  const std::vector<std::int64_t> prompt = {5, 17, 3, 99, 42, 8, 120, 64};
  const int decode_steps = 8;
  std::vector<double> ttft, tps;
  bool mapped = false;
  for (int run = 0; run < 3; ++run) {
    const auto t0 = Clock::now();
    const fast::SourceModel model(ck, c, fast::stored_weight_type(c));
    mapped = model.mapped();
    fast::ModelCache cache = model.make_cache(static_cast<std::int64_t>(prompt.size()) + decode_steps);
    const arma::fmat logits = model.prefill(prompt, cache, opt);
    std::int64_t next = static_cast<std::int64_t>(logits.col(logits.n_cols - 1).index_max());
    const auto t1 = Clock::now();
    for (int i = 0; i < decode_steps; ++i)
      next = static_cast<std::int64_t>(model.decode(next, cache, opt).index_max());
    const auto t2 = Clock::now();
    ttft.push_back(std::chrono::duration<double>(t1 - t0).count());
    tps.push_back(decode_steps / std::chrono::duration<double>(t2 - t1).count());
  }
  sampler.stop();
  auto median = [](std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  nlohmann::json j = {{"dir", dir},
                      {"model", c.name},
                      {"file_bytes", file_bytes},
                      {"weights", fast::to_string(fast::stored_weight_type(c))},
                      {"mapped", mapped},
                      {"prompt_tokens", prompt.size()},
                      {"decode_tokens", decode_steps},
                      {"ttft_seconds", median(ttft)},
                      {"ttft_seconds_runs", ttft},
                      {"decode_tokens_per_s", median(tps)},
                      {"decode_tokens_per_s_runs", tps},
                      {"private_peak_bytes", sampler.peak()},
                      {"private_bytes_before", private_before},
                      {"peak_rss_bytes", fast::peak_rss_bytes()}};
  say(fmt::format("checkpoint {} ({}, {:.2f} GB of files, {} weights, mapped: {}), warm page cache, "
                  "{} threads: time to first token of an {}-token prompt {:.2f} s (runs {:.2f}-{:.2f}), "
                  "decode {:.2f} tokens/s (runs {:.2f}-{:.2f}), private memory peak {:.0f} MB "
                  "(resident set with the mapped pages {:.2f} GB)",
                  dir, c.name, file_bytes / 1e9, fast::to_string(fast::stored_weight_type(c)), mapped,
                  threads, prompt.size(), median(ttft), *std::min_element(ttft.begin(), ttft.end()),
                  *std::max_element(ttft.begin(), ttft.end()), median(tps),
                  *std::min_element(tps.begin(), tps.end()), *std::max_element(tps.begin(), tps.end()),
                  sampler.peak() / 1e6, fast::peak_rss_bytes() / 1e9));
  return j;
}

// Best wall time of `reps` runs of f (after `warmup` untimed runs).
double best_seconds(int reps, int warmup, const std::function<void()>& f) {
  for (int i = 0; i < warmup; ++i) f();
  double best = 1e300;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return best;
}

// The stage times (stage_times.hpp) of the fastest of `reps` runs of f(options with times), and
// that run's wall time.
std::pair<fast::StageTimes, double> timed_by_stage(int reps, const std::function<void(const fast::Options&)>& f,
                                                   const fast::Options& opt) {
  std::pair<fast::StageTimes, double> best{{}, 1e300};
  for (int i = 0; i < reps; ++i) {
    fast::StageTimes times;
    fast::Options timed = opt;
    timed.times = &times;
    const auto t0 = Clock::now();
    f(timed);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (s < best.second) best = {times, s};
  }
  return best;
}

// Per stage: seconds, share of the pass, and for the stages that compute (FLOPs known) their
// rate and its fraction of the FMA peak; "other" is what no stage covers (embedding, residual
// additions, dispatch between stages).
nlohmann::json stage_report(const fast::StageTimes& times, const std::map<std::string, double>& flops,
                            double pass, double fma_peak) {
  nlohmann::json j;
  double covered = 0;
  for (const auto& [stage, s] : times.seconds) {
    covered += s;
    j[stage] = {{"seconds", s}, {"fraction_of_pass", s / pass}};
    const auto f = flops.find(stage);
    if (f != flops.end() && s > 0) {
      j[stage]["gflops"] = f->second / s / 1e9;
      j[stage]["fraction_of_fma_peak"] = f->second / s / fma_peak;
    }
  }
  j["other"] = {{"seconds", pass - covered}, {"fraction_of_pass", (pass - covered) / pass}};
  return j;
}

void print_stages(const nlohmann::json& stages, const std::function<void(const std::string&)>& say) {
  for (const auto& [stage, v] : stages.items())
    say(fmt::format("  {:<22} {:>9.2f} ms {:>6.1f}%{}", stage, v["seconds"].get<double>() * 1e3,
                    100 * v["fraction_of_pass"].get<double>(),
                    v.contains("fraction_of_fma_peak")
                        ? fmt::format("  {:>7.1f} GFLOP/s = {:.0f}% of the FMA peak", v["gflops"].get<double>(),
                                      100 * v["fraction_of_fma_peak"].get<double>())
                        : ""));
}

std::string corename() { return openblas_get_corename ? openblas_get_corename() : "unknown (not OpenBLAS)"; }

// OpenBLAS 0.3.21 does not recognise every new CPU model and then falls back to its generic
// SSE3 "Prescott" kernels, which would make it a straw man. If that happened on a CPU with
// AVX-512 or AVX2, re-run this program with OPENBLAS_CORETYPE naming the matching kernel set
// (it is read when the library loads, so it must be set before the process starts).
void reexec_with_proper_openblas_kernels() {
  if (std::getenv("OPENBLAS_CORETYPE") || std::getenv("DSR1_BENCH_REEXEC")) return;
  if (corename() != "Prescott") return;
  __builtin_cpu_init();
  const char* core = __builtin_cpu_supports("avx512f") ? "SkylakeX"
                     : __builtin_cpu_supports("avx2")  ? "Haswell"
                                                       : nullptr;
  if (!core) return;
  std::ifstream in("/proc/self/cmdline", std::ios::binary);
  const std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::vector<std::string> args;
  for (std::size_t i = 0; i < all.size();) {
    const std::size_t end = all.find('\0', i);
    args.push_back(all.substr(i, end - i));
    i = end == std::string::npos ? all.size() : end + 1;
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  setenv("OPENBLAS_CORETYPE", core, 1);
  setenv("DSR1_BENCH_REEXEC", "1", 1);
  execv("/proc/self/exe", argv.data());  // returns only on failure: then carry on as we are
}

arma::fmat random_fmat(std::int64_t rows, std::int64_t cols, unsigned seed) {
  arma::arma_rng::set_seed(seed);
  return arma::randu<arma::fmat>(rows, cols) * 2.0f - 1.0f;
}

// Fills every layer of the cache with n synthetic tokens: latents of unit RMS, as
// RMSNorm_kv would produce, and keys of similar size (decode cost does not depend on values).
void fill_cache(fast::ModelCache& cache, std::int64_t n) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> u(-1.7f, 1.7f);
  for (auto& layer : cache.layers) {
    float* rows = layer.append_rows(n);
    const std::int64_t total = n * layer.row_floats();
    for (std::int64_t i = 0; i < total; ++i) rows[i] = u(rng);
  }
}

int bench(const BenchArgs& a) {
  reexec_with_proper_openblas_kernels();
  const int threads = a.threads > 0 ? a.threads : std::max(1u, std::thread::hardware_concurrency());
  if (openblas_set_num_threads) openblas_set_num_threads(threads);
  fast::Options opt = a.blocks;
  opt.threads = threads;
  const Config c = fast::bench_config();
  const std::int64_t L = c.num_hidden_layers, D = c.kv_lora_rank + c.qk_rope_head_dim;
  nlohmann::json out;
  out["config"] = c.name;
  out["threads"] = threads;
  out["quick"] = a.quick;
  const fast::WeightType wtype = fast::weight_type_from_string(a.weights);
  out["weights"] = fast::to_string(wtype);
  out["openblas_core"] = corename();
  out["blocks"] = {{"mc", opt.mc}, {"nc", opt.nc}, {"kc", opt.kc}, {"attn_qb", opt.attn_qb},
                   {"attn_heads", opt.attn_heads}, {"attn_kb", opt.attn_kb}, {"decode_kb", opt.decode_kb}};
  auto say = [&](const std::string& s) {
    if (!a.json) fmt::print("{}\n", s);
  };
  if (!a.checkpoint.empty()) {
    const nlohmann::json ck = checkpoint_figures(a.checkpoint, threads, say);
    out["checkpoint"] = ck;
    out["checkpoint_ttft_seconds"] = ck["ttft_seconds"];
    out["checkpoint_decode_tokens_per_s"] = ck["decode_tokens_per_s"];
    out["checkpoint_private_peak_bytes"] = ck["private_peak_bytes"];
    if (a.checkpoint_only) {
      // Only the checkpoint's figures: the medium config's fields (config, weights, blocks)
      // would describe a run that did not happen (the checkpoint's own are in "checkpoint").
      for (const char* key : {"config", "quick", "weights", "openblas_core", "blocks"}) out.erase(key);
      if (a.json) fmt::print("{}\n", out.dump(2));
      return 0;
    }
  }
  say(fmt::format("dsr1 bench: config {} (d={}, n_h={}, r_q={}, r_kv={}, L={}, N_r={}, K={}, V={}), "
                  "{} threads, {} weights, OpenBLAS kernels: {}",
                  c.name, c.d(), c.n_h(), c.q_lora_rank, c.kv_lora_rank, L, c.n_routed_experts,
                  c.num_experts_per_tok, c.vocab_size, threads, fast::to_string(wtype), corename()));

  // The machine's limits, measured first: the float32 multiply-add peak with the threads used
  // (and with one, for reference) and the streaming read bandwidth (1 GiB, larger than any cache).
  const double fma_peak = fast::fma_peak_flops(threads, 3), fma_peak_1 = fast::fma_peak_flops(1, 3);
  const double bw = fast::stream_read_bandwidth(threads, std::int64_t{1} << 30, a.quick ? 2 : 4);
  out["fma_peak_gflops"] = fma_peak / 1e9;
  out["fma_peak_gflops_1_thread"] = fma_peak_1 / 1e9;
  out["read_bandwidth_gbs"] = bw / 1e9;
  out["read_bandwidth_gbps"] = bw / 1e9;  // the earlier name of the same figure
  say(fmt::format("machine: float32 multiply-add peak {:.1f} GFLOP/s with {} threads ({:.1f} with 1), "
                  "streaming read {:.1f} GB/s", fma_peak / 1e9, threads, fma_peak_1 / 1e9, bw / 1e9));

  // Weights: the generator's (double, float32-exact values), converted once. With --weights
  // bf16 they are first rounded to bfloat16 as a BF16 checkpoint holds them, so the reference
  // below computes with the same values and the logit difference is still float32 arithmetic.
  auto t0 = Clock::now();
  auto W = std::make_unique<ModelWeights>(generate_weights(
      c, a.seed, wtype == fast::WeightType::BF16 ? safetensors::DType::BF16 : safetensors::DType::F32));
  const fast::ModelWeightsF F = fast::convert_weights(*W, c, wtype);
  say(fmt::format("weights generated and packed in {:.1f} s", std::chrono::duration<double>(Clock::now() - t0).count()));
  std::mt19937_64 rng(a.seed);
  auto tokens_of = [&](std::int64_t T) {
    std::vector<std::int64_t> t(static_cast<std::size_t>(T));
    for (auto& x : t) x = static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(c.vocab_size));
    return t;
  };

  // 1. Speedup over the reference on the same input (same tokens, same count).
  {
    const std::int64_t T = a.quick ? 16 : 64;
    const auto tokens = tokens_of(T);
    arma::mat want;
    const double t_ref = best_seconds(1, 0, [&] {
      want = ref::forward(*W, c, tokens, 0, nullptr, ref::ForwardOptions{}, nullptr);
    });
    arma::fmat got;
    const double t_fast = best_seconds(3, 1, [&] { got = fast::forward(F, c, tokens, 0, nullptr, opt, nullptr); });
    const double max_rel = arma::abs(arma::conv_to<arma::mat>::from(got) - want).max() / arma::abs(want).max();
    out["speedup_vs_reference"] = t_ref / t_fast;
    out["reference"] = {{"tokens", T}, {"reference_s", t_ref}, {"fast_s", t_fast},
                        {"max_abs_logit_diff_over_max_logit", max_rel}};
    say(fmt::format("reference vs fast, prefill of {} tokens: {:.3f} s vs {:.4f} s: speedup {:.0f}x "
                    "(max |logit diff| / max |logit| = {:.1e})", T, t_ref, t_fast, t_ref / t_fast, max_rel));
  }
  W.reset();  // the double weights are no longer needed

  // 2. Thread invariance in this run: 1 vs 2 threads, prefill and one decode step.
  {
    const auto tokens = tokens_of(48);
    fast::Options o1 = opt, o2 = opt;
    o1.threads = 1;
    o2.threads = 2;
    fast::ModelCache c1 = fast::make_cache(c, 64), c2 = fast::make_cache(c, 64);
    const arma::fmat p1 = fast::forward(F, c, tokens, 0, &c1, o1, nullptr);
    const arma::fmat p2 = fast::forward(F, c, tokens, 0, &c2, o2, nullptr);
    const arma::fvec d1 = fast::decode(F, c, 7, c1, o1, nullptr);
    const arma::fvec d2 = fast::decode(F, c, 7, c2, o2, nullptr);
    const bool same = std::memcmp(p1.memptr(), p2.memptr(), p1.n_elem * 4) == 0 &&
                      std::memcmp(d1.memptr(), d2.memptr(), d1.n_elem * 4) == 0;
    out["thread_invariant"] = same;
    say(fmt::format("1 thread vs 2 threads, prefill of 48 tokens and one decode step: {}",
                    same ? "bit-identical" : "DIFFERENT"));
  }

  // 3. GEMM stages: the fast kernel vs OpenBLAS sgemm (through Armadillo) on the prefill's shapes.
  const std::int64_t T_main = a.quick ? 256 : 1024;
  double blas_gemm_seconds = 0, fast_gemm_seconds = 0, gemm_flops = 0;
  {
    std::map<std::string, std::array<double, 3>> stage;  // flops, fast s, blas s
    const int reps = a.quick ? 2 : 3;
    for (const fast::GemmShape& s : fast::prefill_gemms(c, T_main)) {
      const arma::fmat Wm = random_fmat(s.M, s.K, 1), X = random_fmat(s.K, s.N, 2);
      const fast::PackedMatrix P = fast::pack_matrix(Wm, wtype);
      arma::fmat Y(s.M, s.N), Yb(s.M, s.N);
      const double tf = best_seconds(reps, 1, [&] {
        fast::gemm(P, X.memptr(), s.K, s.N, Y.memptr(), s.M, false, opt);
      });
      const double tb = best_seconds(reps, 1, [&] { Yb = Wm * X; });
      const double f = 2.0 * s.M * s.K * s.N;
      // The router's product is counted with the experts (the MoE layer's products).
      auto& st = stage[std::string(s.stage) == "router" ? "experts" : s.stage];
      st[0] += f * s.count;
      st[1] += tf * s.count;
      st[2] += tb * s.count;
    }
    nlohmann::json js;
    say(fmt::format("\nGEMM stages of a {}-token prefill (fast kernel vs OpenBLAS sgemm, same shapes, {} threads):", T_main, threads));
    say(fmt::format("  {:<10} {:>10} {:>12} {:>12} {:>12} {:>12}", "stage", "GFLOP", "fast GF/s", "BLAS GF/s",
                    "vs BLAS", "vs FMA peak"));
    for (const auto& [name, st] : stage) {
      gemm_flops += st[0];
      fast_gemm_seconds += st[1];
      blas_gemm_seconds += st[2];
      js[name] = {{"gflop", st[0] / 1e9}, {"fast_gflops", st[0] / st[1] / 1e9},
                  {"openblas_gflops", st[0] / st[2] / 1e9}, {"fraction_of_openblas", st[2] / st[1]},
                  {"fraction_of_fma_peak", st[0] / st[1] / fma_peak}};
      say(fmt::format("  {:<10} {:>10.2f} {:>12.1f} {:>12.1f} {:>11.0f}% {:>11.0f}%", name, st[0] / 1e9,
                      st[0] / st[1] / 1e9, st[0] / st[2] / 1e9, 100 * st[2] / st[1],
                      100 * st[0] / st[1] / fma_peak));
    }
    out["gemm_stages"] = js;
    // Per stage, the summary key asked for beside the whole prefill's fraction of the peak.
    for (const auto& [name, st] : stage) out["prefill_fraction_of_fma_peak_per_stage"][name] = st[0] / st[1] / fma_peak;
    out["gemm_fraction_of_openblas"] = blas_gemm_seconds / fast_gemm_seconds;
    out["gemm_fraction_of_fma_peak"] = gemm_flops / fast_gemm_seconds / fma_peak;
    out["openblas_gflops_prefill_shapes"] = gemm_flops / blas_gemm_seconds / 1e9;
    say(fmt::format("  {:<10} {:>10.2f} {:>12.1f} {:>12.1f} {:>11.0f}% {:>11.0f}%", "all", gemm_flops / 1e9,
                    gemm_flops / fast_gemm_seconds / 1e9, gemm_flops / blas_gemm_seconds / 1e9,
                    100 * blas_gemm_seconds / fast_gemm_seconds, 100 * gemm_flops / fast_gemm_seconds / fma_peak));
  }
  const double blas_gflops = gemm_flops / blas_gemm_seconds / 1e9;

  // 4. Prefill of the whole model.
  {
    nlohmann::json jp = nlohmann::json::array();
    say(fmt::format("\nprefill (model FLOPs include attention; OpenBLAS rate of the prefill's GEMM shapes at T={}: {:.1f} GF/s; "
                    "FMA peak {:.1f} GF/s):", T_main, blas_gflops, fma_peak / 1e9));
    say(fmt::format("  {:>7} {:>10} {:>10} {:>10} {:>14} {:>14}", "tokens", "seconds", "tokens/s", "GFLOP/s",
                    "vs OpenBLAS", "vs FMA peak"));
    std::vector<std::int64_t> lengths = a.quick ? std::vector<std::int64_t>{256} : std::vector<std::int64_t>{256, 1024};
    for (std::int64_t T : lengths) {
      const auto tokens = tokens_of(T);
      // Best of 5: a prefill is under a second, and on a shared machine a single run often
      // loses a core for part of it (three runs of best-of-2 gave 55-75% of the FMA peak).
      const double s = best_seconds(a.quick ? 1 : 5, 1, [&] {
        fast::ModelCache cache = fast::make_cache(c, T);
        fast::forward(F, c, tokens, 0, &cache, opt, nullptr);
      });
      const double gflops = fast::forward_flops(c, T, 0) / s / 1e9;
      jp.push_back({{"tokens", T}, {"seconds", s}, {"tokens_per_s", T / s}, {"gflops", gflops},
                    {"fraction_of_openblas", gflops / blas_gflops},
                    {"fraction_of_fma_peak", gflops * 1e9 / fma_peak}});
      if (T == T_main) {
        out["prefill_fraction_of_openblas"] = gflops / blas_gflops;
        out["prefill_fraction_of_fma_peak"] = gflops * 1e9 / fma_peak;
      }
      say(fmt::format("  {:>7} {:>10.3f} {:>10.0f} {:>10.1f} {:>13.0f}% {:>13.0f}%", T, s, T / s, gflops,
                      100 * gflops / blas_gflops, 100 * gflops * 1e9 / fma_peak));
    }
    out["prefill"] = jp;
    // Where a prefill's time goes: the fastest of three more passes, timed by stage.
    const auto tokens = tokens_of(T_main);
    const auto [times, pass] = timed_by_stage(a.quick ? 1 : 3, [&](const fast::Options& timed) {
      fast::ModelCache cache = fast::make_cache(c, T_main);
      fast::forward(F, c, tokens, 0, &cache, timed, nullptr);
    }, opt);
    out["prefill_stages"] = stage_report(times, fast::forward_flops_by_stage(c, T_main, 0), pass, fma_peak);
    say(fmt::format("\nwhere the time of a {}-token prefill goes (one pass of {:.3f} s, timed by stage):", T_main, pass));
    print_stages(out["prefill_stages"], say);
  }
  out["peak_rss_bytes_after_prefill"] = fast::peak_rss_bytes();

  // 5. Decode: with the run's weights at every context length, then with FP8 weights packed
  //    from the generator as `init-model --dtype fp8` would store them. Bytes per token are what
  //    one token actually reads: the weights it touches in their stored type (with FP8 scales)
  //    plus the whole latent cache.
  auto decode_table = [&](const fast::ModelWeightsF& Wd, const std::vector<std::int64_t>& contexts,
                          nlohmann::json& jd, std::map<std::int64_t, double>& seconds) {
    const std::int64_t weight_bytes = fast::decode_weight_bytes(Wd, c);
    say(fmt::format("\ndecode of one token, {} weights (streaming read {:.1f} GB/s; weights read per token {:.1f} MB):",
                    fast::to_string(Wd.type), bw / 1e9, weight_bytes / 1e6));
    say(fmt::format("  {:>8} {:>10} {:>10} {:>10} {:>10} {:>14}", "cached", "ms/token", "tokens/s",
                    "cache MB", "GB/s", "vs bandwidth"));
    for (std::int64_t ctx : contexts) {
      const int steps = ctx >= 131072 ? 5 : 20;  // best of these: decode steps are short and the machine may be shared
      fast::ModelCache cache = fast::make_cache(c, ctx + steps + 1);
      fill_cache(cache, ctx);
      fast::decode(Wd, c, 3, cache, opt, nullptr);  // warm-up (the cache now holds ctx + 1)
      double best = 1e300;
      for (int i = 0; i < steps; ++i) {
        const auto s0 = Clock::now();
        fast::decode(Wd, c, 5 + i, cache, opt, nullptr);
        best = std::min(best, std::chrono::duration<double>(Clock::now() - s0).count());
      }
      seconds[ctx] = best;
      // The same step timed by stage (fastest of three): the weights' products against the
      // attention over the cache.
      int extra = 0;
      const auto [times, step] = timed_by_stage(3, [&](const fast::Options& timed) {
        fast::decode(Wd, c, 7 + extra++, cache, timed, nullptr);
      }, opt);
      nlohmann::json stages = stage_report(times, fast::forward_flops_by_stage(c, 1, ctx), step, fma_peak);
      // The step in two phases: the attention over the cache (bound by arithmetic), and all
      // the rest, which reads the weights (bound by memory).
      const double core = times.seconds.count("attention_core") ? times.seconds.at("attention_core") : 0.0;
      stages["weights_phase"]["seconds"] = step - core;
      stages["weights_phase"]["fraction_of_bandwidth"] = static_cast<double>(weight_bytes) / (step - core) / bw;
      const double cache_read = static_cast<double>(L) * (ctx + 1) * D * 4;
      const double bytes = static_cast<double>(weight_bytes) + cache_read;
      const double rate = bytes / best;
      jd.push_back({{"cached_tokens", ctx}, {"seconds_per_token", best}, {"tokens_per_s", 1 / best},
                    {"bytes_read_per_token", bytes}, {"weight_bytes_per_token", weight_bytes},
                    {"gbps", rate / 1e9}, {"fraction_of_bandwidth", rate / bw},
                    {"cache_bytes_allocated", cache.bytes_allocated()},
                    {"cache_bytes_formula", fast::cache_bytes(c, cache.length())},
                    {"peak_rss_bytes", fast::peak_rss_bytes()}, {"stages", stages}});
      if (&Wd == &F) {
        out[fmt::format("decode_fraction_of_bandwidth_{}", ctx)] = rate / bw;
        if (ctx == (a.quick ? 8192 : 32768)) out["decode_fraction_of_bandwidth"] = rate / bw;
        if (ctx == 131072)
          out["long_context"] = {{"position", ctx + 1 + steps - 1}, {"seconds_per_token", best},
                                 {"cache_bytes", cache.bytes_allocated()},
                                 {"cache_bytes_per_token", L * D * 4},
                                 {"peak_rss_bytes", fast::peak_rss_bytes()},
                                 {"under_4gb", fast::peak_rss_bytes() < 4LL * 1000 * 1000 * 1000}};
      } else {
        out[fmt::format("decode_fp8_fraction_of_bandwidth_{}", ctx)] = rate / bw;
      }
      say(fmt::format("  {:>8} {:>10.2f} {:>10.1f} {:>10.1f} {:>10.1f} {:>13.0f}%", ctx, best * 1e3,
                      1 / best, cache.bytes_allocated() / 1e6, rate / 1e9, 100 * rate / bw));
      say(fmt::format("  {:>8} a step timed by stage ({:.2f} ms): the weights {:.2f} ms ({:.0f}% of the bandwidth), "
                      "the attention over the cache {:.2f} ms ({:.0f}% of the FMA peak)", "", step * 1e3,
                      (step - core) * 1e3, 100 * stages["weights_phase"]["fraction_of_bandwidth"].get<double>(),
                      core * 1e3,
                      stages.contains("attention_core")
                          ? 100 * stages["attention_core"]["fraction_of_fma_peak"].get<double>() : 0.0));
    }
  };
  const std::vector<std::int64_t> contexts = a.quick ? std::vector<std::int64_t>{512, 8192}
                                                     : std::vector<std::int64_t>{512, 8192, 32768, 131072};
  {
    nlohmann::json jd = nlohmann::json::array();
    std::map<std::int64_t, double> s_main, s_fp8;
    decode_table(F, contexts, jd, s_main);
    out["decode"] = jd;
    fast::PackOptions po;
    po.threads = threads;
    const fast::ModelWeightsF F8 = fast::pack_weights(generator_source(c, a.seed), c, fast::WeightType::FP8, po);
    nlohmann::json jd8 = nlohmann::json::array();
    decode_table(F8, contexts, jd8, s_fp8);
    out["decode_fp8"] = jd8;
    out[fmt::format("decode_fp8_speedup_vs_{}", fast::to_string(wtype))] = s_main.at(512) / s_fp8.at(512);
    say(fmt::format("FP8 decode after 512 cached tokens: {:.2f}x faster than {} ({:.2f} vs {:.2f} ms)",
                    s_main.at(512) / s_fp8.at(512), fast::to_string(wtype), s_fp8.at(512) * 1e3,
                    s_main.at(512) * 1e3));
  }
  if (out.contains("long_context"))
    say(fmt::format("long context: decode at position {} with a {:.0f} MB latent cache ({} bytes per "
                    "token: linear in the context); peak RSS of the whole run {:.2f} GB (< 4 GB: {})",
                    out["long_context"]["position"].get<std::int64_t>(),
                    out["long_context"]["cache_bytes"].get<double>() / 1e6, L * D * 4,
                    fast::peak_rss_bytes() / 1e9, fast::peak_rss_bytes() < 4LL * 1000 * 1000 * 1000));
  out["peak_rss_bytes"] = fast::peak_rss_bytes();
  if (a.json) fmt::print("{}\n", out.dump(2));
  else
    fmt::print("\nsummary: prefill {:.0f}% of the FMA peak ({:.0f}% of OpenBLAS), GEMM stages {:.0f}% of the "
               "FMA peak, decode {:.0f}% of read bandwidth after 512 cached tokens and {:.0f}% after {}, "
               "{:.0f}x the reference, thread-invariant: {}\n",
               100 * out["prefill_fraction_of_fma_peak"].get<double>(),
               100 * out["prefill_fraction_of_openblas"].get<double>(),
               100 * out["gemm_fraction_of_fma_peak"].get<double>(),
               100 * out["decode_fraction_of_bandwidth_512"].get<double>(),
               100 * out["decode_fraction_of_bandwidth"].get<double>(), a.quick ? 8192 : 32768,
               out["speedup_vs_reference"].get<double>(), out["thread_invariant"].get<bool>());
  return 0;
}

const Register reg{Command{
    "bench", "benchmark the fast path on the medium config against OpenBLAS, memory bandwidth and the reference",
    [](CLI::App& sub) -> std::function<int()> {
      auto a = std::make_shared<BenchArgs>();
      sub.add_flag("--json", a->json, "print one JSON object instead of tables");
      sub.add_flag("--quick", a->quick, "fewer sizes and repetitions (prefill 256, decode after 512 and 8192)");
      sub.add_option("--threads", a->threads, "threads (default: all hardware threads)")
          ->check(CLI::Range(1, 1024));
      sub.add_option("--seed", a->seed, "weight generator seed")->capture_default_str();
      sub.add_option("--weights", a->weights,
                     "storage of the fast path's matrices: f32, or bf16 (half the bytes, values "
                     "rounded to bfloat16)")
          ->check(CLI::IsMember({"f32", "bf16"}))
          ->capture_default_str();
      sub.add_option("--mc", a->blocks.mc, "GEMM rows per task")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--nc", a->blocks.nc, "GEMM tokens per task")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--kc", a->blocks.kc, "GEMM inner-dimension slice")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--attn-qb", a->blocks.attn_qb, "prefill attention: queries per task")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--attn-heads", a->blocks.attn_heads, "prefill attention: heads per task")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--attn-kb", a->blocks.attn_kb, "prefill attention: keys per block")->capture_default_str()->check(CLI::PositiveNumber);
      sub.add_option("--decode-kb", a->blocks.decode_kb, "decode attention: keys per block (one task each)")->capture_default_str()->check(CLI::PositiveNumber);
      CLI::Option* ck = sub.add_option("--checkpoint", a->checkpoint,
                     "also measure, on this checkpoint used where it lies (e.g. the true-width V3 "
                     "FP8 one init-model writes), the time to first token of an 8-token prompt from "
                     "a warm page cache, decode tokens/s and the private memory (first)");
      sub.add_flag("--checkpoint-only", a->checkpoint_only, "only the --checkpoint figures")->needs(ck);
      return [a] { return bench(*a); };
    }}};

}  // namespace
}  // namespace dsr1::cli
