#include "reference/text/bpe.hpp"

#include <fmt/format.h>

#include <queue>
#include <stdexcept>

#include "reference/text/byte_level.hpp"

namespace dsr1::text {

Bpe::Bpe(const std::unordered_map<std::string, std::int64_t>& vocab,
         const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges,
         const std::string& origin)
    : vocab_(&vocab), ignore_merges_(ignore_merges) {
  for (unsigned b = 0; b < 256; ++b) {
    const std::string c = to_byte_alphabet(std::string(1, static_cast<char>(b)));
    const auto it = vocab.find(c);
    if (it == vocab.end())
      throw std::runtime_error(fmt::format(
          "{}: model.vocab has no token for byte 0x{:02X} ('{}'); a byte-level BPE vocabulary "
          "must spell every byte (byte_fallback and unk_token are not supported)", origin, b, c));
    byte_id_[b] = it->second;
  }
  merges_.reserve(merges.size());
  for (std::size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    const auto ia = vocab.find(a), ib = vocab.find(b), iab = vocab.find(a + b);
    if (ia == vocab.end() || ib == vocab.end() || iab == vocab.end())
      throw std::runtime_error(fmt::format(
          "{}: model.merges[{}] \"{} {}\": '{}' is not in model.vocab", origin, rank, a, b,
          ia == vocab.end() ? a : ib == vocab.end() ? b : a + b));
    // A pair listed twice keeps its first (lowest) rank, as the official library does.
    merges_.try_emplace(pair_key(ia->second, ib->second),
                        Merge{static_cast<std::int32_t>(rank), static_cast<std::int32_t>(iab->second)});
  }
}

std::int64_t Bpe::merge_rank(std::int64_t left, std::int64_t right) const {
  const auto it = merges_.find(pair_key(left, right));
  return it == merges_.end() ? -1 : it->second.rank;
}

void Bpe::encode_word(std::string_view word, std::vector<std::int64_t>& out) const {
  if (ignore_merges_) {
    const auto it = vocab_->find(to_byte_alphabet(word));
    if (it != vocab_->end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() == 1) {
    out.push_back(byte_id_[static_cast<unsigned char>(word[0])]);
    return;
  }
  const bool cacheable = word.size() <= kCachedBytes;
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    const auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const std::size_t first = out.size();
  merge_by_rank(word, out);
  if (cacheable) {
    std::lock_guard lock(cache_mutex_);
    if (cache_.size() < kCacheEntries)
      cache_.try_emplace(std::string(word), out.begin() + static_cast<std::ptrdiff_t>(first), out.end());
  }
}

void Bpe::merge_by_rank(std::string_view word, std::vector<std::int64_t>& out) const {
  // symbols: one per byte at first; a merge folds the right symbol into the left one, so a
  // symbol is identified by the position of its first byte, and next/prev link the live ones.
  const int n = static_cast<int>(word.size());
  std::vector<std::int64_t> id(n);
  std::vector<int> prev(n), next(n);
  for (int i = 0; i < n; ++i) {
    id[i] = byte_id_[static_cast<unsigned char>(word[i])];
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }

  struct Candidate {
    std::int32_t rank;
    int pos;              // the left symbol
    std::int32_t merged;  // what the pair was when pushed, to recognise stale entries
    bool operator>(const Candidate& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;  // lowest rank, then leftmost
  auto push_pair = [&](int left) {
    if (left < 0 || next[left] < 0) return;
    const auto it = merges_.find(pair_key(id[left], id[next[left]]));
    if (it != merges_.end()) heap.push({it->second.rank, left, it->second.merged});
  };
  for (int i = 0; i + 1 < n; ++i) push_pair(i);

  std::vector<bool> alive(n, true);
  while (!heap.empty()) {
    const Candidate top = heap.top();
    heap.pop();
    const int left = top.pos;
    if (!alive[left] || next[left] < 0) continue;
    const int right = next[left];
    const auto it = merges_.find(pair_key(id[left], id[right]));
    if (it == merges_.end() || it->second.merged != top.merged) continue;  // stale: the pair changed
    id[left] = top.merged;
    alive[right] = false;
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    push_pair(prev[left]);
    push_pair(left);
  }
  for (int i = 0; i >= 0; i = next[i]) out.push_back(id[i]);
}

}  // namespace dsr1::text
