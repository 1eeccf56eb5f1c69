// Every label of a page's pictures is whole and readable at 100% zoom: Chromium (headless, Debian's
// /usr/bin/chromium driven by puppeteer-core) lays the page out at 1280 px and 100% zoom, and for
// each picture's inline SVG the check measures every <text> on screen (getBoundingClientRect,
// rotations included):
//   - no text reaches outside its SVG (it would be cut);
//   - no two texts overlap;
//   - no text overlaps a box of the picture (rect.node) unless it lies wholly inside it (the box's
//     own name): an edge label under a box is cut ("RMSNorm" read "MSNor").
// Usage: node check_labels.mjs PAGE.html [--pictures kind,kind]   (default: every picture)
//        node check_labels.mjs --self-test   (a picture with a label under a box must fail)
// Exit status 0 when every label is clear; 1 with one line per problem.
import { createRequire } from "node:module";
import { writeFileSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const require = createRequire(new URL("../npm/package.json", import.meta.url));
const puppeteer = require("puppeteer-core");

async function problemsOf(page, kinds) {
  return page.evaluate((kinds) => {
    const problems = [];
    const overlap = (a, b) =>
      Math.min(a.right, b.right) - Math.max(a.left, b.left) > 0.5 &&
      Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top) > 0.5;
    const inside = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5 && a.top >= b.top - 0.5 && a.bottom <= b.bottom + 0.5;
    for (const fig of document.querySelectorAll("figure.picture")) {
      const kind = fig.getAttribute("data-picture");
      if (kinds.length && !kinds.includes(kind)) continue;
      const caption = fig.querySelector("figcaption")?.textContent ?? kind;
      for (const svg of fig.querySelectorAll("svg")) {
        const box = svg.getBoundingClientRect();
        const texts = [...svg.querySelectorAll("text")].filter((t) => t.textContent.trim().length > 0)
          .map((t) => ({ t: t.textContent, r: t.getBoundingClientRect() }));
        const nodes = [...svg.querySelectorAll("rect.node")].map((n) => n.getBoundingClientRect());
        for (const a of texts) {
          if (!inside(a.r, box)) problems.push(`${kind} "${caption}": label "${a.t}" reaches outside its picture (cut)`);
          for (const n of nodes)
            if (overlap(a.r, n) && !inside(a.r, n)) problems.push(`${kind} "${caption}": label "${a.t}" overlaps a box`);
        }
        for (let i = 0; i < texts.length; ++i)
          for (let j = i + 1; j < texts.length; ++j)
            if (overlap(texts[i].r, texts[j].r))
              problems.push(`${kind} "${caption}": labels "${texts[i].t}" and "${texts[j].t}" overlap`);
      }
    }
    return problems;
  }, kinds);
}

async function check(browser, path, kinds) {
  const page = await browser.newPage();
  await page.setViewport({ width: 1280, height: 900, deviceScaleFactor: 1 });
  await page.goto("file://" + resolve(path), { waitUntil: "load" });
  // The step mode shows one section at a time; show them all so that every picture is laid out.
  await page.evaluate(() => document.getElementById("all")?.click());
  const problems = await problemsOf(page, kinds);
  const count = await page.evaluate((kinds) => [...document.querySelectorAll("figure.picture")]
    .filter((f) => !kinds.length || kinds.includes(f.getAttribute("data-picture"))).length, kinds);
  await page.close();
  return { problems, count };
}

const args = process.argv.slice(2);
const browser = await puppeteer.launch({ executablePath: "/usr/bin/chromium", headless: true,
  args: ["--no-sandbox", "--disable-gpu", "--no-first-run"] });
let status = 0;
try {
  if (args[0] === "--self-test") {
    // The old MLA picture's fault: an edge label centred in a 30 px gap, under the next box.
    const dir = mkdtempSync(join(tmpdir(), "dsr1-labels-"));
    const bad = join(dir, "bad.html");
    writeFileSync(bad, `<!DOCTYPE html><html><body><figure class="picture" data-picture="mla-flow"><figcaption>t</figcaption>
      <svg viewBox="0 0 400 100" width="400" height="100"><rect class="node" x="10" y="20" width="150" height="46"/>
      <rect class="node" x="190" y="20" width="150" height="46"/><text x="175" y="38" text-anchor="middle" font-size="10">RMSNorm</text>
      <text x="85" y="40" text-anchor="middle">c_q</text></svg></figure></body></html>`);
    const { problems } = await check(browser, bad, []);
    rmSync(dir, { recursive: true });
    const caught = problems.some((p) => p.includes('"RMSNorm" overlaps a box'));
    console.log(`self-test: a label under a box: ${caught ? "caught" : "NOT CAUGHT " + JSON.stringify(problems)}`);
    status = caught ? 0 : 1;
  } else {
    const path = args[0];
    const at = args.indexOf("--pictures");
    const kinds = at >= 0 ? args[at + 1].split(",") : [];
    const { problems, count } = await check(browser, path, kinds);
    for (const p of problems) console.log(p);
    if (count === 0) problems.push(`${path}: no picture to check`), console.log(`${path}: no picture to check`);
    if (problems.length === 0) console.log(`${path}: every label of ${count} pictures is whole and clear of the others`);
    status = problems.length ? 1 : 0;
  }
} finally {
  await browser.close();
}
process.exit(status);
