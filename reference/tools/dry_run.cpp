#include "reference/tools/dry_run.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "reference/deepseek/loader.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1 {

namespace {

using u64 = std::uint64_t;

struct Walker {
  const Config& c;
  const DryRunOptions& opt;
  Tracer& tr;
  DryRunTotals totals;
  double plain_size;  // bytes per element of non-FP8 weights (torch_dtype)
  double act_size;    // bytes per activation element (torch_dtype)
  // Weight bytes counted by weights() (linear_bytes, vector_bytes) while a stage's arguments are
  // evaluated; stage() records them as the stage's weight_bytes and starts again from zero. A
  // multiple of a weight (several experts) is counted with linear_weight_bytes inside weights().
  mutable double pending_weights = 0;

  Walker(const Config& cfg, const DryRunOptions& o, Tracer& t)
      : c(cfg), opt(o), tr(t),
        plain_size(static_cast<double>(safetensors::dtype_size(dtype_of_torch_dtype(cfg.torch_dtype)))),
        act_size(plain_size) {}

  void stage(const char* name, std::vector<u64> shape, double flops, double bytes) {
    tr.record_shape(name, std::move(shape), StageCost{flops, bytes, pending_weights});
    pending_weights = 0;
    totals.flops += flops;
    totals.bytes += bytes;
    ++totals.stages;
  }

  // Bytes of `rows` rows of an attention/FFN linear weight [out, in]: one byte per element
  // plus its share of the F32 scale grid when the checkpoint is FP8 (spec §10).
  double linear_bytes(double rows, double in, double out) const {
    return weights(linear_weight_bytes(rows, in, out));
  }
  double linear_weight_bytes(double rows, double in, double out) const {
    if (!c.fp8_weights) return rows * in * plain_size;
    const double B = static_cast<double>(c.weight_block_size);
    const double grid = std::ceil(out / B) * std::ceil(in / B);
    return rows * in * 1.0 + 4.0 * grid * rows / out;
  }
  double vector_bytes(double n) const { return weights(n * plain_size); }
  double weights(double bytes) const {
    pending_weights += bytes;
    return bytes;
  }
  double act(double n) const { return n * act_size; }

  void norm(const char* name, double T, double n) {
    stage(name, {static_cast<u64>(T), static_cast<u64>(n)}, 4 * T * n, vector_bytes(n) + act(T * n));
  }

