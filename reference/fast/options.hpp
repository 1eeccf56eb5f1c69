// The one options struct of the fast path: thread count and block sizes.
// Leaves out: nothing numeric; results depend on the block sizes (they fix the order of every
// sum) but never on the thread count.
//
// Why results do not depend on `threads`: every parallel loop in reference/fast/ splits its work
// into tasks whose boundaries come from the block sizes below (never from the thread count),
// each output element belongs to exactly one task, and a task computes its elements in a fixed
// order. Threads only decide WHO runs a task, never WHAT it computes, so 1, 2 or 7 threads
// produce the same bits. One reduction is split across tasks: the keys of the decode softmax
// (mla.hpp), cut into blocks of decode_kb keys whose partial results are then combined by one
// thread in block order; the blocks, and so the bits, depend on decode_kb, not on `threads`.
#pragma once

#include <cstdint>

namespace dsr1::fast {

struct StageTimes;  // stage_times.hpp

struct Options {
  int threads = 1;             // worker threads (the caller counts as one)
  // Matrix products Y = W X (gemm.hpp): a task is an mc x nc block of Y; the inner dimension
  // is walked in kc-long slices (partial sums are added to Y slice after slice).
  std::int64_t mc = 128;       // rows of Y per task (rounded up to a multiple of gemm::MR)
  std::int64_t nc = 256;       // columns (tokens) of Y per task (W is streamed once per nc tokens)
  std::int64_t kc = 256;       // inner-dimension slice
  // Attention (mla.hpp): a prefill task is (query block) x (head group); keys are visited in
  // blocks of attn_kb with the online softmax.
  std::int64_t attn_qb = 16;   // queries per task
  std::int64_t attn_heads = 4; // heads per task
  std::int64_t attn_kb = 64;   // keys per block
  // Decode (a single new token): one task per block of decode_kb keys (scores, the block's
  // softmax and its part of z), merged in block order (mla.hpp).
  std::int64_t decode_kb = 512;
  // Where the wall time of a pass goes, by stage (stage_times.hpp; dsr1 bench); null: not timed.
  StageTimes* times = nullptr;
};

}  // namespace dsr1::fast
