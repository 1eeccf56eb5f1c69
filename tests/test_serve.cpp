// The classroom explorer's library (reference/serve/): what a client sends is validated with a
// clear error (request.hpp), one run at a time and a failed run reported without stopping the
// queue (run_queue.hpp), a run keeps exactly the traced values the model computed (exploration.hpp),
// and the views hand out those values and the pictures of reference/html/ (views.hpp).
// The server as a browser and a client see it: tests/serve/explore.mjs and tests/serve/check_api.py.
#include <doctest/doctest.h>

#include <fmt/format.h>

#include <cmath>
#include <future>
#include <string>

#include "reference/deepseek/config.hpp"
#include "reference/deepseek/loader.hpp"
#include "reference/deepseek/model.hpp"
#include "reference/deepseek/weight_store.hpp"
#include "reference/serve/exploration.hpp"
#include "reference/serve/explorer_page.hpp"
#include "reference/serve/request.hpp"
#include "reference/serve/run_queue.hpp"
#include "reference/serve/server.hpp"
#include "reference/serve/views.hpp"
#include "reference/text/tokenizer.hpp"

using namespace dsr1;
using namespace dsr1::serve;

namespace {

// The status and message of the RequestError that f throws ("" and 0 if none).
template <class F>
std::pair<int, std::string> refusal(F&& f) {
  try {
    f();
  } catch (const RequestError& e) {
    return {e.status(), e.what()};
  }
  return {0, ""};
}

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + what.size())) ++n;
  return n;
}

}  // namespace

TEST_CASE("serve: a run request is validated field by field, each refusal naming what was expected") {
  const Config c = preset("tiny-v3");  // V = 128, has MTP
  const Limits lim;
  SUBCASE("valid: ids as a string or an array, attention form, MTP") {
    const RunRequest a = parse_run_request(R"({"tokens": "3,17,5,99"})", c, lim);
    CHECK(a.tokens == std::vector<std::int64_t>{3, 17, 5, 99});
    CHECK(a.attn == ref::AttnForm::Naive);
    CHECK_FALSE(a.mtp);
    const RunRequest b = parse_run_request(R"({"tokens": [0, 127], "attn": "absorbed", "mtp": true})", c, lim);
    CHECK(b.tokens == std::vector<std::int64_t>{0, 127});
    CHECK(b.attn == ref::AttnForm::Absorbed);
    CHECK(b.mtp);
  }
  const auto refused = [&](const std::string& body) { return refusal([&] { parse_run_request(body, c, lim); }); };
  CHECK(refused("{\"tokens\": [1, 2") == std::pair<int, std::string>{400, "the request body is not valid JSON (expected an object such as {\"tokens\": \"3,17,5\"})"});
  CHECK(refused("[1, 2]").second == "the request body is a JSON array, expected an object");
  CHECK(refused(R"({"tokens": "1", "path": "/etc/passwd"})").second == "unknown field 'path' (known: tokens, text, messages, add_generation_prompt, attn, mtp)");
  CHECK(refused(R"({"attn": "naive"})").second.find("missing field 'tokens', 'text' or 'messages'") == 0);
  CHECK(refused(R"({"text": "hello"})").second ==
        "this server takes token ids only: no tokenizer fits model 'tiny-v3' (vocab_size 128); send {\"tokens\": \"3,17,5\"}");
  CHECK(refused(R"({"tokens": ""})").second.find("tokens: the prompt is empty") == 0);
  CHECK(refused(R"({"tokens": []})").second.find("tokens: the prompt is empty") == 0);
  CHECK(refused(R"({"tokens": "1,,2"})").second == "tokens: '' is not a token id (expected comma-separated integers like 1,2,3)");
  CHECK(refused(R"({"tokens": [1, "2"]})").second == "tokens[1]: \"2\" is not an integer token id");
  CHECK(refused(R"({"tokens": [1.5]})").second == "tokens[0]: 1.5 is not an integer token id");
  CHECK(refused(R"({"tokens": {"a": 1}})").second.find("tokens: expected a string") == 0);
  CHECK(refused(R"({"tokens": "3,128"})").second ==
        "tokens: id 128 at position 1 is out of range: 'tiny-v3' has vocab_size 128 (ids 0..127)");
  CHECK(refused(R"({"tokens": "-1"})").second.find("tokens: id -1 at position 0 is out of range") == 0);
  CHECK(refused(R"({"tokens": "1", "attn": "flash"})").second == "attn: expected \"naive\" or \"absorbed\", got \"flash\"");
  CHECK(refused(R"({"tokens": "1", "mtp": 1})").second == "mtp: expected true or false, got 1");
  CHECK(refused(R"({"tokens": "1", "mtp": true})").second.find("mtp: the MTP module predicts token t+2") == 0);
  // Longer than the limit, as a string and as an array.
  std::string ids = "1";
  for (int i = 1; i < 33; ++i) ids += ",1";
  CHECK(refused(fmt::format(R"({{"tokens": "{}"}})", ids)).second ==
        "tokens: 33 tokens, more than this server's limit of 32 (dsr1 serve --max-prompt-tokens)");
  CHECK(refused(fmt::format(R"({{"tokens": [{}]}})", ids)).second ==
        "tokens: 33 tokens, more than this server's limit of 32 (dsr1 serve --max-prompt-tokens)");
  // A body over the limit is refused before it is parsed.
  const std::string big(lim.max_body_bytes + 1, ' ');
  CHECK(refused(big) == std::pair<int, std::string>{413, fmt::format("the request body has {} bytes, more than this "
                                                                     "server's limit of {}", big.size(), lim.max_body_bytes)});
  // A model without MTP.
  const Config v2 = preset("tiny-v2-lite");
  CHECK(refusal([&] { parse_run_request(R"({"tokens": "1,2", "mtp": true})", v2, lim); }).second ==
        "mtp: 'tiny-v2-lite' has no Multi-Token Prediction module");
}

