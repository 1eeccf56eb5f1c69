// Weights on demand (reference/deepseek/weight_store.hpp): the model over a store that fetches
// each layer and each chosen expert from the generator or a checkpoint gives the same logits, bit
// for bit, as the model over the weights loaded whole into memory; the experts are fetched once
// per forward call, in ascending index, and only when chosen; the embedding and the LM head are
// read by rows; the counters say what was read, dequantised and generated.
#include <doctest/doctest.h>
#include <fmt/format.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <regex>
#include <set>

#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/io/checkpoint.hpp"
#include "reference/io/generator.hpp"

using namespace dsr1;
namespace fs = std::filesystem;

namespace {

const std::vector<std::int64_t> kTokens = {3, 17, 5, 99, 42, 7, 120, 0, 64, 64, 12, 88};

// Bit-for-bit equality: same shape and the same bytes (NaN-free data, so == is exact).
bool same_bits(const arma::mat& a, const arma::mat& b) {
  return a.n_rows == b.n_rows && a.n_cols == b.n_cols &&
         std::memcmp(a.memptr(), b.memptr(), a.n_elem * sizeof(double)) == 0;
}

// Records every tensor name read through it, in order, and forwards to another source.
class RecordingSource : public TensorSource {
 public:
  explicit RecordingSource(const TensorSource& inner) : inner_(inner) {}
  bool has(const std::string& n) const override { return inner_.has(n); }
  std::vector<std::uint64_t> shape(const std::string& n) const override { return inner_.shape(n); }
  TensorData read_rows(const std::string& n, std::uint64_t first, std::uint64_t count) const override {
    std::lock_guard<std::mutex> lock(m_);
    reads.push_back({n, first, count});
    return inner_.read_rows(n, first, count);
  }
  std::vector<std::string> names() const override { return inner_.names(); }
  std::string describe() const override { return inner_.describe(); }
  const SourceCounters& counters() const override { return inner_.counters(); }
  struct Read {
    std::string name;
    std::uint64_t first, count;
  };
  mutable std::vector<Read> reads;

 private:
  const TensorSource& inner_;
  mutable std::mutex m_;
};

std::vector<std::string> tiny_presets() {
  std::vector<std::string> out;
  for (const auto& name : preset_names())
    if (name.rfind("tiny", 0) == 0) out.push_back(name);
  return out;
}

}  // namespace

TEST_CASE("streamed weights give the in-memory logits bit for bit on every tiny preset") {
  for (const std::string& name : tiny_presets()) {
    CAPTURE(name);
    const Config c = preset(name);
    const bool mtp = c.num_nextn_predict_layers > 0;
    const ModelWeights W = generate_weights(c, 5);  // the whole model in memory
    const GeneratorSource gen = generator_source(c, 5);
    const SourceStore streamed(c, gen, mtp);        // fetched layer by layer

    for (const auto form : {ref::AttnForm::Naive, ref::AttnForm::Absorbed}) {
      ref::ForwardOptions opt;
      opt.attn = form;
      arma::mat h_mem, h_str;
      const arma::mat mem = ref::forward_hidden(W, c, kTokens, 0, nullptr, opt, nullptr, &h_mem);
      const arma::mat str = ref::forward_hidden(streamed, c, kTokens, 0, nullptr, opt, nullptr, &h_str);
      CHECK(same_bits(mem, str));
      CHECK(same_bits(h_mem, h_str));
      CHECK(same_bits(ref::forward_incremental(W, c, kTokens, 5, opt, nullptr),
                      ref::forward_incremental(streamed, c, kTokens, 5, opt, nullptr)));
      if (mtp)
        CHECK(same_bits(ref::mtp_forward(W, c, h_mem, kTokens, opt, nullptr),
                        ref::mtp_forward(streamed, c, h_str, kTokens, opt, nullptr)));
    }
  }
}

