// How the dsr1 program asks the C library to manage the memory of a full-scale run.
// Leaves out: any allocation of its own; these are two switches on glibc's allocator.
//
// Why: a full-scale run fills every layer's matrices afresh (hundreds of MB each, in double) and
// frees them after the layer; the next layer asks for the same sizes again. By default glibc
// serves each such request with a fresh mmap and unmaps it on free, so every layer pays for
// every page it touches: a page fault and a kernel-zeroed page per 4 KB. Measured on a 4-layer
// R1-width run, that was more time than generating the weights (docs/model.md, "Working set").
// Keeping large freed blocks in the heap lets layer l+1 reuse layer l's pages.
//
// The price is fragmentation across forward passes: what one pass keeps (logits, traced tensors,
// the KV cache) lands between the blocks the next pass wants. So at the start of every pass the
// free pages are handed back once; within a pass they are reused layer after layer.
#pragma once

namespace dsr1 {

// Large blocks come from the heap instead of mmap and stay there when freed (mallopt).
// Called once, at the start of the program.
void keep_freed_memory_for_reuse();

// Hands every free page of the heap back to the kernel (malloc_trim): called when a forward
// pass begins, so that the resident set stays one pass's working set.
void release_freed_memory();

}  // namespace dsr1
