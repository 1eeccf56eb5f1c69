// Deliberately wrong variants of the reference, one per known pitfall (spec §14).
// Leaves out: nothing; these exist only so the conformance suite can prove that `dsr1 compare`
// catches each mistake and names the first stage it affects. Every flag is false in a normal
// run, and each code path that reads a flag is marked "conformance fault" at its use.
// Project-wide: it sits beside the layer folders because io/ (FP8 scales), deepseek/ (RoPE, MLA,
// routing, the model) and cli/ all read it; it includes nothing.
#pragma once

namespace dsr1 {

struct Faults {
  bool no_mscale = false;                  // P2: softmax scale 1/sqrt(d_qk), YaRN factor forgotten
  bool mscale_not_squared = false;         // P2: mscale applied once instead of squared
  bool bias_in_weights = false;            // P4: gating weights taken from s + b instead of s
  bool group_score_max = false;            // P5: V3 group score = max instead of top-2 sum
  bool group_mask_zero = false;            // P6: unselected groups masked with 0 instead of -inf
  bool renormalize_softmax = false;        // P8: top-k softmax weights renormalized (V2 must not)
  bool double_routed_scaling = false;      // P17: routed_scaling_factor applied twice
  bool fp8_scale_divide = false;           // P13: weight_scale_inv used as a divisor
  bool fp8_skip_edge_blocks = false;       // P13: partial edge blocks left unscaled
  bool cache_unnormalized_latent = false;  // P16: c_kv cached before its RMSNorm
  bool mtp_concat_hidden_first = false;    // P10: eh_proj input [hnorm(h) ; enorm(emb)]
};

}  // namespace dsr1
