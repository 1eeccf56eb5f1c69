// Blocked float32 matrix products (see gemm.hpp for the layout and the order of the sums).
#include "reference/fast/gemm.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#endif
#if defined(__SSE2__)
#include <emmintrin.h>
#endif
#include <stdexcept>
#include <type_traits>

#include "reference/fast/thread_pool.hpp"
#include "reference/io/safetensors.hpp"

namespace dsr1::fast {
namespace {

// A weight as float32: itself, or a bfloat16 widened (its 16 bits become the upper half).
[[maybe_unused, gnu::always_inline]] inline float widen(float w) { return w; }
[[gnu::always_inline]] inline float widen(std::uint16_t w) {
  return std::bit_cast<float>(static_cast<std::uint32_t>(w) << 16);
}

// acc[j][i] = sum_k A(i, k) B(k, j) for a ROWS x N_COLS tile, then C = acc or C += acc.
// AT: how A is stored (float, or std::uint16_t holding bfloat16).
template <int ROWS, int N_COLS, class AT>
[[gnu::always_inline]] inline void micro_kernel(std::int64_t kc, const AT* __restrict a,
                                                std::int64_t lda, const float* __restrict b,
                                                std::int64_t bk, std::int64_t bj,
                                                float* __restrict c, std::int64_t ldc,
                                                std::int64_t m_valid, bool accumulate) {
  float acc[N_COLS][ROWS];
  for (int j = 0; j < N_COLS; ++j)
    for (int i = 0; i < ROWS; ++i) acc[j][i] = 0.0f;
  for (std::int64_t k = 0; k < kc; ++k) {
    const AT* ak = a + k * lda;
    const float* bkp = b + k * bk;
    if constexpr (std::is_same_v<AT, float>) {
      for (int j = 0; j < N_COLS; ++j) {
        const float bv = bkp[j * bj];
        for (int i = 0; i < ROWS; ++i) acc[j][i] += ak[i] * bv;
      }
    } else {
      // Widen column k of the tile's A once, then use it for every column of B. (Kept apart
      // from the float32 loop: GCC compiles that one better without the local copy.)
      float a_k[ROWS];
      for (int i = 0; i < ROWS; ++i) a_k[i] = widen(ak[i]);
      for (int j = 0; j < N_COLS; ++j) {
        const float bv = bkp[j * bj];
        for (int i = 0; i < ROWS; ++i) acc[j][i] += a_k[i] * bv;
      }
    }
  }
  if (m_valid == ROWS) {
    for (int j = 0; j < N_COLS; ++j) {
      float* cj = c + j * ldc;
      if (accumulate)
        for (int i = 0; i < ROWS; ++i) cj[i] += acc[j][i];
      else
        for (int i = 0; i < ROWS; ++i) cj[i] = acc[j][i];
    }
  } else {
    for (int j = 0; j < N_COLS; ++j) {
      float* cj = c + j * ldc;
      for (std::int64_t i = 0; i < m_valid; ++i) cj[i] = accumulate ? cj[i] + acc[j][i] : acc[j][i];
    }
  }
}

// The 16-row tile written with GCC vector types: one 16-float vector per column of the tile
// (one AVX-512 register, two AVX2 registers), because GCC's auto-vectoriser turns the generic
// kernel above with ROWS = 16 into permutes instead of broadcast FMAs. Same sum order: k in
// order from zero, then stored or added to C.
typedef float v16f __attribute__((vector_size(64), aligned(4), may_alias));

//
// `next` (or null): the start of the next tile's B, prefetched one 64-byte line per k step. In
// decode the 16 columns of B are 16 cache rows read 4 bytes at a time, 16 interleaved streams
// that the hardware prefetcher follows poorly; when the rows are contiguous and kc floats long
// (bk = 1, bj = kc), the next tile is exactly 16 * kc * 4 = 64 kc bytes, so it arrives from
// memory while this tile computes.
template <int N_COLS>
[[gnu::always_inline]] inline void micro_kernel16(std::int64_t kc, const float* __restrict a,
                                                  std::int64_t lda, const float* __restrict b,
                                                  std::int64_t bk, std::int64_t bj,
                                                  float* __restrict c, std::int64_t ldc,
                                                  std::int64_t m_valid, bool accumulate,
                                                  const float* next = nullptr) {
  v16f acc[N_COLS];
  for (int j = 0; j < N_COLS; ++j) acc[j] = v16f{};
  for (std::int64_t k = 0; k < kc; ++k) {
    if (next) __builtin_prefetch(reinterpret_cast<const char*>(next) + k * 64);
    const v16f ak = *reinterpret_cast<const v16f*>(a + k * lda);
    const float* bkp = b + k * bk;
    for (int j = 0; j < N_COLS; ++j) acc[j] += ak * bkp[j * bj];
  }
  for (int j = 0; j < N_COLS; ++j) {
    float* cj = c + j * ldc;
    if (m_valid == 16) {
      v16f* cv = reinterpret_cast<v16f*>(cj);
      *cv = accumulate ? *cv + acc[j] : acc[j];
    } else {
      for (std::int64_t i = 0; i < m_valid; ++i) cj[i] = accumulate ? cj[i] + acc[j][i] : acc[j][i];
    }
  }
}

// The body of both gemm_panels (float and bfloat16 A); see gemm.hpp.
template <class AT>
[[gnu::always_inline]] inline void gemm_panels_body(std::int64_t m, std::int64_t n, std::int64_t kc,
                                                    const AT* a, std::int64_t a_panel,
                                                    std::int64_t lda, const float* b,
                                                    std::int64_t b_panel, std::int64_t bk,
                                                    std::int64_t bj, float* c, std::int64_t ldc,
                                                    bool accumulate) {
  for (std::int64_t j0 = 0; j0 < n; j0 += NR) {
    const float* bp = b + (j0 / NR) * b_panel;
    const std::int64_t n_cols = std::min<std::int64_t>(NR, n - j0);
    for (std::int64_t p = 0; p * MR < m; ++p) {
      const AT* ap = a + p * a_panel;
      float* cp = c + p * MR + j0 * ldc;
      const std::int64_t m_valid = std::min<std::int64_t>(MR, m - p * MR);
      switch (n_cols) {
        case 8: micro_kernel<MR, 8, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 7: micro_kernel<MR, 7, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 6: micro_kernel<MR, 6, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 5: micro_kernel<MR, 5, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 4: micro_kernel<MR, 4, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 3: micro_kernel<MR, 3, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        case 2: micro_kernel<MR, 2, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
        default: micro_kernel<MR, 1, AT>(kc, ap, lda, bp, bk, bj, cp, ldc, m_valid, accumulate); break;
      }
    }
  }
}

}  // namespace

DSR1_FAST_CLONES
void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const float* a,
                 std::int64_t a_panel, std::int64_t lda, const float* b, std::int64_t b_panel,
                 std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc, bool accumulate) {
  gemm_panels_body(m, n, kc, a, a_panel, lda, b, b_panel, bk, bj, c, ldc, accumulate);
}