TEST_CASE("a streamed FP8 and a streamed BF16 sharded checkpoint give the in-memory logits bit for bit") {
  const Config c = preset("tiny-v3");
  const fs::path dir = fs::path(DSR1_BINARY_DIR) / "test_weight_store";
  for (const auto dtype : {safetensors::DType::F8_E4M3, safetensors::DType::BF16}) {
    CAPTURE(safetensors::to_string(dtype));
    fs::remove_all(dir);
    write_checkpoint(dir.string(), c, generate_weights(c, 3), dtype, 3);
    const LoadedModel whole = load_model_dir(dir.string(), true);
    CheckpointOptions opt;
    opt.weight_block_size = whole.config.weight_block_size;
    const Checkpoint ck(dir.string(), opt);
    const SourceStore streamed(whole.config, ck, true);
    arma::mat h_mem, h_str;
    const arma::mat mem = ref::forward_hidden(whole.weights, whole.config, kTokens, 0, nullptr, {}, nullptr, &h_mem);
    const arma::mat str = ref::forward_hidden(streamed, whole.config, kTokens, 0, nullptr, {}, nullptr, &h_str);
    CHECK(same_bits(mem, str));
    CHECK(same_bits(ref::mtp_forward(whole.weights, whole.config, h_mem, kTokens, {}, nullptr),
                    ref::mtp_forward(streamed, whole.config, h_str, kTokens, {}, nullptr)));
    // The reads were counted: the store read every tensor of the forward pass from the files.
    CHECK(ck.counters().bytes_read.load() > 0);
    CHECK(ck.counters().values_dequantised.load() > 0);
    CHECK(ck.counters().values_generated.load() == 0);
  }
  fs::remove_all(dir);
}

TEST_CASE("each chosen expert is fetched once per forward call, in ascending index, and no other") {
  const Config c = preset("tiny-v3");
  const GeneratorSource gen = generator_source(c, 5);
  const RecordingSource rec(gen);
  const SourceStore weights(c, rec, false);
  struct Keep : Tracer {
    using Tracer::Tracer;
    std::map<std::string, std::vector<double>> seen;
    void on_tensor(const std::string& n, const TensorView& v) override {
      seen[n].assign(v.data, v.data + v.numel());
    }
  } keep({"layers.*.moe.experts"});
  ref::forward(weights, c, kTokens, 0, nullptr, {}, &keep);

  const std::regex expert_gate(R"(model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.gate_proj\.weight)");
  std::map<int, std::vector<int>> fetched;  // layer -> experts, in fetch order
  for (const auto& r : rec.reads) {
    std::smatch m;
    if (std::regex_match(r.name, m, expert_gate)) fetched[std::stoi(m[1])].push_back(std::stoi(m[2]));
  }
  for (std::int64_t l = c.first_k_dense_replace; l < c.num_hidden_layers; ++l) {
    CAPTURE(l);
    const std::vector<double>& chosen = keep.seen.at(fmt::format("layers.{}.moe.experts", l));
    std::set<int> want(chosen.begin(), chosen.end());
    const std::vector<int>& got = fetched[static_cast<int>(l)];
    CHECK(std::vector<int>(want.begin(), want.end()) == got);  // ascending, once, only the chosen
    CHECK(got.size() < static_cast<std::size_t>(c.n_routed_experts) + 1);
  }
  CHECK(weights.counters().experts_fetched.load() ==
        fetched[1].size() + fetched[2].size());
}

TEST_CASE("the embedding is read as the rows of the given tokens, the LM head in row blocks") {
  Config c = preset("tiny-v3");
  const GeneratorSource gen = generator_source(c, 5);
  const RecordingSource rec(gen);
  const SourceStore weights(c, rec, false);
  ref::forward(weights, c, {3, 17}, 0, nullptr, {}, nullptr);
  std::vector<std::uint64_t> embed_rows;
  std::uint64_t head_rows = 0;
  for (const auto& r : rec.reads) {
    if (r.name == "model.embed_tokens.weight") {
      CHECK(r.count == 1);
      embed_rows.push_back(r.first);
    }
    if (r.name == "lm_head.weight") {
      CHECK(r.count <= WeightStore::kHeadRowBlock);
      head_rows += r.count;
    }
  }
  CHECK(embed_rows == std::vector<std::uint64_t>{3, 17});
  CHECK(head_rows == static_cast<std::uint64_t>(c.vocab_size));
  // The generator made exactly what was asked for: every tensor of the main model except the
  // embedding rows of other tokens and the routed experts that no token chose.
  REQUIRE_FALSE(c.tie_word_embeddings);
  std::uint64_t main_model = 0;
  const std::string mtp_prefix = fmt::format("model.layers.{}.", c.num_hidden_layers);
  for (const auto& e : checkpoint_catalogue(c))
    if (e.name.rfind(mtp_prefix, 0) != 0) main_model += e.numel();
  const std::uint64_t d = c.hidden_size, V = c.vocab_size, I_e = c.moe_intermediate_size;
  const std::uint64_t moe_layers = c.num_hidden_layers - c.first_k_dense_replace;
  const std::uint64_t unchosen = moe_layers * c.n_routed_experts - weights.counters().experts_fetched.load();
  CHECK(gen.counters().values_generated.load() == main_model - (V - 2) * d - unchosen * 3 * d * I_e);
}

