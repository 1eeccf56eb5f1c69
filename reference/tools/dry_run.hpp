// A forward pass of shapes only: every traced stage of the real model (embedding, L blocks,
// final norm, head, MTP) with its output shape, FLOPs and bytes, at full scale.
// Leaves out: all values; no weight or activation is allocated (Tracer::record_shape).
//
// The stages and their names are exactly those the reference forward pass traces (TEAM.md,
// docs/trace-names.md), so a dry run is a table of contents of a real run. Shapes are on-disk
// shapes ([T, d] for an activation, [n_h, T, T_k] for per-head scores).
//
// Cost model (docs/accounting.md): a multiply-add is 2 FLOPs, so W h with W [m, n] costs
// 2 m n per token; RMSNorm 4 per element, RoPE 3 per rotated element, softmax 4 per score,
// SwiGLU's silu(gate) * up 5 per element, a residual add 1 per element. Bytes are the weights a
// stage reads at the checkpoint's dtypes (the catalogue's; FP8 scales included) plus its input
// activations at torch_dtype.
#pragma once

#include <cstdint>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/trace/trace.hpp"

namespace dsr1 {

struct DryRunOptions {
  std::uint64_t tokens = 1;      // T: tokens of the prefill, at positions 0..T-1 (T_k = T)
  std::string attn = "naive";    // naive | absorbed (spec §4.3): which intermediates exist
  bool mtp = true;               // walk the MTP module too when the config has one
};

struct DryRunTotals {
  double flops = 0;
  double bytes = 0;
  std::uint64_t stages = 0;
};

// Records every stage on `tr` (which may filter names) and returns the sums over all stages.
DryRunTotals dry_run(const Config& c, const DryRunOptions& opt, Tracer& tr);

}  // namespace dsr1