  // One decoder block over `tokens` positions (T for the main layers, T-1 for the MTP block).
  void block(bool is_moe, u64 tokens) {
    const double T = static_cast<double>(tokens), Tk = T;
    const double d = c.hidden_size, n_h = c.num_attention_heads, d_nope = c.qk_nope_head_dim,
                 d_rope = c.qk_rope_head_dim, d_v = c.v_head_dim, r_q = c.q_lora_rank,
                 r_kv = c.kv_lora_rank, d_qk = c.d_qk();
    const u64 uT = tokens, uTk = tokens;
    const auto U = [](double x) { return static_cast<u64>(x); };

    norm("attn_norm", T, d);
    // Query path (spec §4.1).
    double q_in = d;
    if (c.has_q_lora()) {
      stage("attn.c_q", {uT, U(r_q)}, 2 * T * d * r_q, linear_bytes(r_q, d, r_q) + act(T * d));
      norm("attn.c_q_hat", T, r_q);
      q_in = r_q;
    }
    stage("attn.q_nope", {uT, U(n_h * d_nope)}, 2 * T * q_in * n_h * d_nope,
          linear_bytes(n_h * d_nope, q_in, n_h * d_qk) + act(T * q_in));
    stage("attn.q_rope_pre", {uT, U(n_h * d_rope)}, 2 * T * q_in * n_h * d_rope,
          linear_bytes(n_h * d_rope, q_in, n_h * d_qk) + act(T * q_in));
    stage("attn.q_rope", {uT, U(n_h * d_rope)}, 3 * T * n_h * d_rope, act(T * n_h * d_rope));
    // Key/value latent and the shared RoPE key.
    stage("attn.c_kv", {uT, U(r_kv)}, 2 * T * d * r_kv, linear_bytes(r_kv, d, r_kv + d_rope) + act(T * d));
    norm("attn.c_kv_hat", T, r_kv);
    stage("attn.k_rope_pre", {uT, U(d_rope)}, 2 * T * d * d_rope,
          linear_bytes(d_rope, d, r_kv + d_rope) + act(T * d));
    stage("attn.k_rope", {uT, U(d_rope)}, 3 * T * d_rope, act(T * d_rope));
    const double kv_b_out = n_h * (d_nope + d_v);
    if (opt.attn == "naive") {
      stage("attn.k_nope", {uTk, U(n_h * d_nope)}, 2 * Tk * r_kv * n_h * d_nope,
            linear_bytes(n_h * d_nope, r_kv, kv_b_out) + act(Tk * r_kv));
      stage("attn.v", {uTk, U(n_h * d_v)}, 2 * Tk * r_kv * n_h * d_v,
            linear_bytes(n_h * d_v, r_kv, kv_b_out) + act(Tk * r_kv));
      stage("attn.scores", {U(n_h), uT, uTk}, n_h * T * Tk * 2 * d_qk,
            act(T * n_h * d_qk + Tk * (n_h * d_nope + d_rope)));
      stage("attn.probs", {U(n_h), uT, uTk}, 4 * n_h * T * Tk, act(n_h * T * Tk));
      stage("attn.o", {uT, U(n_h * d_v)}, 2 * n_h * T * Tk * d_v, act(n_h * T * Tk + Tk * n_h * d_v));
    } else {
      stage("attn.q_tilde", {U(n_h), uT, U(r_kv)}, 2 * n_h * T * d_nope * r_kv,
            linear_bytes(n_h * d_nope, r_kv, kv_b_out) + act(T * n_h * d_nope));
      stage("attn.scores", {U(n_h), uT, uTk}, n_h * T * Tk * 2 * (r_kv + d_rope),
            act(n_h * T * (r_kv + d_rope) + Tk * (r_kv + d_rope)));
      stage("attn.probs", {U(n_h), uT, uTk}, 4 * n_h * T * Tk, act(n_h * T * Tk));
      stage("attn.z", {U(n_h), uT, U(r_kv)}, 2 * n_h * T * Tk * r_kv, act(n_h * T * Tk + Tk * r_kv));
      stage("attn.o", {uT, U(n_h * d_v)}, 2 * n_h * T * r_kv * d_v,
            linear_bytes(n_h * d_v, r_kv, kv_b_out) + act(n_h * T * r_kv));
    }
    stage("attn.u", {uT, U(d)}, 2 * T * n_h * d_v * d, linear_bytes(d, n_h * d_v, d) + act(T * n_h * d_v));
    stage("h_attn", {uT, U(d)}, T * d, act(2 * T * d));
    norm("ffn_norm", T, d);

    if (!is_moe) {
      const double I = c.intermediate_size;
      stage("ffn.gate", {uT, U(I)}, 2 * T * d * I, linear_bytes(I, d, I) + act(T * d));
      stage("ffn.up", {uT, U(I)}, 2 * T * d * I, linear_bytes(I, d, I) + act(T * d));
      stage("ffn.act", {uT, U(I)}, 5 * T * I, act(2 * T * I));
      stage("ffn.out", {uT, U(d)}, 2 * T * I * d, linear_bytes(d, I, d) + act(T * I));
    } else {
      const double N_r = c.n_routed_experts, K = c.num_experts_per_tok, n_group = c.n_group,
                   I_e = c.moe_intermediate_size, W_s = c.n_shared_experts * c.moe_intermediate_size;
      stage("moe.ell", {uT, U(N_r)}, 2 * T * d * N_r, weights(N_r * d * plain_size) + act(T * d));
      stage("moe.s", {uT, U(N_r)}, 4 * T * N_r, act(T * N_r));
      if (c.has_gate_bias()) stage("moe.s_tilde", {uT, U(N_r)}, T * N_r, weights(4 * N_r) + act(T * N_r));
      if (c.n_group > 1 && c.topk_method != "greedy") {
        stage("moe.group_scores", {uT, U(n_group)}, T * N_r, act(T * N_r));
        stage("moe.group_mask", {uT, U(n_group)}, T * n_group, act(T * n_group));
      }
      stage("moe.experts", {uT, U(K)}, T * N_r, act(T * N_r));
      stage("moe.g", {uT, U(K)}, 3 * T * K, act(T * K));
      // Distinct experts T tokens can touch: at most min(N_r, T*K), all read once.
      const double touched = std::min(N_r, T * K);
      stage("moe.routed", {uT, U(d)}, T * K * (6 * d * I_e + 5 * I_e + 2 * d),
            weights(touched * (2 * linear_weight_bytes(I_e, d, I_e) + linear_weight_bytes(d, I_e, d))) +
                act(T * d));
      if (c.n_shared_experts > 0)
        stage("moe.shared", {uT, U(d)}, T * (6 * d * W_s + 5 * W_s),
              weights(2 * linear_weight_bytes(W_s, d, W_s) + linear_weight_bytes(d, W_s, d)) + act(T * d));
      stage("moe.out", {uT, U(d)}, T * d, act(2 * T * d));
    }
    stage("h", {uT, U(d)}, T * d, act(2 * T * d));
  }
};

}  // namespace