TEST_CASE("reading rows of a checkpoint tensor equals the rows of the whole tensor, FP8 blocks included") {
  // Dimensions that are not multiples of the 128 x 128 FP8 block: partial edge blocks.
  Config c = preset("tiny-v3");
  c.hidden_size = 300;
  c.vocab_size = 260;
  const fs::path dir = fs::path(DSR1_BINARY_DIR) / "test_weight_store_rows";
  fs::remove_all(dir);
  write_checkpoint(dir.string(), c, generate_weights(c, 2), safetensors::DType::F8_E4M3, 2);
  const Config cc = load_config_json((dir / "config.json").string());
  CheckpointOptions opt;
  opt.weight_block_size = cc.weight_block_size;
  const Checkpoint ck(dir.string(), opt);
  for (const std::string name : {"model.layers.0.self_attn.o_proj.weight", "model.embed_tokens.weight"}) {
    CAPTURE(name);
    const TensorData whole = ck.read(name);
    const std::uint64_t rows = whole.shape[0], cols = whole.shape[1];
    // Row blocks that start and end inside 128-row scale blocks.
    for (const auto& [first, count] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
             {0, 1}, {5, 130}, {127, 2}, {rows - 3, 3}, {0, rows}}) {
      if (first + count > rows) continue;
      const TensorData part = ck.read_rows(name, first, count);
      REQUIRE(part.shape == std::vector<std::uint64_t>{count, cols});
      CHECK(std::equal(part.data.begin(), part.data.end(), whole.data.begin() + first * cols));
    }
    CHECK_THROWS_WITH_AS(ck.read_rows(name, rows - 1, 2), doctest::Contains(name.c_str()), std::out_of_range);
  }
  fs::remove_all(dir);
}

namespace {

// What read_rows_transposed must write, worked out the slow way: rows first .. first+count-1
// read row-major by read_rows, then placed one element at a time at dst[c * ld + i].
std::vector<double> transposed_by_hand(const TensorSource& src, const std::string& name,
                                       std::uint64_t first, std::uint64_t count, std::uint64_t ld) {
  const TensorData t = src.read_rows(name, first, count);
  const std::uint64_t cols = t.shape[1];
  std::vector<double> out(cols * ld, -7.0);  // -7: rows of the destination left untouched
  for (std::uint64_t i = 0; i < count; ++i)
    for (std::uint64_t c = 0; c < cols; ++c) out[c * ld + i] = t.data[i * cols + c];
  return out;
}

// The same through the source's own read_rows_transposed, into a destination with ld > count.
std::vector<double> transposed_read(const TensorSource& src, const std::string& name,
                                    std::uint64_t first, std::uint64_t count, std::uint64_t ld) {
  const std::uint64_t cols = src.shape(name)[1];
  std::vector<double> out(cols * ld, -7.0);
  src.read_rows_transposed(name, first, count, out.data(), ld);
  return out;
}

// Row ranges that start and end inside 128-row FP8 scale blocks, and the whole tensor.
std::vector<std::pair<std::uint64_t, std::uint64_t>> row_ranges(std::uint64_t rows) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> r;
  for (auto [first, count] : std::vector<std::pair<std::uint64_t, std::uint64_t>>{
           {0, 1}, {5, 130}, {127, 2}, {rows - 3, 3}, {0, rows}})
    if (first + count <= rows) r.push_back({first, count});
  return r;
}

}  // namespace