TEST_CASE("serve: text and chats become ids as `dsr1 run --text/--chat` makes them (mini-r1, the V3 tokenizer)") {
  const Config c = preset("mini-r1");
  TextSupport t{text::Tokenizer::from_file(text::default_tokenizer_path()),
                text::read_tokenizer_config(text::default_tokenizer_config_path()), text::ChatFormat::R1};
  const Limits lim;
  const std::int64_t bos = *t.tokenizer.id_of(std::string(text::kDeepSeekBos));
  // Text: BOS, then the text's ids.
  const RunRequest a = parse_run_request(R"({"text": "The capital of France is"})", c, lim, &t);
  std::vector<std::int64_t> want{bos};
  for (const std::int64_t id : t.tokenizer.encode("The capital of France is")) want.push_back(id);
  CHECK(a.tokens == want);
  CHECK(a.kind == "text");
  CHECK(t.label(a.tokens[2]) == "␣capital");  // "␣capital"
  // A chat in R1's format, the generation prompt opening the reasoning.
  const RunRequest b = parse_run_request(
      R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]})", c, lim, &t);
  CHECK(b.kind == "chat");
  CHECK(b.text == std::string(text::kDeepSeekBos) + "Be brief.<｜User｜>Hi<｜Assistant｜><think>\n");
  CHECK(b.tokens == t.tokenizer.encode(b.text));  // the template's BOS, not a second one
  const auto refused = [&](const std::string& body) { return refusal([&] { parse_run_request(body, c, lim, &t); }); };
  CHECK(refused(R"({"text": "a", "tokens": "1"})").second == "give the prompt once: one of 'tokens', 'text' or 'messages'");
  CHECK(refused(R"({"text": ""})").second.find("text: the prompt is empty") == 0);
  CHECK(refused(R"({"text": 5})").second == "text: expected a string, got number");
  CHECK(refused("{\"text\": \"ab\xff\"}").first == 400);  // not UTF-8 (the JSON parser or the tokenizer)
  CHECK(refused(R"({"messages": [{"role": "robot", "content": "x"}]})").first == 400);
  CHECK(refused(R"({"messages": "hi"})").first == 400);
  CHECK(refused(R"({"text": "a", "add_generation_prompt": true})").second == "add_generation_prompt goes with 'messages' (a chat)");
  std::string long_text;
  for (int i = 0; i < 40; ++i) long_text += " word";
  CHECK(refused(fmt::format(R"({{"text": "{}"}})", long_text)).second ==
        "text: 41 tokens, more than this server's limit of 32 (dsr1 serve --max-prompt-tokens)");
}

