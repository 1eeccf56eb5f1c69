// The float32 latent KV cache of one MLA layer for the fast path; mirrors reference/deepseek/kv_cache.hpp.
// Leaves out: paging and quantisation; one contiguous buffer per layer.
//
// Layout: token-major, one row of D = r_kv + d_rope floats per cached token:
//   row j = [ c_kv_hat_j (r_kv floats) ; k_rope_j (d_rope floats) ],   at data()[j * D]
// so the keys of a block of tokens are one contiguous run of memory (attention streams it), and
// the buffer ends with MR floats of zero slack so that the attention kernel may load whole
// 32-row panels of the last row's latent (it never uses the values beyond r_kv).
// Memory: bytes(T) = (T * (r_kv + d_rope) + MR) * 4 per layer: linear in the context length.
#pragma once

#include <cstdint>
#include <fmt/format.h>
#include <stdexcept>
#include <vector>

#include "reference/fast/gemm.hpp"

namespace dsr1::fast {

class LatentKvCache {
 public:
  LatentKvCache() = default;
  LatentKvCache(std::int64_t r_kv, std::int64_t d_rope) : r_kv_(r_kv), d_rope_(d_rope) {
    if (r_kv <= 0 || d_rope <= 0)
      throw std::invalid_argument(fmt::format(
          "fast::LatentKvCache: r_kv = {}, d_rope = {}, expected both > 0", r_kv, d_rope));
    data_.assign(MR, 0.0f);
  }

  std::int64_t r_kv() const { return r_kv_; }
  std::int64_t d_rope() const { return d_rope_; }
  std::int64_t row_floats() const { return r_kv_ + d_rope_; }  // D
  std::int64_t length() const { return length_; }              // tokens cached = next position

  // Makes room for `tokens` tokens in total without reallocating later.
  void reserve(std::int64_t tokens) {
    data_.reserve(static_cast<std::size_t>(tokens * row_floats() + MR));
  }
  // Appends `n` zero rows and returns a pointer to the first; the caller fills them.
  float* append_rows(std::int64_t n) {
    if (r_kv_ <= 0) throw std::logic_error("fast::LatentKvCache: append to an unshaped cache");
    const std::int64_t D = row_floats();
    data_.resize(static_cast<std::size_t>((length_ + n) * D + MR), 0.0f);
    float* first = data_.data() + length_ * D;
    for (std::int64_t i = 0; i < n * D + MR; ++i) first[i] = 0.0f;
    length_ += n;
    return first;
  }
  const float* row(std::int64_t j) const { return data_.data() + j * row_floats(); }
  float* row(std::int64_t j) { return data_.data() + j * row_floats(); }

  // Bytes held for `tokens` tokens: the memory formula of the layout above.
  static std::int64_t bytes_for(std::int64_t tokens, std::int64_t r_kv, std::int64_t d_rope) {
    return (tokens * (r_kv + d_rope) + MR) * static_cast<std::int64_t>(sizeof(float));
  }
  std::int64_t bytes_allocated() const {
    return static_cast<std::int64_t>(data_.capacity() * sizeof(float));
  }

 private:
  std::int64_t r_kv_ = 0, d_rope_ = 0, length_ = 0;
  std::vector<float> data_;
};

}  // namespace dsr1::fast
