// Blocked float32 matrix products Y = W X for the fast path, with packed weights.
// Leaves out: transposed operands and alpha/beta scaling (callers arrange their data instead).
//
// Layout. W [M, K] (out, in) is packed once into panels of MR = 32 rows: panel p holds rows
// p*MR .. p*MR+MR-1 as K consecutive groups of MR weights (W(p*MR + r, k) at k*MR + r), the last
// panel padded with zero rows; each weight a float32, a bfloat16 or an FP8 code with its block
// scale (WeightType below).
// X [K, N] and Y [M, N] are column-major with one token per column, as everywhere in dsr1.
//
// Blocking. X is first copied, once per product and in parallel, into panels of NR = 8 columns
// (X(k, j) at (j / NR) * K * NR + k * NR + j % NR); a single column is read in place. A task
// computes one mc x nc block of Y (nc rounded up to whole panels), so W is streamed from memory
// once per nc tokens. It walks the inner dimension in slices of kc and, per slice, runs the
// micro-kernel for every (NR-column panel, MR-row panel) pair. The
// micro-kernel keeps an MR x NR tile of Y in registers (16 AVX-512 or 32 AVX2 vectors) and
// adds a rank-1 update per k: one load of MR weights, NR broadcasts, NR*MR/16 FMAs. Its loops
// have fixed trip counts, so GCC unrolls and vectorises them; the file is compiled for three
// instruction sets (x86-64-v4 = AVX-512, v3 = AVX2+FMA, baseline SSE2) and the loader picks
// one per machine (target_clones), so one binary runs on any x86-64 CPU.
//
// Order of the sums. Y(i, j) = sum over slices s of (sum over k in slice s of W(i,k) X(k,j)),
// each slice summed from zero in k order and then added to Y in slice order. That order depends
// on kc only: never on the thread count (options.hpp). FP8 weights: the slices are the scale
// blocks (kc = B whatever Options::kc says), each block's sum times its scale added in order,
// so an FP8 product depends on neither kc nor the thread count.
#pragma once

#include <armadillo>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "reference/fast/options.hpp"

// Compiles a function three times (AVX-512, AVX2+FMA, baseline x86-64); the loader picks the
// best copy for the CPU it runs on, so no -march flag is needed and one binary runs anywhere.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define DSR1_FAST_CLONES \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DSR1_FAST_CLONES
#endif