DSR1_FAST_CLONES
void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const std::uint16_t* a,
                 std::int64_t a_panel, std::int64_t lda, const float* b, std::int64_t b_panel,
                 std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc, bool accumulate) {
  gemm_panels_body(m, n, kc, a, a_panel, lda, b, b_panel, bk, bj, c, ldc, accumulate);
}

// The FP8 kernel, once per instruction set: gemm_fp8.inc is compiled three times, for AVX-512
// (x86-64-v4), AVX2 (x86-64-v3) and baseline x86-64, each in its own namespace, and the copy for
// the CPU the program runs on is picked once. (target_clones, used above, cannot be used here:
// the widening uses each instruction set's own intrinsics, see gemm_fp8.inc.)
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v4")
#define DSR1_FP8_ISA 4
namespace isa_v4 {
#include "reference/fast/gemm_fp8.inc"
}  // namespace isa_v4
#undef DSR1_FP8_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("arch=x86-64-v3")
#define DSR1_FP8_ISA 3
namespace isa_v3 {
#include "reference/fast/gemm_fp8.inc"
}  // namespace isa_v3
#undef DSR1_FP8_ISA
#pragma GCC pop_options
#endif
#define DSR1_FP8_ISA 0
namespace isa_base {
#include "reference/fast/gemm_fp8.inc"
}  // namespace isa_base
#undef DSR1_FP8_ISA

namespace {
using Fp8Panels = void (*)(std::int64_t, std::int64_t, std::int64_t, const std::uint8_t*,
                           std::int64_t, std::int64_t, const float*, std::int64_t, const float*,
                           std::int64_t, std::int64_t, std::int64_t, float*, std::int64_t, bool,
                           bool);
// Every copy this CPU runs, best first.
std::vector<std::pair<std::string, Fp8Panels>> fp8_copies() {
  std::vector<std::pair<std::string, Fp8Panels>> copies;
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("x86-64-v4")) copies.emplace_back("x86-64-v4", isa_v4::gemm_panels_fp8);
  if (__builtin_cpu_supports("x86-64-v3")) copies.emplace_back("x86-64-v3", isa_v3::gemm_panels_fp8);
#endif
  copies.emplace_back("x86-64", isa_base::gemm_panels_fp8);
  return copies;
}
Fp8Panels pick_fp8_panels() { return fp8_copies().front().second; }
}  // namespace

std::vector<std::string> fp8_kernel_isas() {
  std::vector<std::string> names;
  for (const auto& c : fp8_copies()) names.push_back(c.first);
  return names;
}

void gemm_panels_fp8_isa(const std::string& isa, std::int64_t m, std::int64_t n, std::int64_t kc,
                         const std::uint8_t* a, std::int64_t a_panel, std::int64_t lda,
                         const float* scale, std::int64_t scale_panel, const float* b,
                         std::int64_t b_panel, std::int64_t bk, std::int64_t bj, float* c,
                         std::int64_t ldc, bool accumulate, bool b_scaled) {
  for (const auto& [name, f] : fp8_copies())
    if (name == isa)
      return f(m, n, kc, a, a_panel, lda, scale, scale_panel, b, b_panel, bk, bj, c, ldc,
               accumulate, b_scaled);
  throw std::invalid_argument(fmt::format("fast::gemm_panels_fp8_isa: this CPU has no FP8 kernel for '{}'", isa));
}

