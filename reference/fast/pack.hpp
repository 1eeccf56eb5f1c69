// The fast path's weights packed straight from a weight source (a checkpoint or the generator),
// a block of rows at a time, each matrix kept as the checkpoint stores it when asked to:
// FP8 codes with their block scales, bfloat16 bits, or float32.
// Leaves out: the arithmetic (gemm.hpp) and the double-precision loader (deepseek/loader.hpp,
// whose split of the fused tensors this file follows row for row: spec §4.2).
//
// Which storage each matrix gets (WeightType of the run):
//   f32   every matrix float32: the source's values (an FP8 checkpoint's q * s rounded to float32)
//   bf16  every matrix bfloat16, rounded to nearest even (exact for a BF16 checkpoint)
//   fp8   the matrices the release stores as FP8 (attention and FFN linear maps) as e4m3 codes
//         with float32 scales per 128 x 128 block: an FP8 checkpoint's own bytes, or, for any
//         other source, the values quantised exactly as `dsr1 init-model --dtype fp8` does
//         (quantize_fp8_rows), so a generated run and a run on that checkpoint pack the same
//         bytes. The matrices the release keeps in bfloat16 (embedding, LM head, router) are
//         bfloat16, as the release stores them.
// The embedding table is float32 with f32 and bfloat16 otherwise; RMSNorm weights float32, the
// gate bias double (the reference's routing rules run in double).
//
// Rows of the fused tensors are regrouped as in the loader: W_UQ and W_QR take each head's
// nope and rope rows of q_b_proj (q_proj), W_UK_h and W_UV_h each head's rows of kv_b_proj.
// FP8 scales are kept per row (gemm.hpp), so any regrouping of rows keeps its scales. The one
// matrix whose inner dimension comes from a checkpoint's rows is W_UK_h^T [r_kv, d_nope]
// (absorbed attention, q_tilde = W_UK_h^T q_nope): its inner blocks are the checkpoint's row
// blocks of kv_b_proj, which match a 128-long block of the inner dimension only when each head's
// rows start on a block boundary, i.e. (d_nope + d_v) % B == 0 (true for V2, V3 and R1: 256).
// Then W_UK_h^T is FP8 with the transposed scales; otherwise it is float32, q * s rounded to
// float32 (a relative change of at most 2^-24 per weight, below the float32 tolerance).
#pragma once

#include <cstdint>

#include "reference/deepseek/config.hpp"
#include "reference/fast/weights.hpp"
#include "reference/io/tensor_source.hpp"

namespace dsr1::fast {

struct PackOptions {
  int threads = 1;  // generation and quantisation of generated FP8 weights; the bytes do not depend on it
};

// Every weight of the main model (no MTP) from `src`, checked against the config (a missing
// tensor, a wrong shape, an FP8 scale grid of the wrong shape, a NaN code or a negative scale
// throws naming the source and the tensor). One block of rows is in flight at a time besides
// the packed model: the source's pages are released as they are read (checkpoint.hpp).
ModelWeightsF pack_weights(const TensorSource& src, const Config& c, WeightType type,
                           const PackOptions& options = {});

// The storage a checkpoint's config says its matrices have: FP8 when quantization_config is
// fp8 (fp8_weights), BF16 when torch_dtype is bfloat16, F32 otherwise (`--fast-weights auto`).
WeightType stored_weight_type(const Config& c);

// Bytes the packed model takes (matrices, scales, embedding, norms): what `dsr1 run --fast`
// holds besides activations and the cache, for refusing a model that cannot fit.
double packed_model_bytes(const Config& c, WeightType type);

}  // namespace dsr1::fast