namespace dsr1::fast {

inline constexpr std::int64_t MR = 32;  // rows of the micro-tile (weights' panel height)
inline constexpr std::int64_t NR = 8;   // columns (tokens) of the micro-tile
inline constexpr std::int64_t MR16 = 16;  // rows of the narrow tile (gemm_rows16): decode queries

// How packed weights are stored. BF16 is bfloat16, the upper half of a float32 (8 exponent and
// 8 significant bits), as DeepSeek's checkpoints store their matrices: half the bytes, so
// weight-bound decode streams half as much. The micro-kernel widens each weight to float32 as
// it loads it (exact: a bfloat16 is a float32 with 16 zero bits), so every product and sum is
// float32 either way; only the weights' values differ, by their rounding to bfloat16.
//
// FP8 is how DeepSeek-V3 and R1 ship their linear maps (spec §10): one byte per weight, an
// e4m3 code q (1 sign, 4 exponent, 3 mantissa bits), and one float32 scale s per B x B block
// (B = 128), W(i, k) = q(i, k) * s(i / B, k / B). The packed matrix keeps the codes in the same
// MR-row panels (one byte each) and, beside them, each row's scales: scale(i, b) is the scale of
// row i's b-th block of B columns (rows of one checkpoint block share it; storing it per row
// lets a packed matrix stack rows of several tensors, or permute them, freely). The kernel
// widens each code to float32 exactly and, as DeepSeek's own FP8 GEMM does, sums one block of
// B products in float32 from zero, then multiplies that block sum by the block's scale and adds
// it to Y:   Y(i, j) = sum over blocks b, in order, of s(i, b) * (sum_{k in b} q(i, k) X(k, j)).
enum class WeightType { F32, BF16, FP8 };
const char* to_string(WeightType t);                // "f32", "bf16", "fp8"
WeightType weight_type_from_string(const std::string& s);  // throws naming the accepted names

// Where row r (0 <= r < MR) of a panel keeps its code within each k's 32 bytes of an FP8 panel:
// rows 4L .. 4L+3 at slots 8L .. 8L+3 and rows 16+4L .. 16+4L+3 at slots 8L+4 .. 8L+7, the order
// in which the kernel's widening unpacks them (gemm_fp8.inc, step 4).
constexpr std::int64_t fp8_slot(std::int64_t r) {
  return r < 16 ? (r / 4) * 8 + r % 4 : ((r - 16) / 4) * 8 + 4 + (r - 16) % 4;
}

// A matrix is held in one of two ways:
//  * packed (the vectors below): the panels are built once, and gemm reads them in place;
//  * as rows where they lie (a view, is_view()): row i's K stored values start at row_data[i]
//    (little-endian float32, bfloat16 bits or e4m3 codes, any alignment), e.g. inside a mapped
//    checkpoint in its own [out, in] layout, and, for FP8, row i's ceil(K/B) block scales at
//    row_scales[i]. Nothing is copied up front: gemm packs each task's mc x kc block of rows
//    into a cache-sized buffer of the same panel layout as it goes (as BLAS libraries do) and
//    runs the same kernel on it, with the same slices, so a view gives the same bits as the
//    packed matrix of the same values. Rows of several tensors may be stacked or regrouped
//    freely (one pointer per row).
struct PackedMatrix {
  std::int64_t rows = 0;      // M
  std::int64_t cols = 0;      // K
  WeightType type = WeightType::F32;
  std::vector<const std::uint8_t*> row_data;  // view: M row pointers
  std::vector<const float*> row_scales;       // view, FP8: M pointers to each row's scales
  std::shared_ptr<const void> keep;           // view: owner of what the pointers point into, if any
  std::string name;                           // view: names the tensors in messages
  bool is_view() const { return !row_data.empty(); }
  std::vector<float> panels;               // F32: ceil(M/MR) panels of K*MR floats
  std::vector<std::uint16_t> panels_bf16;  // BF16: the same layout, bfloat16 bit patterns
  std::vector<std::uint8_t> panels_fp8;    // FP8: the same layout, e4m3 codes (rows of a k in fp8_slot order)
  std::int64_t block = 0;                  // FP8: B, the scale block of the inner dimension
  // FP8: per panel, n_kblocks() groups of MR scales: scale(i, b) at
  // (i / MR) * n_kblocks() * MR + b * MR + i % MR (padding rows 0).
  std::vector<float> scales;
  const float* panel(std::int64_t p) const { return panels.data() + p * cols * MR; }
  const std::uint16_t* panel_bf16(std::int64_t p) const { return panels_bf16.data() + p * cols * MR; }
  const std::uint8_t* panel_fp8(std::int64_t p) const { return panels_fp8.data() + p * cols * MR; }
  const float* panel_scales(std::int64_t p) const { return scales.data() + p * n_kblocks() * MR; }
  std::int64_t n_panels() const { return (rows + MR - 1) / MR; }
  std::int64_t n_kblocks() const { return block > 0 ? (cols + block - 1) / block : 0; }
  // Bytes of the real (unpadded) weights: what one pass over the matrix reads (FP8: the codes
  // and every row's scales).
  std::int64_t bytes() const {
    if (type == WeightType::FP8) return rows * cols + rows * n_kblocks() * 4;
    return rows * cols * (type == WeightType::BF16 ? 2 : 4);
  }
};

// Packs W [M, K] as float32 (the generator's weights are float32 values, so exactly), or as
// bfloat16, rounded to nearest even (exact when W holds bfloat16 values, e.g. from a BF16
// checkpoint). FP8 is refused here: its codes and scales come from pack_rows_fp8.
PackedMatrix pack_matrix(const arma::mat& W, WeightType type = WeightType::F32);
PackedMatrix pack_matrix(const arma::fmat& W, WeightType type = WeightType::F32);

// Packing a row block at a time (reference/fast/pack.cpp fills matrices straight from a
// checkpoint or the generator this way, never holding a second whole copy):
// an all-zero [M, K] matrix of `type` (FP8: with scale block B along K) ...
PackedMatrix make_packed(std::int64_t M, std::int64_t K, WeightType type, std::int64_t B = 0);
// ... then rows r0 .. r0+n-1 from values [n, K] row-major: stored as float32 (F32) or rounded
// to bfloat16 (BF16); refused for FP8;
void pack_rows(PackedMatrix& P, std::int64_t r0, std::int64_t n, const double* values);
// ... or from bfloat16 bit patterns [n, K] row-major: kept (BF16) or widened exactly (F32);
void pack_rows_bf16(PackedMatrix& P, std::int64_t r0, std::int64_t n, const std::uint16_t* bits);
// ... or, for FP8, from e4m3 codes [n, K] row-major and each row's block scales [n, ceil(K/B)]
// row-major. Throws std::invalid_argument for a NaN code (0x7F, 0xFF: e4m3fn has no infinity)
// or a scale that is not finite and >= 0; `what` names the tensor in the message.
void pack_rows_fp8(PackedMatrix& P, std::int64_t r0, std::int64_t n, const std::uint8_t* codes,
                   const float* row_scales, const std::string& what);

// The exact float32 value of an e4m3 code (the kernel's widening; 0x7F and 0xFF, NaN in e4m3fn,
// are refused when packing and never reach it).
float e4m3_to_float(std::uint8_t q);

// Y[:, 0..N-1] = W X (or += when accumulate). X: [K, N] with column stride ldx >= K;
// Y: [M, N] with column stride ldy >= M. Parallel over mc x nc blocks of Y (options.hpp).
void gemm(const PackedMatrix& W, const float* X, std::int64_t ldx, std::int64_t N, float* Y,
          std::int64_t ldy, bool accumulate, const Options& opt);

// Convenience: returns W X for X [K, N].
arma::fmat gemm(const PackedMatrix& W, const arma::fmat& X, const Options& opt);

// Single-threaded building block shared with attention: C[m, n] (+)= A B where
//   A(r, k) = a[(r / MR) * a_panel + k * lda + r % MR]   (every panel must hold MR readable rows)
//   B(k, j) = b[(j / NR) * b_panel + k * bk + (j % NR) * bj]
//   C(r, j) = c[r + j * ldc]   (only rows r < m and columns j < n are written)
// The sum over k = 0 .. kc-1 runs in order from zero and is then stored or added to C.
void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const float* a,
                 std::int64_t a_panel, std::int64_t lda, const float* b, std::int64_t b_panel,
                 std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc, bool accumulate);