void gemm_panels(std::int64_t m, std::int64_t n, std::int64_t kc, const std::uint8_t* a,
                 std::int64_t a_panel, std::int64_t lda, const float* scale,
                 std::int64_t scale_panel, const float* b, std::int64_t b_panel, std::int64_t bk,
                 std::int64_t bj, float* c, std::int64_t ldc, bool accumulate, bool b_scaled) {
  static const Fp8Panels impl = pick_fp8_panels();
  impl(m, n, kc, a, a_panel, lda, scale, scale_panel, b, b_panel, bk, bj, c, ldc, accumulate,
       b_scaled);
}

float e4m3_to_float(std::uint8_t q) {
  // Through the kernel this CPU uses: a 1 x 1 product of the weight q, scale 1, with input 1
  // (row 0 is at slot fp8_slot(0) = 0).
  std::uint8_t a[MR] = {q};
  float scale[MR], b[NR] = {1.0f}, c[MR];
  std::fill(scale, scale + MR, 1.0f);
  gemm_panels(1, 1, 1, a, MR, MR, scale, MR, b, NR, 1, 1, c, MR, false, false);
  return c[0];
}

DSR1_FAST_CLONES
void gemm_rows16(std::int64_t m, std::int64_t n, std::int64_t kc, const float* a, std::int64_t lda,
                 const float* b, std::int64_t bk, std::int64_t bj, float* c, std::int64_t ldc,
                 bool accumulate) {
  std::int64_t j0 = 0;
  for (; j0 + 16 <= n; j0 += 16)
    micro_kernel16<16>(kc, a, lda, b + j0 * bj, bk, bj, c + j0 * ldc, ldc, m, accumulate,
                       b + (j0 + 16) * bj);
  // The last n % 16 columns as tiles of 8, 4, 2 and 1.
  if (n - j0 >= 8) {
    micro_kernel16<8>(kc, a, lda, b + j0 * bj, bk, bj, c + j0 * ldc, ldc, m, accumulate);
    j0 += 8;
  }
  if (n - j0 >= 4) {
    micro_kernel16<4>(kc, a, lda, b + j0 * bj, bk, bj, c + j0 * ldc, ldc, m, accumulate);
    j0 += 4;
  }
  if (n - j0 >= 2) {
    micro_kernel16<2>(kc, a, lda, b + j0 * bj, bk, bj, c + j0 * ldc, ldc, m, accumulate);
    j0 += 2;
  }
  if (n - j0 >= 1) micro_kernel16<1>(kc, a, lda, b + j0 * bj, bk, bj, c + j0 * ldc, ldc, m, accumulate);
}

const char* to_string(WeightType t) {
  switch (t) {
    case WeightType::BF16: return "bf16";
    case WeightType::FP8: return "fp8";
    default: return "f32";
  }
}

WeightType weight_type_from_string(const std::string& s) {
  if (s == "f32") return WeightType::F32;
  if (s == "bf16") return WeightType::BF16;
  if (s == "fp8") return WeightType::FP8;
  throw std::invalid_argument(fmt::format("weight type '{}': expected f32, bf16 or fp8", s));
}

PackedMatrix make_packed(std::int64_t M, std::int64_t K, WeightType type, std::int64_t B) {
  if (M < 0 || K < 0 || (type == WeightType::FP8 && B < 1))
    throw std::invalid_argument(fmt::format(
        "fast::make_packed: [{} x {}] {} with scale block {}: sizes must be >= 0 and an FP8 "
        "matrix needs a block >= 1", M, K, to_string(type), B));
  PackedMatrix P;
  P.rows = M;
  P.cols = K;
  P.type = type;
  const std::size_t n = static_cast<std::size_t>(P.n_panels() * K * MR);
  switch (type) {
    case WeightType::F32: P.panels.assign(n, 0.0f); break;
    case WeightType::BF16: P.panels_bf16.assign(n, 0); break;
    case WeightType::FP8:
      P.block = B;
      P.panels_fp8.assign(n, 0);
      P.scales.assign(static_cast<std::size_t>(P.n_panels() * P.n_kblocks() * MR), 0.0f);
      break;
  }
  return P;
}

namespace {

void check_rows(const PackedMatrix& P, std::int64_t r0, std::int64_t n, const char* fn) {
  if (r0 < 0 || n < 0 || r0 + n > P.rows)
    throw std::invalid_argument(fmt::format("fast::{}: rows {}..{} of a matrix with {} rows", fn,
                                            r0, r0 + n - 1, P.rows));
}

// Where W(i, k) lives in the panels: (i / MR) * K * MR + k * MR + i % MR.
std::size_t at(const PackedMatrix& P, std::int64_t i, std::int64_t k) {
  return static_cast<std::size_t>((i / MR) * P.cols * MR + k * MR + i % MR);
}

}  // namespace

