#include "reference/io/memory_reuse.hpp"

#include <malloc.h>

namespace dsr1 {

void keep_freed_memory_for_reuse() {
  mallopt(M_MMAP_MAX, 0);         // large blocks come from the heap, not from their own mmap
  mallopt(M_TRIM_THRESHOLD, -1);  // and freeing them does not shrink the heap (man mallopt)
}

void release_freed_memory() { malloc_trim(0); }

}  // namespace dsr1