TEST_CASE("a transposing read writes the rows' values in column-major order, bit for bit: generator and checkpoints") {
  Config c = preset("tiny-v3");
  c.hidden_size = 300;  // not a multiple of 128: partial FP8 edge blocks
  c.vocab_size = 260;
  const std::vector<std::string> names = {"model.layers.0.self_attn.o_proj.weight",
                                          "model.layers.1.mlp.experts.2.down_proj.weight",
                                          "model.embed_tokens.weight"};
  SUBCASE("the generator computes each column directly; checked against generator_value") {
    const GeneratorSource gen = generator_source(c, 5);
    for (const std::string& name : names) {
      CAPTURE(name);
      const auto shape = gen.shape(name);
      const std::uint64_t rows = shape[0], cols = shape[1];
      for (const auto& range : row_ranges(rows)) {
        const std::uint64_t first = range.first, count = range.second;  // (CAPTURE needs variables)
        CAPTURE(first);
        const std::uint64_t ld = count + 3;
        const std::vector<double> got = transposed_read(gen, name, first, count, ld);
        bool same = true;
        for (std::uint64_t i = 0; i < count && same; ++i)
          for (std::uint64_t c2 = 0; c2 < cols && same; ++c2)
            same = got[c2 * ld + i] ==
                   static_cast<double>(generator_value(5, name, (first + i) * cols + c2, cols));
        CHECK(same);
        CHECK(got == transposed_by_hand(gen, name, first, count, ld));  // padding rows untouched too
      }
    }
  }
  SUBCASE("a request large enough to be split over the cores gives the row-major values transposed") {
    const std::uint64_t rows = 1500, cols = 3000;  // 4.5 M values: more than one thread's share
    const std::string name = "model.layers.0.mlp.up_proj.weight";
    std::vector<double> row_major(rows * cols), col_major(rows * cols);
    generator_fill(9, name, cols, 0, rows * cols, row_major.data());
    generator_fill_transposed(9, name, cols, 0, rows, col_major.data(), rows);
    bool same = true;
    for (std::uint64_t i = 0; i < rows && same; ++i)
      for (std::uint64_t c2 = 0; c2 < cols && same; ++c2)
        same = col_major[c2 * rows + i] == row_major[i * cols + c2];
    CHECK(same);
  }
  for (const safetensors::DType dtype : {safetensors::DType::F8_E4M3, safetensors::DType::BF16,
                                         safetensors::DType::F32}) {
    CAPTURE(safetensors::to_string(dtype));
    const fs::path dir = fs::path(DSR1_BINARY_DIR) / "test_weight_store_transposed";
    fs::remove_all(dir);
    write_checkpoint(dir.string(), c, generate_weights(c, 2), dtype, 2);
    const Config cc = load_config_json((dir / "config.json").string());
    for (const bool faults : {false, true}) {
      CAPTURE(faults);
      CheckpointOptions opt;
      opt.weight_block_size = cc.weight_block_size;
      // A conformance fault sends the read the general way (decode, dequantise, transpose).
      opt.faults.fp8_skip_edge_blocks = faults;
      const Checkpoint ck(dir.string(), opt);
      for (const std::string& name : names) {
        CAPTURE(name);
        for (const auto& range : row_ranges(ck.shape(name)[0])) {
          const std::uint64_t first = range.first, count = range.second;
          CAPTURE(first);
          const std::uint64_t before = ck.counters().values_dequantised;
          const std::vector<double> got = transposed_read(ck, name, first, count, count + 3);
          CHECK(ck.counters().values_dequantised - before == count * ck.shape(name)[1]);
          CHECK(got == transposed_by_hand(ck, name, first, count, count + 3));
        }
      }
    }
    fs::remove_all(dir);
  }
}

TEST_CASE("a checkpoint's transposing read split over the cores gives the rows' values, and names a NaN") {
  // [1500, 3000] = 4.5 M values: more than one thread's share (2^21 values).
  const std::uint64_t rows = 1500, cols = 3000;
  std::vector<double> values(rows * cols);
  generator_fill(4, "w", cols, 0, rows * cols, values.data());
  const fs::path file = fs::path(DSR1_BINARY_DIR) / "test_weight_store_split.safetensors";
  for (const safetensors::DType dtype : {safetensors::DType::F32, safetensors::DType::BF16}) {
    CAPTURE(safetensors::to_string(dtype));
    safetensors::write(file.string(), {{"w", {rows, cols}, values, dtype}});
    const Checkpoint ck(file.string());
    CHECK(transposed_read(ck, "w", 0, rows, rows) == transposed_by_hand(ck, "w", 0, rows, rows));
    CHECK(transposed_read(ck, "w", 7, 1200, 1203) == transposed_by_hand(ck, "w", 7, 1200, 1203));
  }
  // A NaN in the last thread's columns: the error names the tensor and the element.
  values[5 * cols + 2999] = std::nan("");
  safetensors::write(file.string(), {{"w", {rows, cols}, values, safetensors::DType::F32}});
  const Checkpoint ck(file.string());
  std::vector<double> out(rows * cols);
  const std::string want =
      fmt::format("'w' (file '{}'): element {} is nan", file.string(), 5 * cols + 2999);
  CHECK_THROWS_WITH_AS(ck.read_rows_transposed("w", 0, rows, out.data(), rows),
                       doctest::Contains(want.c_str()), std::runtime_error);
  fs::remove(file);
}
