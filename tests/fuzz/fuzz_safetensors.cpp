// Fuzz target: the safetensors header and tensor table (reference/io/safetensors.hpp,
// parse_header), then the decoding of every tensor it accepts.
// Properties: accepted tensors lie inside the image, do not overlap, come in data order, and
// decode to exactly numel values.
#include "reference/io/safetensors.hpp"
#include "tests/fuzz/fuzz.hpp"

namespace st = dsr1::safetensors;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string origin = "fuzz.safetensors";
  dsr1::fuzz::expect_value_or_clear_error(origin, [&] {
    const st::Header h = st::parse_header(data, size, origin);
    FUZZ_CHECK(h.data_start >= 8 && h.data_start <= size);
    std::uint64_t previous_end = 0;
    for (const st::TensorInfo& t : h.tensors) {
      FUZZ_CHECK(t.begin <= t.end && t.end <= size - h.data_start);
      FUZZ_CHECK(t.end - t.begin == t.numel() * st::dtype_size(t.dtype));
      if (t.end > t.begin) {
        FUZZ_CHECK(t.begin >= previous_end);  // data order, no overlap
        previous_end = t.end;
      }
      FUZZ_CHECK(st::decode(t, data + h.data_start).size() == t.numel());
    }
  });
  return 0;
}
