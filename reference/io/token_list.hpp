// Token lists as the command line spells them: "3,17,5,99" -> {3, 17, 5, 99}.
// Leaves out: the range check against the vocabulary (the model checks ids against V).
//
// Lives in io/ (not cli/) so that tests and the fuzzer (tests/fuzz/fuzz_tokens.cpp) call the
// very parser `dsr1 run --tokens` and `dsr1 golden --tokens` use.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsr1 {

// Comma-separated decimal integers, no spaces, no empty items, each within int64. Throws
// std::invalid_argument naming `option` and the offending item.
std::vector<std::int64_t> parse_token_list(const std::string& text, const std::string& option);

}  // namespace dsr1