// The same with A stored as bfloat16 (a panel of a BF16 PackedMatrix), widened as it is loaded.
void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const std::uint16_t* a,
                 std::int64_t a_panel, std::int64_t lda, const float* b, std::int64_t b_panel,
                 std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc, bool accumulate);

// The same with A stored as e4m3 codes (a panel of an FP8 PackedMatrix) and one scale per row
// of A for the whole kc-long sum (kc at most one scale block): the scale of row r is
// scale[(r / MR) * scale_panel + r % MR]. The sum over k runs in order from zero, is multiplied
// by the row's scale and then stored or added to C. b_scaled: B holds its values times 2^120,
// and the codes are widened without that factor (gemm_fp8.inc); the products, and so the
// result, are the same.
void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const std::uint8_t* a,
                 std::int64_t a_panel, std::int64_t lda, const float* scale,
                 std::int64_t scale_panel, const float* b, std::int64_t b_panel, std::int64_t bk,
                 std::int64_t bj, float* c, std::int64_t ldc, bool accumulate, bool b_scaled);

// The FP8 kernel is compiled once per instruction set (gemm_fp8.inc) and gemm_panels uses the
// best one this CPU runs. For tests, which check every copy: the copies this CPU can run, best
// first ("x86-64-v4" = AVX-512, "x86-64-v3" = AVX2, "x86-64"), and gemm_panels through one of them.
std::vector<std::string> fp8_kernel_isas();
void gemm_panels_fp8_isa(const std::string& isa, std::int64_t m, std::int64_t n, std::int64_t kc,
                         const std::uint8_t* a, std::int64_t a_panel, std::int64_t lda,
                         const float* scale, std::int64_t scale_panel, const float* b,
                         std::int64_t b_panel, std::int64_t bk, std::int64_t bj, float* c,
                         std::int64_t ldc, bool accumulate, bool b_scaled);

// The narrow variant for at most MR16 = 16 rows (decode: one query per head, 16 heads fill the
// tile, where the 32-row tile would be half padding): C[m, n] (+)= A B with m <= 16 and
//   A(r, k) = a[k * lda + r]   (16 readable rows),   B(k, j) = b[k * bk + j * bj],
//   C(r, j) = c[r + j * ldc]   (only rows r < m are written).
// Tiles of 16 rows x 16 columns (16 vector accumulators); the sum over k = 0 .. kc-1 runs in
// order from zero, exactly as in gemm_panels, and is then stored or added to C. Each tile
// prefetches the next tile's B (decode reads B straight from the latent cache in memory).
void gemm_rows16(std::int64_t m, std::int64_t n, std::int64_t kc, const float* a, std::int64_t lda,
                 const float* b, std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc,
                 bool accumulate);

}  // namespace dsr1::fast
