// reference/text/added_tokens.hpp: special and added tokens, found anywhere in the text first.
//
// "<｜User｜>" typed in a text must become its one id, not the BPE of '<', '｜', 'User', ...
// So before the pre-tokenizer sees anything, the text is searched for the added tokens' contents
// (tokenizer.json "added_tokens"): at each position, the longest token starting there wins, the
// leftmost position first, and matches do not overlap (Aho-Corasick "leftmost-longest", as the
// official library searches). The pieces between matches go on to the pre-tokenizer and BPE.
//
// As in the official library this is two passes: first the tokens with "normalized": false are
// searched in the raw text, then the tokens with "normalized": true in the pieces between (their
// text after the normalizer; DeepSeek's normalizer is the identity, the only one supported).
// The "lstrip", "rstrip" and "single_word" options are refused when set (DeepSeek sets none).
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace dsr1::text {

struct AddedToken {
  std::string content;
  std::int64_t id = 0;
  bool special = false;     // a control token (BOS, EOS, ...): decode keeps it; HF may skip it
  bool normalized = false;  // searched after normalization (second pass) rather than in raw text
};

class AddedTokens {
 public:
  explicit AddedTokens(const std::vector<AddedToken>& tokens);

  struct Piece {
    std::string_view text;
    std::optional<std::int64_t> id;  // set: an added token; unset: ordinary text for BPE
  };
  // text cut into ordinary pieces and added tokens, in order (no empty pieces).
  std::vector<Piece> split(std::string_view text) const;

 private:
  // A byte trie of token contents: node 0 is the root; each node lists its children by byte and
  // the id of the token that ends there (-1 if none).
  struct Trie {
    struct Node {
      std::vector<std::pair<unsigned char, std::int32_t>> children;
      std::int64_t id = -1;
    };
    std::vector<Node> nodes{Node{}};
    std::array<bool, 256> starts{};  // bytes some token starts with: most positions stop here
    void insert(std::string_view content, std::int64_t id);
    // The longest token starting at text[i]: (length, id); length 0 if none.
    std::pair<std::size_t, std::int64_t> longest_at(std::string_view text, std::size_t i) const;
    bool empty() const { return nodes.size() == 1; }
  };
  static void split_with(const Trie& trie, std::string_view text, std::vector<Piece>& out);

  Trie raw_;         // "normalized": false
  Trie normalized_;  // "normalized": true
};

}  // namespace dsr1::text
