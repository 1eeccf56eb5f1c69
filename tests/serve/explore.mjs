// The classroom explorer in a real browser: starts `dsr1 serve` on a free loopback port, drives
// Debian's headless Chromium with puppeteer-core (tests/npm) as a student would (type a prompt,
// run, open a layer, click a head, pick a token, read its router, read the next-token list), and
// checks that the numbers on the page are those of `dsr1 run --dump` for the same prompt, read
// here from the safetensors file. Screenshots of each view are kept in --out (CI artefacts; the
// README shows them).
//
// Usage: node tests/serve/explore.mjs --dsr1 build/dsr1 --out build/serve/tiny-v3
//          [--model-args "--preset tiny-v3"] [--tokens 3,17,5,99 | --text "The capital of France is"]
//          [--layer 1] [--head 2] [--token 2]
//          [--screenshots DIR]  (also copy the screenshots there, e.g. docs/images)
// Exit status 0 if every check passes; else 1, naming each failure.
import { spawn, execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const require = createRequire(new URL('../npm/package.json', import.meta.url));
const puppeteer = require('puppeteer-core');

// ---- arguments -------------------------------------------------------------------------------
const args = { 'model-args': '--preset tiny-v3', tokens: '3,17,5,99', layer: '1', head: '2', token: '2' };
for (let i = 2; i < process.argv.length; i += 2) args[process.argv[i].replace(/^--/, '')] = process.argv[i + 1];
if (!args.dsr1 || !args.out) {
  console.error('usage: explore.mjs --dsr1 PROGRAM --out DIR [--model-args "..."] [--tokens ...]');
  process.exit(2);
}
fs.mkdirSync(args.out, { recursive: true });
const modelArgs = args['model-args'].split(/\s+/).filter(Boolean);
const layer = Number(args.layer), head = Number(args.head), token = Number(args.token);
const failures = [];
function check(ok, what) {
  if (!ok) failures.push(what);
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
}

// ---- the reference numbers: dsr1 run --dump ---------------------------------------------------
function readSafetensors(file) {
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  const tensors = {};
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (t.dtype !== 'F64') throw new Error(`${file}: ${name} is ${t.dtype}, expected F64`);
    const [begin, end] = t.data_offsets;
    const bytes = buf.subarray(8 + n + begin, 8 + n + end);
    const data = new Float64Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length));
    tensors[name] = { shape: t.shape, data };
  }
  return tensors;
}
const dumpFile = path.join(args.out, 'run.safetensors');
// The same prompt through `dsr1 run`: its --json report names the tokens (text is tokenized there
// as the server tokenizes it); --jsonl keeps the traced tensors off stdout.
const prompt = args.text !== undefined ? ['--text', args.text] : ['--tokens', args.tokens];
const report = JSON.parse(execFileSync(args.dsr1, ['run', ...modelArgs, ...prompt, '--trace', `layers.${layer}.*`,
  '--jsonl', path.join(args.out, 'run.jsonl'), '--dump', dumpFile, '--json'], { stdio: ['ignore', 'pipe', 'inherit'] }));
const dump = readSafetensors(dumpFile);
const tokens = report.tokens;
const T = tokens.length;
const probs = dump[`layers.${layer}.attn.probs`];     // [n_h, T, T]
const experts = dump[`layers.${layer}.moe.experts`];  // [T, K]
const gates = dump[`layers.${layer}.moe.g`];          // [T, K]
const scores = dump[`layers.${layer}.moe.s`];         // [T, N_r]
const logits = dump.logits;                           // [T, V]
const n_h = probs.shape[0], K = experts.shape[1], N_r = scores.shape[1], V = logits.shape[1];

// ---- the server ------------------------------------------------------------------------------
const server = spawn(args.dsr1, ['serve', ...modelArgs, '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'] });
let serverErr = '';
server.stderr.on('data', (d) => { serverErr += d; });
const url = await new Promise((resolve, reject) => {
  let out = '';
  const timer = setTimeout(() => reject(new Error(`dsr1 serve printed no address in 60 s: ${out} ${serverErr}`)), 60000);
  server.stdout.on('data', (d) => {
    out += d;
    const m = out.match(/dsr1 serve: (http:\/\/127\.0\.0\.1:\d+\/)/);
    if (m) { clearTimeout(timer); resolve(m[1]); }
  });
  server.on('exit', (code) => reject(new Error(`dsr1 serve exited with ${code}: ${serverErr}`)));
});
console.log(`server at ${url}`);