DryRunTotals dry_run(const Config& c, const DryRunOptions& opt, Tracer& tr) {
  validate(c);
  if (opt.attn != "naive" && opt.attn != "absorbed")
    throw std::invalid_argument(fmt::format("dry run: attention form '{}', expected naive or absorbed", opt.attn));
  if (opt.tokens == 0) throw std::invalid_argument("dry run: tokens must be at least 1");
  if (opt.tokens > static_cast<u64>(c.max_position_embeddings))
    throw std::invalid_argument(fmt::format("dry run: {} tokens exceed max_position_embeddings = {}",
                                            opt.tokens, c.max_position_embeddings));
  Walker w(c, opt, tr);
  const double T = opt.tokens, d = c.hidden_size, V = c.vocab_size;
  const u64 uT = opt.tokens, ud = c.hidden_size, uV = c.vocab_size;
  w.stage("embed.h", {uT, ud}, 0, w.weights(T * d * w.plain_size));  // T rows of E looked up
  for (std::int64_t l = 0; l < c.num_hidden_layers; ++l) {
    TraceScope scope(&tr, fmt::format("layers.{}", l));
    w.block(c.is_moe_layer(l), opt.tokens);
  }
  w.norm("final_norm", T, d);
  w.stage("logits", {uT, uV}, 2 * T * d * V, w.weights(V * d * w.plain_size) + w.act(T * d));
  // MTP (spec §9): position i predicts token i+2 from the state after token i and the embedding of
  // token i+1, so it runs over T-1 positions (none for a single token).
  if (opt.mtp && c.num_nextn_predict_layers > 0 && opt.tokens >= 2) {
    TraceScope mtp(&tr, "mtp");
    const u64 uTm = opt.tokens - 1;
    const double Tm = static_cast<double>(uTm);
    w.norm("emb_norm", Tm, d);
    w.norm("h_norm", Tm, d);
    w.stage("h_proj", {uTm, ud}, 2 * Tm * 2 * d * d, w.weights(2 * d * d * w.plain_size) + w.act(2 * Tm * d));
    {
      TraceScope blk(&tr, "block");
      w.block(c.is_moe_layer(c.num_hidden_layers), uTm);
    }
    w.norm("head_norm", Tm, d);
    w.stage("logits", {uTm, uV}, 2 * Tm * d * V, w.weights(V * d * w.plain_size) + w.act(Tm * d));
  }
  return w.totals;
}

}  // namespace dsr1