TEST_CASE("serve: blocks, heads and tokens are numbers in range, never names of anything else") {
  const Config c = preset("tiny-v3");  // L = 3
  CHECK(parse_block("0", c) == 0);
  CHECK(parse_block("2", c) == 2);
  CHECK(parse_block("mtp", c) == 3);
  for (const char* bad : {"3", "-1", "1x", "", "01a", "../etc", "99999999999999999999"})
    CHECK(refusal([&] { parse_block(bad, c); }) ==
          std::pair<int, std::string>{404, fmt::format("layer '{}' does not exist: 'tiny-v3' has layers 0..2 and mtp", bad)});
  CHECK(refusal([&] { parse_block("mtp", preset("tiny-v2-lite")); }).first == 404);
  CHECK(parse_index(std::nullopt, "head", 4, 0) == 0);
  CHECK(parse_index(std::string("3"), "head", 4, 0) == 3);
  CHECK(refusal([&] { parse_index(std::string("4"), "head", 4, 0); }) ==
        std::pair<int, std::string>{400, "head: '4' is not a number in 0..3"});
  CHECK(refusal([&] { parse_index(std::string("x"), "token", 4, 0); }).second == "token: 'x' is not a number in 0..3");
  CHECK(is_loopback("127.0.0.1"));
  CHECK(is_loopback("localhost"));
  CHECK(is_loopback("[::1]"));
  CHECK_FALSE(is_loopback("0.0.0.0"));
  CHECK_FALSE(is_loopback("evil.example"));
}

TEST_CASE("serve: one run at a time, a second is refused naming the first, a run that throws is reported") {
  RunQueue q;
  CHECK(q.status().state == RunQueue::State::Idle);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> started;
  const std::uint64_t first = q.start(
      [&](const LayerProgress& progress) {
        progress("main", 2, 61);  // two of 61 layers done
        started.set_value();
        released.wait();
        return std::make_unique<Exploration>();
      },
      "4 tokens, naive attention");
  started.get_future().wait();
  const RunQueue::Status running = q.status();
  CHECK(running.state == RunQueue::State::Running);
  CHECK(running.layer == 2);
  CHECK(running.layers == 61);
  try {
    q.start([](const LayerProgress&) { return std::make_unique<Exploration>(); }, "other");
    FAIL("a second run started while one was running");
  } catch (const Busy& e) {
    CHECK(std::string(e.what()).find(fmt::format("run {} (4 tokens, naive attention) is still computing (main pass, "
                                                 "2 of 61 layers done, started 0 s ago). This server runs one prompt "
                                                 "at a time", first)) == 0);
  }
  release.set_value();
  q.wait_idle();
  CHECK(q.status().state == RunQueue::State::Done);
  REQUIRE(q.latest() != nullptr);
  CHECK(q.latest()->id == first);

  // A run that throws: its message is the status's error, and the queue takes the next run.
  const std::uint64_t failing = q.start(
      [](const LayerProgress&) -> std::unique_ptr<Exploration> { throw std::runtime_error("non-finite value in h"); },
      "1 token");
  q.wait_idle();
  CHECK(q.status().state == RunQueue::State::Failed);
  CHECK(q.status().run == failing);
  CHECK(q.status().error == "non-finite value in h");
  CHECK(q.latest() == nullptr);  // the failed run's predecessor was let go when it started
  q.start([](const LayerProgress&) { return std::make_unique<Exploration>(); }, "1 token");
  q.wait_idle();
  CHECK(q.status().state == RunQueue::State::Done);
}