// ---- the browser -----------------------------------------------------------------------------
const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'dsr1-chromium-'));
const browser = await puppeteer.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  userDataDir: profile,
  args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--hide-scrollbars'],
});
const shots = [];
try {
  const page = await browser.newPage();
  await page.setViewport({ width: 1400, height: 1000 });
  const problems = [];
  page.on('console', (m) => problems.push(`console ${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()}`));
  const outside = [];
  page.on('request', (r) => { if (!r.url().startsWith(url)) outside.push(r.url()); });
  page.setDefaultTimeout(120000);

  await page.goto(url);
  await page.waitForSelector('body[data-explorer="ready"]');
  async function shot(name, selector) {
    const file = path.join(args.out, `${name}.png`);
    const element = selector ? await page.$(selector) : null;
    if (element) await element.screenshot({ path: file });
    else await page.screenshot({ path: file });
    shots.push(file);
    check(fs.statSync(file).size > 5000, `screenshot ${name}.png is not blank (${fs.statSync(file).size} bytes)`);
  }

  // Type the prompt and run.
  const kindEnabled = await page.$eval('#kind', (e) => !e.disabled);
  check(kindEnabled === (args.text !== undefined), `the page offers text prompts ${args.text !== undefined ? '' : 'not '}(the model's tokenizer ${args.text !== undefined ? 'fits' : 'does not fit'})`);
  if (args.text !== undefined) await page.select('#kind', 'text');
  await page.click('#prompt', { clickCount: 3 });
  await page.keyboard.press('Backspace');
  await page.type('#prompt', args.text !== undefined ? args.text : args.tokens);
  await page.click('#run');
  await page.waitForSelector('#status[data-state="ready"]');
  const chips = await page.$$eval('#tokens .token-chip', (e) => e.map((x) => x.textContent));
  const ids = await page.$$eval('#tokens .token-chip', (e) => e.map((x) => Number(x.getAttribute('data-id'))));
  check(chips.length === T && ids.every((id, t) => id === tokens[t]),
        `the page shows the ${T} tokens of dsr1 run (${chips.join(' | ')})`);
  const info = await page.$eval('#run-info', (e) => e.textContent);
  check(/Computed by the reference \(float64\), naive attention path in [0-9.]+ s/.test(info),
        `the page says which path computed the numbers and how long it took: "${info.slice(0, 80)}..."`);

  // The next-token list equals the dump's logits: ids in order, logits bit for bit.
  const next = await page.$$eval('#next-tokens td.next', (cells) => cells.map((c) => ({
    t: Number(c.parentElement.getAttribute('data-position')), rank: Number(c.getAttribute('data-rank')),
    id: Number(c.getAttribute('data-id')), logit: Number(c.getAttribute('data-logit')),
    prob: Number(c.getAttribute('data-prob')) })));
  check(next.length === 5 * T, `the next-token list has 5 candidates after each of the ${T} positions`);
  let nextOk = next.length > 0;
  for (const n of next) {
    const row = logits.data.subarray(n.t * V, (n.t + 1) * V);
    const order = Array.from(row.keys()).sort((a, b) => row[b] - row[a] || a - b);
    const top = row[order[0]];
    let sum = 0;
    for (const l of row) sum += Math.exp(l - top);
    const prob = Math.exp(row[n.id] - top) / sum;
    if (order[n.rank] !== n.id || row[n.id] !== n.logit || Math.abs(n.prob - prob) > 1e-12 * prob) {
      nextOk = false;
      console.log(`  position ${n.t} rank ${n.rank}: page id ${n.id} logit ${n.logit} p ${n.prob}; dump id ${order[n.rank]} logit ${row[order[n.rank]]} p ${prob}`);
    }
  }
  check(nextOk, 'next tokens on the page = dump logits (ids by rank, logits exactly, softmax to 1e-12)');
  await shot('explorer-run', null);

  // Open the layer from the model map.
  await page.click(`#map button[data-block="${layer}"]`);
  await page.waitForSelector(`#layer[data-layer="${layer}"]`);
  const heads = await page.$$eval('#heads .head', (e) => e.map((x) => ({
    head: Number(x.getAttribute('data-head')),
    cells: x.querySelectorAll('figure[data-picture="attention"] rect.cell').length })));
  check(heads.length === Math.min(n_h, 16) && heads.every((h) => h.cells === T * T),
        `layer ${layer}: ${Math.min(n_h, 16)} heads side by side, each ${T} x ${T} cells`);

  // Click a head: it is enlarged, and its weights are the dump's.
  await page.click(`#heads .head[data-head="${head}"]`);
  await page.waitForSelector(`#head-large[data-head="${head}"]`);
  const titles = await page.$$eval('#head-large rect.cell title', (e) => e.map((x) => x.textContent));
  let headOk = titles.length === T * T;
  for (const title of titles) {
    // "query 4 key 2: weight 0.1472", with a tokenizer "query 4 '␣France' key 2 '␣capital': weight 0.1472"
    const m = title.match(/^query (\d+)(?: '.*')? key (\d+)(?: '.*')?: (?:masked \(score -inf, )?weight (-?[0-9.]+)\)?$/);
    if (!m) { headOk = false; console.log(`  unreadable cell title: ${title}`); continue; }
    const want = probs.data[(head * T + Number(m[1])) * T + Number(m[2])];
    if (Math.abs(Number(m[3]) - want) > 0.5e-4 + 1e-15) { headOk = false; console.log(`  ${title}: dump ${want}`); }
  }
  check(headOk, `head ${head} enlarged: its ${T * T} weights (4 digits on the page) = the dump's layers.${layer}.attn.probs`);
  await shot('explorer-attention', '#view-attention');
  await shot('explorer-latent', '#view-latent');
  await shot('explorer-flow', '#view-flow');

  // Pick a token: its router.
  await page.click(`#tokens .token-chip[data-t="${token}"]`);
  await page.waitForSelector(`#layer[data-token="${token}"]`);
  const chosen = await page.$$eval('#router-chosen tr[data-expert]', (rows) => rows.map((r) => ({
    expert: Number(r.getAttribute('data-expert')), s: Number(r.getAttribute('data-s')),
    gate: Number(r.getAttribute('data-gate')) })));
  let routerOk = chosen.length === K;
  chosen.forEach((c, k) => {
    const e = experts.data[token * K + k], g = gates.data[token * K + k], s = scores.data[token * N_r + e];
    if (c.expert !== e || c.gate !== g || c.s !== s) {
      routerOk = false;
      console.log(`  rank ${k}: page expert ${c.expert} gate ${c.gate} s ${c.s}; dump ${e} ${g} ${s}`);
    }
  });
  check(routerOk, `token ${token}'s router: the ${K} chosen experts, their scores and gates = the dump's (exactly)`);
  const figure = await page.$eval('#router figure[data-picture="router"]', (f) => ({
    experts: Number(f.getAttribute('data-experts')), chosen: f.getAttribute('data-chosen'),
    bars: f.querySelectorAll('rect.bar:not(.biased)').length }));
  check(figure.experts === N_r && figure.bars === N_r &&
        figure.chosen === Array.from(experts.data.subarray(token * K, (token + 1) * K)).join(' '),
        `the router picture has ${N_r} score bars and highlights the chosen experts`);
  await shot('explorer-router', '#view-router');
  await shot('explorer-norms', '#view-norms');
  await shot('explorer-residual', '#view-residual');
  await shot('explorer-next', '#view-next');
  await shot('explorer-rope', '#view-rope');

  check(outside.length === 0, `no request leaves the server (${outside.join(' ')})`);
  check(problems.length === 0, `no console message or page error (${problems.join('; ')})`);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
  server.kill('SIGTERM');
}
const code = await new Promise((resolve) => server.on('exit', (c) => resolve(c)));
check(code === 0 && /SIGTERM received, stopping/.test(serverErr), `the server stops cleanly on SIGTERM (exit ${code})`);
if (args.screenshots) {
  fs.mkdirSync(args.screenshots, { recursive: true });
  for (const f of shots) fs.copyFileSync(f, path.join(args.screenshots, path.basename(f)));
}
console.log(failures.length ? `${failures.length} check(s) failed` : 'all checks passed');
process.exit(failures.length ? 1 : 0);