void pack_rows(PackedMatrix& P, std::int64_t r0, std::int64_t n, const double* values) {
  check_rows(P, r0, n, "pack_rows");
  if (P.type == WeightType::FP8)
    throw std::invalid_argument("fast::pack_rows: an FP8 matrix takes codes and scales (pack_rows_fp8)");
  // In tiles of (the rows of one panel) x 64 columns, so that the 64 lines of the panel a tile
  // writes stay in L1 while its rows fill them (row by row over all K, each write would miss).
  const std::int64_t K = P.cols;
  for (std::int64_t i0 = 0; i0 < n;) {
    const std::int64_t r = r0 + i0, rows = std::min(n - i0, MR - r % MR);
    for (std::int64_t k0 = 0; k0 < K; k0 += 64) {
      const std::int64_t k1 = std::min(K, k0 + 64);
      for (std::int64_t i = 0; i < rows; ++i) {
        const double* v = values + (i0 + i) * K;
        const std::size_t base = at(P, r + i, 0);
        if (P.type == WeightType::BF16)
          for (std::int64_t k = k0; k < k1; ++k)
            P.panels_bf16[base + k * MR] = safetensors::encode_bf16(static_cast<float>(v[k]));
        else
          for (std::int64_t k = k0; k < k1; ++k) P.panels[base + k * MR] = static_cast<float>(v[k]);
      }
    }
    i0 += rows;
  }
}

void pack_rows_bf16(PackedMatrix& P, std::int64_t r0, std::int64_t n, const std::uint16_t* bits) {
  check_rows(P, r0, n, "pack_rows_bf16");
  if (P.type == WeightType::FP8)
    throw std::invalid_argument("fast::pack_rows_bf16: an FP8 matrix takes codes and scales (pack_rows_fp8)");
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t k = 0; k < P.cols; ++k) {
      const std::uint16_t b = bits[i * P.cols + k];
      if (P.type == WeightType::BF16) P.panels_bf16[at(P, r0 + i, k)] = b;
      else P.panels[at(P, r0 + i, k)] = widen(b);
    }
}

void pack_rows_fp8(PackedMatrix& P, std::int64_t r0, std::int64_t n, const std::uint8_t* codes,
                   const float* row_scales, const std::string& what) {
  check_rows(P, r0, n, "pack_rows_fp8");
  if (P.type != WeightType::FP8)
    throw std::invalid_argument(fmt::format("fast::pack_rows_fp8: {}: the matrix is {}, not fp8",
                                            what, to_string(P.type)));
  const std::int64_t K = P.cols, n_kb = P.n_kblocks();
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int64_t r = r0 + i;
    for (std::int64_t k = 0; k < K; ++k) {
      const std::uint8_t q = codes[i * K + k];
      if ((q & 0x7F) == 0x7F)
        throw std::invalid_argument(fmt::format(
            "{}: element ({}, {}) is the e4m3 NaN code 0x{:02X}, expected a finite value", what, i, k, q));
      P.panels_fp8[static_cast<std::size_t>((r / MR) * K * MR + k * MR + fp8_slot(r % MR))] = q;
    }
    for (std::int64_t b = 0; b < n_kb; ++b) {
      const float s = row_scales[i * n_kb + b];
      if (!std::isfinite(s) || s < 0)
        throw std::invalid_argument(fmt::format(
            "{}: the scale of row {}, column block {} is {}, expected a finite scale >= 0", what,
            i, b, s));
      P.scales[static_cast<std::size_t>((r / MR) * n_kb * MR + b * MR + r % MR)] = s;
    }
  }
}

namespace {
// Packs W into MR-row panels (W(i, k) at (i / MR) * K * MR + k * MR + i % MR), padding rows zero.
template <class Mat>
PackedMatrix pack_any(const Mat& W, WeightType type) {
  if (type == WeightType::FP8)
    throw std::invalid_argument(
        "fast::pack_matrix: FP8 weights are packed from their codes and scales (pack_rows_fp8)");
  PackedMatrix P = make_packed(static_cast<std::int64_t>(W.n_rows), static_cast<std::int64_t>(W.n_cols), type);
  const auto* w = W.memptr();
  for (std::int64_t k = 0; k < P.cols; ++k)
    for (std::int64_t i = 0; i < P.rows; ++i) {
      const float v = static_cast<float>(w[i + k * P.rows]);
      if (type == WeightType::BF16) P.panels_bf16[at(P, i, k)] = safetensors::encode_bf16(v);
      else P.panels[at(P, i, k)] = v;
    }
  return P;
}
}  // namespace

PackedMatrix pack_matrix(const arma::mat& W, WeightType type) { return pack_any(W, type); }
PackedMatrix pack_matrix(const arma::fmat& W, WeightType type) { return pack_any(W, type); }

