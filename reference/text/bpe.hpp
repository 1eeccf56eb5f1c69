// reference/text/bpe.hpp: byte-pair encoding of one word, merges applied by rank.
//
// A word (one piece of the pre-tokenizer, as bytes) starts as one symbol per byte: the vocabulary
// entry of the byte's character in the byte alphabet (byte_level.hpp). The merges list is ranked:
// merge r is "A B" -> the symbol AB, and a lower r is applied first. Repeatedly, the adjacent pair
// with the lowest rank anywhere in the word is merged (the leftmost one if the same pair occurs
// twice), until no adjacent pair is a listed merge. The remaining symbols are the word's ids.
//
// Worked example (DeepSeek-V3): " the" -> bytes ' ','t','h','e' -> symbols Ġ t h e. Merge rank 0
// is "Ġ t", so Ġt h e; then "h e" (rank 4) gives Ġt he; then "Ġt he" gives Ġthe, one token.
//
// Implementation: the symbols form a linked list and the candidate pairs wait in a min-heap keyed
// by (rank, position), so a word of n bytes costs O(n log n), not O(n^2); a heap entry whose pair
// has changed since it was pushed is skipped when popped. Results of short words are cached.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

namespace dsr1::text {

class Bpe {
 public:
  // vocab: token (spelled in the byte alphabet) -> id. merges: in rank order, each a pair of
  // tokens whose concatenation is a token too. ignore_merges: a word that is itself a token is
  // that token at once (the file's "ignore_merges"). Throws std::runtime_error naming origin when
  // a merge names a token the vocabulary lacks or a byte has no token.
  Bpe(const std::unordered_map<std::string, std::int64_t>& vocab,
      const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
      const std::string& origin);

  // Appends the ids of word (raw bytes, not the alphabet) to out.
  void encode_word(std::string_view word, std::vector<std::int64_t>& out) const;

  // The merge rank of the pair (left, right) of ids, -1 if they do not merge.
  std::int64_t merge_rank(std::int64_t left, std::int64_t right) const;

 private:
  struct Merge {
    std::int32_t rank;
    std::int32_t merged;  // id of the token "left right" becomes
  };
  static std::uint64_t pair_key(std::int64_t left, std::int64_t right) {
    return (static_cast<std::uint64_t>(left) << 32) | static_cast<std::uint64_t>(right);
  }
  void merge_by_rank(std::string_view word, std::vector<std::int64_t>& out) const;

  const std::unordered_map<std::string, std::int64_t>* vocab_;
  bool ignore_merges_;
  std::array<std::int64_t, 256> byte_id_{};          // byte -> id of its alphabet character
  std::unordered_map<std::uint64_t, Merge> merges_;  // (left id, right id) -> rank, merged id

  // Words up to kCachedBytes long, with their ids; filled until kCacheEntries (then left as is).
  static constexpr std::size_t kCachedBytes = 64, kCacheEntries = 200000;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<std::int64_t>> cache_;
};

}  // namespace dsr1::text
