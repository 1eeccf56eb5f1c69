#include "reference/text/added_tokens.hpp"

namespace dsr1::text {

void AddedTokens::Trie::insert(std::string_view content, std::int64_t id) {
  std::int32_t node = 0;
  starts[static_cast<unsigned char>(content[0])] = true;
  for (const char ch : content) {
    const auto b = static_cast<unsigned char>(ch);
    std::int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children)
      if (byte == b) child = index;
    if (child < 0) {
      child = static_cast<std::int32_t>(nodes.size());
      nodes[node].children.emplace_back(b, child);
      nodes.emplace_back();
    }
    node = child;
  }
  // The official library keeps the first token of a given content.
  if (nodes[node].id < 0) nodes[node].id = id;
}

std::pair<std::size_t, std::int64_t> AddedTokens::Trie::longest_at(std::string_view text, std::size_t i) const {
  std::pair<std::size_t, std::int64_t> best{0, -1};
  std::int32_t node = 0;
  for (std::size_t k = i; k < text.size(); ++k) {
    const auto b = static_cast<unsigned char>(text[k]);
    std::int32_t child = -1;
    for (const auto& [byte, index] : nodes[node].children)
      if (byte == b) child = index;
    if (child < 0) break;
    node = child;
    if (nodes[node].id >= 0) best = {k + 1 - i, nodes[node].id};
  }
  return best;
}

AddedTokens::AddedTokens(const std::vector<AddedToken>& tokens) {
  for (const AddedToken& t : tokens)
    if (!t.content.empty()) (t.normalized ? normalized_ : raw_).insert(t.content, t.id);
}

void AddedTokens::split_with(const Trie& trie, std::string_view text, std::vector<Piece>& out) {
  std::size_t plain_from = 0;  // start of the ordinary text not yet emitted
  for (std::size_t i = 0; i < text.size();) {
    if (trie.starts[static_cast<unsigned char>(text[i])]) {
      const auto [length, id] = trie.longest_at(text, i);
      if (length > 0) {
        if (i > plain_from) out.push_back({text.substr(plain_from, i - plain_from), std::nullopt});
        out.push_back({text.substr(i, length), id});
        i += length;
        plain_from = i;
        continue;
      }
    }
    ++i;
  }
  if (plain_from < text.size()) out.push_back({text.substr(plain_from), std::nullopt});
}

std::vector<AddedTokens::Piece> AddedTokens::split(std::string_view text) const {
  // Pass 1: tokens matched in the raw text.
  std::vector<Piece> first;
  if (raw_.empty()) first.push_back({text, std::nullopt});
  else split_with(raw_, text, first);
  if (normalized_.empty()) {
    std::erase_if(first, [](const Piece& p) { return p.text.empty(); });
    return first;
  }
  // Pass 2: tokens matched in the (identity-)normalized ordinary pieces of pass 1.
  std::vector<Piece> out;
  for (const Piece& p : first) {
    if (p.id) out.push_back(p);
    else split_with(normalized_, p.text, out);
  }
  std::erase_if(out, [](const Piece& p) { return p.text.empty(); });
  return out;
}

}  // namespace dsr1::text