namespace {

#if defined(__SSE2__)
// Byte transpose of a 16 x 16 tile: out[c] byte r = in[r] byte c. Four rounds of SSE2 unpacks,
// each doubling the width of the units that hold one column: 8, 16, 32, 64 bits.
inline void transpose16x16_u8(const __m128i in[16], __m128i out[16]) {
  __m128i a[16], b[16], e[16];
  for (int i = 0; i < 8; ++i) {  // rows 2i, 2i+1; a[h*8 + i]: columns 8h .. 8h+7
    a[i] = _mm_unpacklo_epi8(in[2 * i], in[2 * i + 1]);
    a[8 + i] = _mm_unpackhi_epi8(in[2 * i], in[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h)
    for (int q = 0; q < 4; ++q) {  // rows 4q .. 4q+3; b[g*4 + q]: columns 4g .. 4g+3
      b[h * 8 + q] = _mm_unpacklo_epi16(a[h * 8 + 2 * q], a[h * 8 + 2 * q + 1]);
      b[h * 8 + 4 + q] = _mm_unpackhi_epi16(a[h * 8 + 2 * q], a[h * 8 + 2 * q + 1]);
    }
  for (int g = 0; g < 4; ++g)
    for (int o = 0; o < 2; ++o) {  // rows 8o .. 8o+7; e[p*2 + o]: columns 2p, 2p+1
      e[g * 4 + o] = _mm_unpacklo_epi32(b[g * 4 + 2 * o], b[g * 4 + 2 * o + 1]);
      e[g * 4 + 2 + o] = _mm_unpackhi_epi32(b[g * 4 + 2 * o], b[g * 4 + 2 * o + 1]);
    }
  for (int p = 0; p < 8; ++p) {
    out[2 * p] = _mm_unpacklo_epi64(e[p * 2], e[p * 2 + 1]);
    out[2 * p + 1] = _mm_unpackhi_epi64(e[p * 2], e[p * 2 + 1]);
  }
}

// The same for 16-bit values, 8 x 8: out[c] element r = in[r] element c.
inline void transpose8x8_u16(const __m128i in[8], __m128i out[8]) {
  __m128i a[8], b[8];
  for (int i = 0; i < 4; ++i) {  // rows 2i, 2i+1; a[h*4 + i]: columns 4h .. 4h+3
    a[i] = _mm_unpacklo_epi16(in[2 * i], in[2 * i + 1]);
    a[4 + i] = _mm_unpackhi_epi16(in[2 * i], in[2 * i + 1]);
  }
  for (int h = 0; h < 2; ++h)
    for (int q = 0; q < 2; ++q) {  // rows 4q .. 4q+3; b[p*2 + q]: columns 2p, 2p+1
      b[h * 4 + q] = _mm_unpacklo_epi32(a[h * 4 + 2 * q], a[h * 4 + 2 * q + 1]);
      b[h * 4 + 2 + q] = _mm_unpackhi_epi32(a[h * 4 + 2 * q], a[h * 4 + 2 * q + 1]);
    }
  for (int p = 0; p < 4; ++p) {
    out[2 * p] = _mm_unpacklo_epi64(b[p * 2], b[p * 2 + 1]);
    out[2 * p + 1] = _mm_unpackhi_epi64(b[p * 2], b[p * 2 + 1]);
  }
}

// One full 32-row panel of bfloat16 rows r0 .. r0+31, columns k0 .. k0+kk-1 (kk a multiple of
// 8), into dst[k * MR + r]: 8 x 8 transposes of each group of 8 rows.
void pack_panel_bf16_sse2(const PackedMatrix& W, std::int64_t r0, std::int64_t k0,
                          std::int64_t kk, std::uint16_t* dst) {
  __m128i in[8], out[8];
  for (std::int64_t k = 0; k < kk; k += 8)
    for (int g = 0; g < 4; ++g) {
      for (int r = 0; r < 8; ++r) {
        const std::uint8_t* src = W.row_data[r0 + g * 8 + r] + (k0 + k) * 2;
        if (k % 32 == 0) __builtin_prefetch(src + 1024);  // as for FP8 panels: 32 streams
        in[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
      }
      transpose8x8_u16(in, out);
      for (int c = 0; c < 8; ++c)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (k + c) * MR + g * 8), out[c]);
    }
}

// One 32-row panel of e4m3 rows r0 .. r0+m-1 (m <= 32; missing rows zero), columns
// k0 .. k0+kk-1 (kk a multiple of 16), into dst[k * MR + fp8_slot(r)]: rows 0-15 and 16-31
// transposed 16 x 16 at a time, then each column's two halves interleaved 4 bytes at a time,
// which is the fp8_slot order. Returns false if a code is the e4m3 NaN.
bool pack_panel_fp8_sse2(const PackedMatrix& W, std::int64_t r0, std::int64_t m, std::int64_t k0,
                         std::int64_t kk, std::uint8_t* dst) {
  __m128i in[16], lo[16], hi[16];
  __m128i nan = _mm_setzero_si128();
  const __m128i mask = _mm_set1_epi8(0x7F);
  for (std::int64_t k = 0; k < kk; k += 16) {
    for (int half = 0; half < 2; ++half) {
      for (int r = 0; r < 16; ++r) {
        const std::int64_t i = half * 16 + r;
        if (i < m) {
          const std::uint8_t* src = W.row_data[r0 + i] + k0 + k;
          // 32 rows are 32 streams, more than the hardware prefetcher follows: ask for the
          // line four blocks ahead (past the row's end it is a hint the CPU ignores).
          if (k % 64 == 0) __builtin_prefetch(src + 512);
          in[r] = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src));
        } else {
          in[r] = _mm_setzero_si128();
        }
        nan = _mm_or_si128(nan, _mm_cmpeq_epi8(_mm_and_si128(in[r], mask), mask));
      }
      transpose16x16_u8(in, half == 0 ? lo : hi);
    }
    for (int c = 0; c < 16; ++c) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (k + c) * MR), _mm_unpacklo_epi32(lo[c], hi[c]));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + (k + c) * MR + 16), _mm_unpackhi_epi32(lo[c], hi[c]));
    }
  }
  return _mm_movemask_epi8(nan) == 0;
}
#endif