TEST_CASE("serve: a run keeps exactly the values the model traced for the page, shapes for the rest") {
  const Config c = preset("tiny-v3");
  const ModelWeights W = generate_weights(c, 1);
  const InMemoryStore store(W, c);
  RunRequest r;
  r.tokens = {3, 17, 5, 99};
  r.mtp = true;
  std::vector<std::string> passes;
  const auto run = explore(store, c, r, 10, [&](const std::string& pass, std::int64_t l, std::int64_t L) {
    passes.push_back(fmt::format("{} {}/{}", pass, l, L));
  });
  CHECK(fmt::format("{}", fmt::join(passes, ", ")) ==
        "main 0/3, main 1/3, main 1/3, main 2/3, main 2/3, main 3/3, mtp 0/1, mtp 1/1");

  // The same forward pass with every tensor recorded.
  RecordingTracer all;
  arma::mat h_final;
  const arma::mat logits = ref::forward_hidden(store, c, r.tokens, 0, nullptr, {}, &all, &h_final);
  const arma::mat mtp_logits = ref::mtp_forward(store, c, h_final, r.tokens, {}, &all);
  CHECK(arma::approx_equal(run->logits, logits, "absdiff", 0.0));
  CHECK(arma::approx_equal(run->mtp_logits, mtp_logits, "absdiff", 0.0));
  std::size_t kept = 0;
  for (const auto& e : all.entries()) {
    CAPTURE(e.name);
    REQUIRE(run->trace->has(e.name));
    const auto& mine = run->trace->get(e.name);
    CHECK(mine.shape == e.shape);
    if (ExplorerTracer::keeps_values(e.name)) {
      CHECK(mine.data == e.data);  // bit for bit
      ++kept;
    } else {
      CHECK(mine.data.empty());
    }
  }
  // Per block: probs, c_kv_hat, k_rope, attn_norm, h_attn, ffn_norm, h (7), plus the router's 6
  // in the 2 MoE layers and the MTP block; embed.h and mtp.h_proj.
  CHECK(kept == 4 * 7 + 3 * 6 + 2);
  CHECK_FALSE(ExplorerTracer::keeps_values("logits"));
  CHECK_FALSE(ExplorerTracer::keeps_values("layers.1.moe.shared"));
  CHECK_FALSE(ExplorerTracer::keeps_values("layers.1.attn.k_nope"));
  // The estimate that refuses prompts too long to keep is an upper bound, and not a loose one.
  const double bytes = 8.0 * static_cast<double>(run->trace->kept_values() + run->logits.n_elem + run->mtp_logits.n_elem);
  CHECK(kept_bytes_estimate(c, 4, true) >= bytes);
  CHECK(kept_bytes_estimate(c, 4, true) < 1.5 * bytes);

  // The MTP block is a block of the map like the layers: its attention, its router, its input mtp.h_proj.
  const nlohmann::json mtp = layer_view(*run, 3, 0, 16, 1, 4);
  CHECK(mtp["kind"] == "mtp");
  CHECK(mtp["attention"].size() == 4);
  CHECK(mtp["attention"][0]["probs"].size() == 3);  // T - 1 positions
  CHECK(mtp["router"]["chosen"].size() == static_cast<std::size_t>(c.num_experts_per_tok));
  CHECK(mtp["norms"]["attn"].get<std::string>().find("mtp.h_proj (grey)") != std::string::npos);

  // The next tokens: the top 10 by logit with softmax probabilities, computed here in long double.
  for (arma::uword t = 0; t < logits.n_cols; ++t) {
    const arma::vec col = logits.col(t);
    long double sum = 0;
    for (double l : col) sum += std::exp(static_cast<long double>(l));
    REQUIRE(run->next[t].size() == 10);
    CHECK(run->next[t][0].id == static_cast<std::int64_t>(col.index_max()));
    for (const NextToken& n : run->next[t]) {
      CHECK(n.logit == col(static_cast<arma::uword>(n.id)));
      CHECK(n.prob == doctest::Approx(static_cast<double>(std::exp(static_cast<long double>(n.logit)) / sum)).epsilon(1e-12));
    }
    for (std::size_t k = 1; k < 10; ++k) CHECK(run->next[t][k].logit <= run->next[t][k - 1].logit);
  }
}

