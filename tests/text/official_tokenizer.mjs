// The official Hugging Face tokenizers library (npm `tokenizers`, its Rust core prebuilt) on JSON
// Lines, for tests/text/check_tokenizer.py and `dsr1 bench-tokenizer`.
//
//   node official_tokenizer.mjs TOKENIZER_JSON encode  < {"text": S} lines  -> {"ids": [...], "tokens": [...]}
//   node official_tokenizer.mjs TOKENIZER_JSON pieces  < {"text": S} lines  -> {"pieces": [...]} (pre-tokenizer only)
//   node official_tokenizer.mjs TOKENIZER_JSON decode  < {"ids": [...]} lines -> {"text": S}
//   node official_tokenizer.mjs TOKENIZER_JSON bench FILE RUNS
//       FILE holds a JSON list of documents. Encodes and decodes their concatenation as one text,
//       RUNS times each, then the documents one by one (RUNS times); one thread; prints
//       {"bytes": B, "tokens": T, "encode_seconds": [...], "decode_seconds": [...],
//        "documents_tokens": T2, "documents_encode_seconds": [...], "documents_decode_seconds": [...]}
// encode is encode(text, add_special_tokens=False); decode keeps special tokens.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import { createInterface } from "node:readline";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const here = dirname(fileURLToPath(import.meta.url));
const { Tokenizer } = require(join(here, "../npm/node_modules/tokenizers"));

const [tokenizerPath, mode, ...rest] = process.argv.slice(2);
const tokenizer = Tokenizer.fromFile(tokenizerPath);
const out = [];

if (mode === "bench") {
  const [file, runs] = rest;
  const documents = JSON.parse(readFileSync(file, "utf8"));
  const text = documents.join("");
  const result = { bytes: Buffer.byteLength(text, "utf8"), tokens: 0, encode_seconds: [], decode_seconds: [],
                   documents_tokens: 0, documents_encode_seconds: [], documents_decode_seconds: [] };
  const seconds = (t0) => Number(process.hrtime.bigint() - t0) / 1e9;
  let ids = [];
  for (let r = 0; r < Number(runs); ++r) {
    const t0 = process.hrtime.bigint();
    ids = (await tokenizer.encode(text, null, { addSpecialTokens: false })).getIds();
    result.encode_seconds.push(seconds(t0));
  }
  result.tokens = ids.length;
  for (let r = 0; r < Number(runs); ++r) {
    const t0 = process.hrtime.bigint();
    await tokenizer.decode(ids, false);
    result.decode_seconds.push(seconds(t0));
  }
  let perDocument = [];
  for (let r = 0; r < Number(runs); ++r) {
    const t0 = process.hrtime.bigint();
    perDocument = [];
    for (const d of documents) perDocument.push((await tokenizer.encode(d, null, { addSpecialTokens: false })).getIds());
    result.documents_encode_seconds.push(seconds(t0));
  }
  result.documents_tokens = perDocument.reduce((n, d) => n + d.length, 0);
  for (let r = 0; r < Number(runs); ++r) {
    const t0 = process.hrtime.bigint();
    for (const d of perDocument) await tokenizer.decode(d, false);
    result.documents_decode_seconds.push(seconds(t0));
  }
  process.stdout.write(JSON.stringify(result) + "\n");
} else {
  const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
  const pre = tokenizer.getPreTokenizer();
  for await (const line of lines) {
    const item = JSON.parse(line);
    if (mode === "encode") {
      const e = await tokenizer.encode(item.text, null, { addSpecialTokens: false });
      out.push(JSON.stringify({ ids: e.getIds(), tokens: e.getTokens() }));
    } else if (mode === "pieces") {
      out.push(JSON.stringify({ pieces: pre.preTokenizeString(item.text).map((p) => p[0]) }));
    } else if (mode === "decode") {
      out.push(JSON.stringify({ text: await tokenizer.decode(item.ids, false) }));
    } else {
      throw new Error(`unknown mode ${mode}`);
    }
  }
  process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
}