// Rows r0 .. r0+m-1, columns k0 .. k0+kk-1 of a view (gemm.hpp) packed into ceil(m/MR) panels
// of kk x MR values, exactly the layout of a packed matrix's panels with K = kk (padding rows
// zero): A(i, k) at (i / MR) * kk * MR + k * MR + i % MR, FP8 codes at fp8_slot(i % MR). FP8
// (kk at most one scale block, k0 on a block boundary): scale[(i / MR) * MR + i % MR] = row i's
// scale of block k0 / B. Returns false if an FP8 code is the e4m3 NaN (0x7F, 0xFF).
template <class T>
void pack_view_values(const PackedMatrix& W, std::int64_t r0, std::int64_t m, std::int64_t k0,
                      std::int64_t kk, T* dst) {
  const std::int64_t panels = (m + MR - 1) / MR;
#if defined(__SSE2__)
  if constexpr (std::is_same_v<T, std::uint16_t>) {
    if (kk % 8 == 0) {  // whole panels transposed 8 x 8, the last partial one below
      const std::int64_t full = m / MR;
      for (std::int64_t p = 0; p < full; ++p) pack_panel_bf16_sse2(W, r0 + p * MR, k0, kk, dst + p * kk * MR);
      if (full == panels) return;
      dst += full * kk * MR;
      r0 += full * MR;
      m -= full * MR;
    }
  }
#endif
  std::fill(dst, dst + ((m + MR - 1) / MR) * kk * MR, T{});
  for (std::int64_t i = 0; i < m; ++i) {
    T row[256];  // the row's slice, read in pieces (any alignment in the source)
    T* out = dst + (i / MR) * kk * MR + i % MR;
    const std::uint8_t* src = W.row_data[r0 + i] + k0 * static_cast<std::int64_t>(sizeof(T));
    for (std::int64_t k = 0; k < kk; k += 256) {
      const std::int64_t n = std::min<std::int64_t>(256, kk - k);
      std::memcpy(row, src + k * static_cast<std::int64_t>(sizeof(T)), n * sizeof(T));
      for (std::int64_t j = 0; j < n; ++j) out[(k + j) * MR] = row[j];
    }
  }
}

bool pack_view_fp8(const PackedMatrix& W, std::int64_t r0, std::int64_t m, std::int64_t k0,
                   std::int64_t kk, std::uint8_t* dst, float* scale) {
  const std::int64_t panels = (m + MR - 1) / MR, b = k0 / W.block;
  std::fill(scale, scale + panels * MR, 0.0f);
  for (std::int64_t i = 0; i < m; ++i) scale[(i / MR) * MR + i % MR] = W.row_scales[r0 + i][b];
#if defined(__SSE2__)
  if (kk % 16 == 0) {
    bool ok = true;
    for (std::int64_t p = 0; p < panels; ++p)
      ok &= pack_panel_fp8_sse2(W, r0 + p * MR, std::min(MR, m - p * MR), k0, kk, dst + p * kk * MR);
    return ok;
  }
#endif
  std::fill(dst, dst + panels * kk * MR, std::uint8_t{0});
  unsigned nan = 0;
  for (std::int64_t i = 0; i < m; ++i) {
    std::uint8_t* out = dst + (i / MR) * kk * MR + fp8_slot(i % MR);
    const std::uint8_t* src = W.row_data[r0 + i] + k0;
    for (std::int64_t k = 0; k < kk; ++k) {
      const std::uint8_t q = src[k];
      nan |= (q & 0x7Fu) == 0x7Fu;
      out[k * MR] = q;
    }
  }
  return nan == 0;
}