TEST_CASE("serve: the views hand out the kept numbers and the pictures of reference/html/") {
  const Config c = preset("tiny-v3");  // 3 layers (layer 0 dense), 4 heads, MTP
  const ModelWeights W = generate_weights(c, 1);
  const InMemoryStore store(W, c);
  RunRequest r;
  r.tokens = {3, 17, 5, 99};
  const auto run = explore(store, c, r, 10, {});
  const Limits lim;

  const nlohmann::json m = model_view(c, "preset tiny-v3", lim, 4);
  CHECK(m["blocks"].size() == 4);
  CHECK(m["blocks"][0]["kind"] == "dense");
  CHECK(m["blocks"][1]["kind"] == "moe");
  CHECK(m["blocks"][3]["kind"] == "mtp");
  CHECK(count(m["pictures"]["rope"].get<std::string>(), "data-picture=\"rope\"") == 1);
  CHECK(count(m["pictures"]["kv_cache"].get<std::string>(), "data-picture=\"kv-cache\"") == 1);

  const nlohmann::json v = run_view(*run, 4);
  CHECK(v["tokens"] == r.tokens);
  CHECK(v["next"].size() == 4);
  CHECK(count(v["pictures"]["residual"].get<std::string>(), "data-picture=\"residual-norm\"") == 1);
  CHECK(count(v["pictures"]["logits"].get<std::string>(), "data-picture=\"logits\"") == 1);
  CHECK(v["residual_norms"].size() == 4);  // embed + 3 layers

  // Layer 1 (MoE), heads 0..3, token 2.
  const nlohmann::json l1 = layer_view(*run, 1, 0, 16, 2, 4);
  CHECK(l1["kind"] == "moe");
  REQUIRE(l1["attention"].size() == 4);
  const auto& probs = run->trace->get("layers.1.attn.probs");  // [n_h, T, T]
  for (std::size_t h = 0; h < 4; ++h)
    for (std::size_t q = 0; q < 4; ++q)
      for (std::size_t k = 0; k < 4; ++k)
        CHECK(l1["attention"][h]["probs"][q][k].get<double>() == probs.data[(h * 4 + q) * 4 + k]);
  // Each head's map: 4 x 4 cells, the 6 future keys masked.
  const std::string head2 = l1["attention"][2]["html"];
  CHECK(count(head2, "class=\"cell") == 16);
  CHECK(count(head2, "class=\"cell masked\"") == 6);
  const auto& experts = run->trace->get("layers.1.moe.experts");  // [T, K]
  const auto& g = run->trace->get("layers.1.moe.g");
  const std::size_t K = experts.shape[1];
  REQUIRE(l1["router"]["chosen"].size() == K);
  for (std::size_t k = 0; k < K; ++k) {
    CHECK(l1["router"]["chosen"][k]["expert"].get<double>() == experts.data[2 * K + k]);
    CHECK(l1["router"]["chosen"][k]["gate"].get<double>() == g.data[2 * K + k]);
  }
  CHECK(count(l1["router"]["html"].get<std::string>(), "class=\"bar") >= static_cast<std::size_t>(c.n_routed_experts));
  std::uint64_t routed = 0;
  for (const auto& n : l1["expert_load"]["load"]) routed += n.get<std::uint64_t>();
  CHECK(routed == 4 * K);
  CHECK(count(l1["mla_flow"].get<std::string>(), "data-picture=\"mla-flow\"") == 1);
  CHECK(count(l1["norms"]["attn"].get<std::string>(), "data-picture=\"norm\"") == 1);

  // Layer 0 is dense: no router. The MTP block was not run.
  CHECK_FALSE(layer_view(*run, 0, 0, 16, 0, 4).contains("router"));
  CHECK(refusal([&] { layer_view(*run, 3, 0, 16, 0, 4); }).first == 404);
}

TEST_CASE("serve: the page is one self-contained file with the pictures' style in place") {
  const std::string page = explorer_page_html();
  CHECK(page.find("/*DSR1_PICTURE_STYLE*/") == std::string::npos);
  CHECK(page.find("figure.picture") != std::string::npos);
  for (const char* outside : {"http://", "https://", "src=", "<link", "@import", "<img"})
    CHECK_MESSAGE(page.find(outside) == std::string::npos, outside);
}
