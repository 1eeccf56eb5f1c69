// The model's parameters, named as in the spec and the papers, in double precision.
// Leaves out: how they are read (checkpoint.hpp) or generated (generator.hpp).
//
// Every linear map is an arma::mat of shape [out, in], so `W_DKV * h` reads as the spec
// writes it. The checkpoint's fused tensors are split here into the paper's matrices:
//   q_b_proj            -> W_UQ [n_h*d_nope, r_q] and W_QR [n_h*d_rope, r_q]   (spec §4.2)
//   q_proj (no q-LoRA)  -> W_UQ [n_h*d_nope, d]   and W_QR [n_h*d_rope, d]
//   kv_a_proj_with_mqa  -> W_DKV [r_kv, d]        and W_KR [d_rope, d]
//   kv_b_proj           -> W_UK [n_h*d_nope, r_kv] and W_UV [n_h*d_v, r_kv]
// Heads are stacked on rows: rows i*d_nope .. (i+1)*d_nope-1 of W_UQ belong to head i.
#pragma once

#include <armadillo>
#include <optional>
#include <vector>

#include "reference/deepseek/config.hpp"

namespace dsr1 {

struct MlaWeights {
  // Query path. With q-LoRA (V2, V3): c_q = W_DQ h, c_q_hat = RMSNorm(c_q; w_q),
  // q_nope = W_UQ c_q_hat, q_rope = RoPE(W_QR c_q_hat). Without (V2-Lite): W_DQ and w_q are
  // empty and W_UQ, W_QR act on h directly.
  arma::mat W_DQ;   // [r_q, d]        (q_a_proj)
  arma::vec w_q;    // [r_q]           (q_a_layernorm)
  arma::mat W_UQ;   // [n_h*d_nope, r_q or d]
  arma::mat W_QR;   // [n_h*d_rope, r_q or d]
  // Key/value path.
  arma::mat W_DKV;  // [r_kv, d]       (kv_a_proj_with_mqa rows 0..r_kv-1)
  arma::mat W_KR;   // [d_rope, d]     (kv_a_proj_with_mqa rows r_kv..)
  arma::vec w_kv;   // [r_kv]          (kv_a_layernorm)
  arma::mat W_UK;   // [n_h*d_nope, r_kv]
  arma::mat W_UV;   // [n_h*d_v, r_kv]
  arma::mat W_O;    // [d, n_h*d_v]    (o_proj)
};

// SwiGLU MLP: FFN(x) = W_down (silu(W_gate x) ⊙ (W_up x))   (spec §6)
struct FfnWeights {
  arma::mat W_gate;  // [I, d]   (gate_proj, "w1")
  arma::mat W_up;    // [I, d]   (up_proj, "w3")
  arma::mat W_down;  // [d, I]   (down_proj, "w2")
};

struct MoeWeights {
  arma::mat W_g;                    // [N_r, d]  router (mlp.gate.weight)
  arma::vec b;                      // [N_r] e_score_correction_bias; empty when absent (V2)
  std::vector<FfnWeights> experts;  // N_r routed experts, width I_e
  std::optional<FfnWeights> shared; // one MLP of width N_s*I_e; absent when N_s = 0
};

struct BlockWeights {
  arma::vec w_attn_norm;  // [d] input_layernorm
  MlaWeights attn;
  arma::vec w_ffn_norm;   // [d] post_attention_layernorm
  bool is_moe = false;
  FfnWeights dense;       // used when !is_moe
  MoeWeights moe;         // used when is_moe
};

// Multi-Token Prediction module (V3), stored as layer index num_hidden_layers (spec §9).
struct MtpWeights {
  arma::vec w_enorm;       // [d]
  arma::vec w_hnorm;       // [d]
  arma::mat W_eh;          // [d, 2d]; input is [enorm(emb) ; hnorm(h)] (pitfall P10)
  BlockWeights block;
  arma::vec w_head_norm;   // [d] shared_head.norm
  // The checkpoint stores copies of the embedding and head; when present they are used,
  // otherwise the main model's E and W_head are (they are identical in the release).
  arma::mat E;             // [d, V] or empty
  arma::mat W_head;        // [V, d] or empty
};

struct ModelWeights {
  arma::mat E;                       // [d, V]: column v is the embedding of token v
  std::vector<BlockWeights> layers;  // L blocks
  arma::vec w_final_norm;            // [d] model.norm
  arma::mat W_head;                  // [V, d] lm_head
  std::optional<MtpWeights> mtp;
};

}  // namespace dsr1