// Names the first NaN code of a view's rows r0 .. r0+m-1, columns k0 .. k0+kk-1 (an error).
[[noreturn]] void throw_nan_code(const PackedMatrix& W, std::int64_t r0, std::int64_t m,
                                 std::int64_t k0, std::int64_t kk) {
  for (std::int64_t i = 0; i < m; ++i)
    for (std::int64_t k = 0; k < kk; ++k) {
      const std::uint8_t q = W.row_data[r0 + i][k0 + k];
      if ((q & 0x7F) == 0x7F)
        throw std::runtime_error(fmt::format(
            "{}: element ({}, {}) of the [{} x {}] matrix is the e4m3 NaN code 0x{:02X}, "
            "expected a finite value", W.name, r0 + i, k0 + k, W.rows, W.cols, q));
    }
  throw std::logic_error("fast::gemm: NaN code reported but not found");
}

}  // namespace

void gemm(const PackedMatrix& W, const float* X, std::int64_t ldx, std::int64_t N, float* Y,
          std::int64_t ldy, bool accumulate, const Options& opt) {
  const std::int64_t M = W.rows, K = W.cols;
  if (ldx < K || ldy < M || N < 0)
    throw std::invalid_argument(fmt::format(
        "fast::gemm: W is [{} x {}], X has column stride {} (expected >= K={}), Y has column "
        "stride {} (expected >= M={}), N = {}",
        M, K, ldx, K, ldy, M, N));
  if (opt.mc < 1 || opt.nc < 1 || opt.kc < 1)
    throw std::invalid_argument(fmt::format(
        "fast::gemm: block sizes mc={}, nc={}, kc={} must all be >= 1", opt.mc, opt.nc, opt.kc));
  if (M == 0 || N == 0) return;
  if (K == 0) {  // an empty sum: Y = 0 (or unchanged)
    if (!accumulate)
      for (std::int64_t j = 0; j < N; ++j) std::fill(Y + j * ldy, Y + j * ldy + M, 0.0f);
    return;
  }
  const std::int64_t mc = (opt.mc + MR - 1) / MR * MR;  // whole panels per task
  const std::int64_t kc = opt.kc;
  // X is read as panels of NR columns, B(k, j) at xb[(j / NR) * b_panel + k * bk + (j % NR) * bj].
  // One column (decode) is read in place. Otherwise X is packed ONCE for the whole product
  // (X(k, j) at (j / NR) * K * NR + k * NR + j % NR), in parallel over panels, so that every
  // task reads packed panels instead of re-packing its block; a task then covers whole panels
  // (nc rounded up to a multiple of NR). Packing only copies, and mc / nc only decide which task
  // computes an element, so the bits still depend on kc alone.
  const float* xb = X;
  std::int64_t b_panel = 0, bk = 1, bj = ldx, nc = opt.nc;
  thread_local std::vector<float> packed_x;  // the calling thread's buffer (workers get a pointer)
  // FP8: the kernel widens each code to its value times 2^-120 and needs a factor 2^120 back
  // (gemm_fp8.inc). Applied to X (x_scale) it costs one multiplication per input instead of one
  // per weight, which is what decode spends its time on; x 2^120 must stay finite, so only
  // when every |X| < 2^7 (else the kernel multiplies). Either way each product is the same real
  // number, rounded once in the same sum: the same bits.
  float x_scale = 1.0f;
  if (W.type == WeightType::FP8) {
    float x_max = 0.0f;
    for (std::int64_t j = 0; j < N; ++j)
      for (std::int64_t k = 0; k < K; ++k) x_max = std::max(x_max, std::fabs(X[j * ldx + k]));
    if (x_max < 0x1p7f) x_scale = 0x1p120f;  // false for NaN too
  }
  if (N > 1) {
    const std::int64_t x_panels = (N + NR - 1) / NR;
    packed_x.resize(static_cast<std::size_t>(x_panels * K * NR));  // padding columns are never read
    float* px = packed_x.data();
    parallel_for(opt.threads, x_panels, [&, px](std::int64_t p) {
      const std::int64_t n = std::min(NR, N - p * NR);
      float* dst = px + p * K * NR;
      for (std::int64_t j = 0; j < n; ++j) {
        const float* xj = X + (p * NR + j) * ldx;
        for (std::int64_t k = 0; k < K; ++k) dst[k * NR + j] = xj[k] * x_scale;
      }
    });
    xb = px;
    b_panel = K * NR, bk = NR, bj = 1;
    nc = (nc + NR - 1) / NR * NR;
  } else if (x_scale != 1.0f) {  // one column, scaled into the buffer
    packed_x.resize(static_cast<std::size_t>(K));
    for (std::int64_t k = 0; k < K; ++k) packed_x[k] = X[k] * x_scale;
    xb = packed_x.data();
    bj = K;
  }
  const bool b_scaled = x_scale != 1.0f;
  const std::int64_t row_blocks = (M + mc - 1) / mc, col_blocks = (N + nc - 1) / nc;
  parallel_for(opt.threads, row_blocks * col_blocks, [&](std::int64_t task) {
    const std::int64_t r0 = (task % row_blocks) * mc, c0 = (task / row_blocks) * nc;
    const std::int64_t m = std::min(mc, M - r0), n = std::min(nc, N - c0);
    const float* xc = xb + (c0 / NR) * b_panel;  // c0 is 0 or a multiple of NR
    // With at most NR columns (decode) each 32-row panel goes through all of K before the next
    // panel, so its weights are read as one sequential stream: bursts of one slice of four
    // interleaved panels (4 KB with FP8) kept the hardware prefetcher from following them, and
    // FP8 decode waited on its loads. Every element's sum still runs slice after slice.
    const std::int64_t rows_step = n <= NR ? MR : m;
    if (W.is_view()) {
      // Rows where they lie: each slice of each row step packed into this thread's buffer of
      // at most mc x max(kc, B) values, then the same kernel call as for a packed matrix.
      thread_local std::vector<std::uint8_t> abuf;
      thread_local std::vector<float> sbuf;
      const std::int64_t slice = W.type == WeightType::FP8 ? W.block : kc;
      const std::int64_t esize = W.type == WeightType::F32 ? 4 : W.type == WeightType::BF16 ? 2 : 1;
      for (std::int64_t i0 = 0; i0 < m; i0 += rows_step) {
        const std::int64_t mm = std::min(rows_step, m - i0), panels = (mm + MR - 1) / MR;
        float* y = Y + r0 + i0 + c0 * ldy;
        for (std::int64_t k0 = 0; k0 < K; k0 += slice) {
          const std::int64_t kk = std::min(slice, K - k0);
          abuf.resize(static_cast<std::size_t>(panels * kk * MR * esize));
          const bool acc = accumulate || k0 > 0;
          if (W.type == WeightType::FP8) {
            sbuf.resize(static_cast<std::size_t>(panels * MR));
            if (!pack_view_fp8(W, r0 + i0, mm, k0, kk, abuf.data(), sbuf.data()))
              throw_nan_code(W, r0 + i0, mm, k0, kk);
            gemm_panels(mm, n, kk, abuf.data(), kk * MR, MR, sbuf.data(), MR, xc + k0 * bk,
                        b_panel, bk, bj, y, ldy, acc, b_scaled);
          } else if (W.type == WeightType::BF16) {
            auto* a = reinterpret_cast<std::uint16_t*>(abuf.data());
            pack_view_values(W, r0 + i0, mm, k0, kk, a);
            gemm_panels(mm, n, kk, a, kk * MR, MR, xc + k0 * bk, b_panel, bk, bj, y, ldy, acc);
          } else {
            auto* a = reinterpret_cast<float*>(abuf.data());
            pack_view_values(W, r0 + i0, mm, k0, kk, a);
            gemm_panels(mm, n, kk, a, kk * MR, MR, xc + k0 * bk, b_panel, bk, bj, y, ldy, acc);
          }
        }
      }
      return;
    }
    if (W.type == WeightType::FP8) {
      // One slice per scale block: its sum times each row's scale, added to Y block after block.
      const std::int64_t B = W.block, scale_panel = W.n_kblocks() * MR;
      for (std::int64_t i0 = 0; i0 < m; i0 += rows_step)
        for (std::int64_t k0 = 0; k0 < K; k0 += B)
          gemm_panels(std::min(rows_step, m - i0), n, std::min(B, K - k0),
                      W.panel_fp8((r0 + i0) / MR) + k0 * MR, K * MR, MR,
                      W.panel_scales((r0 + i0) / MR) + (k0 / B) * MR, scale_panel, xc + k0 * bk,
                      b_panel, bk, bj, Y + r0 + i0 + c0 * ldy, ldy, accumulate || k0 > 0, b_scaled);
      return;
    }
    for (std::int64_t i0 = 0; i0 < m; i0 += rows_step)
      for (std::int64_t k0 = 0; k0 < K; k0 += kc) {
        const std::int64_t kk = std::min(kc, K - k0), mm = std::min(rows_step, m - i0);
        float* y = Y + r0 + i0 + c0 * ldy;
        if (W.type == WeightType::BF16)
          gemm_panels(mm, n, kk, W.panel_bf16((r0 + i0) / MR) + k0 * MR, K * MR, MR, xc + k0 * bk,
                      b_panel, bk, bj, y, ldy, accumulate || k0 > 0);
        else
          gemm_panels(mm, n, kk, W.panel((r0 + i0) / MR) + k0 * MR, K * MR, MR, xc + k0 * bk,
                      b_panel, bk, bj, y, ldy, accumulate || k0 > 0);
      }
  });
}

arma::fmat gemm(const PackedMatrix& W, const arma::fmat& X, const Options& opt) {
  if (static_cast<std::int64_t>(X.n_rows) != W.cols)
    throw std::invalid_argument(fmt::format("fast::gemm: W is [{} x {}] but X is [{} x {}]",
                                            W.rows, W.cols, X.n_rows, X.n_cols));
  // Every element is written by the product: no zero-filling first (Armadillo fills new matrices
  // with zeros, a pass over Y as long as the head's logits: 32 MB for 1024 tokens of the bench).
  arma::fmat Y(static_cast<arma::uword>(W.rows), X.n_cols, arma::fill::none);
  gemm(W, X.memptr(), W.cols, static_cast<std::int64_t>(X.n_cols), Y.memptr(), W.rows, false, opt);
  return Y;
}

}  // namespace dsr1::fast
