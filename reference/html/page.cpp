// One self-contained HTML page (page.hpp).
#include "reference/html/page.hpp"

#include <fmt/format.h>

#include <fstream>
#include <stdexcept>

#include "reference/html/pictures.hpp"

namespace dsr1::html {
namespace {

// Large type and strong contrast for a projector; print shows every section, without the buttons.
const char* kStyle = R"(
body { font-family: sans-serif; font-size: 18px; line-height: 1.45; margin: 0 auto; max-width: 1320px;
       padding: 0 20px 40px; color: #111; background: #fff; }
header { position: sticky; top: 0; background: #fff; border-bottom: 2px solid #345; padding: 8px 0;
         z-index: 1; display: flex; gap: 12px; align-items: center; flex-wrap: wrap; }
header h1 { font-size: 22px; margin: 0 12px 0 0; }
header button { font-size: 18px; padding: 4px 14px; }
#counter { font-weight: bold; }
nav.contents { font-size: 15px; margin: 10px 0; }
nav.contents a { margin-right: 12px; color: #235; }
section.step { border-bottom: 1px solid #ccc; padding: 8px 0 20px; }
section.step h2 { font-size: 26px; color: #123; }
section.step h3 { font-size: 20px; color: #345; margin: 18px 0 6px; }
p.note { margin: 6px 0; }
pre.note { font-size: 16px; background: #f6f6f6; padding: 6px 10px; overflow-x: auto; }
aside.erratum { border-left: 6px solid #d95f02; background: #fff3e8; padding: 8px 12px; margin: 10px 0; }
aside.erratum strong { color: #a33c00; }
figure.picture { margin: 14px 0; overflow-x: auto; }
figure.picture figcaption { font-weight: bold; margin-bottom: 4px; }
figure.picture svg { max-width: 100%; height: auto; }
figure.picture { display: inline-block; vertical-align: top; margin-right: 24px; }
figure[data-picture="attention"] rect.cell { stroke: #ffffff; stroke-width: 0.5; }
section.step { scroll-margin-top: 70px; }
table.numbers { border-collapse: collapse; font-family: monospace; font-size: 16px; margin: 4px 0; }
table.numbers td, table.numbers th { border: 1px solid #bbb; padding: 2px 8px; text-align: right; }
div.tensor, p.tensor { margin: 8px 0; }
code { font-size: 16px; }
@media print {
  header button, #counter, nav.contents { display: none; }
  section.step { display: block !important; break-inside: avoid-page; }
  header { position: static; }
}
)";

// Step mode: one section at a time (previous/next buttons, arrow keys, a contents link) or all
// at once. Inside CDATA so that the page stays well-formed XML; HTML reads the markers as comments.
const char* kScript = R"(//<![CDATA[
(function () {
  var sections = document.querySelectorAll('section.step');
  var counter = document.getElementById('counter');
  var current = 0, all = false;
  function show() {
    for (var i = 0; i < sections.length; i++)
      sections[i].style.display = (all || i === current) ? '' : 'none';
    counter.textContent = all ? 'all ' + sections.length + ' sections'
                              : (current + 1) + ' / ' + sections.length;
  }
  function go(i) {
    all = false;
    current = Math.max(0, Math.min(sections.length - 1, i));
    show();
    // After the browser's own jump to a #section: the page starts at its top.
    window.setTimeout(function () { window.scrollTo(0, 0); }, 0);
  }
  document.getElementById('prev').addEventListener('click', function () { go(current - 1); });
  document.getElementById('next').addEventListener('click', function () { go(current + 1); });
  document.getElementById('all').addEventListener('click', function () { all = !all; show(); });
  document.addEventListener('keydown', function (e) {
    if (e.key === 'ArrowRight' || e.key === 'PageDown') go(current + 1);
    if (e.key === 'ArrowLeft' || e.key === 'PageUp') go(current - 1);
  });
  function follow_hash() {
    if (window.location.hash === '#all') { all = true; show(); return; }
    for (var i = 0; i < sections.length; i++)
      if ('#' + sections[i].id === window.location.hash) { go(i); return; }
    show();
  }
  window.addEventListener('hashchange', follow_hash);
  window.addEventListener('load', function () { if (!all) window.scrollTo(0, 0); });
  follow_hash();
  document.body.setAttribute('data-step-mode', 'ready');
})();
//]]>)";

}  // namespace

const char* picture_style() { return kStyle; }

Page::Page(std::string title) : title_(std::move(title)) {}

void Page::section(const std::string& heading) {
  flush_text();
  sections_.push_back({heading, ""});
}

void Page::add(const std::string& fragment) {
  flush_text();
  if (sections_.empty()) sections_.push_back({title_, ""});
  sections_.back().body += fragment;
}

void Page::heading(const std::string& text) { add(fmt::format("<h3>{}</h3>\n", escape(text))); }

void Page::note(const std::string& text) {
  // A multi-line note is several lines.
  if (const auto nl = text.find('\n'); nl != std::string::npos) {
    note(text.substr(0, nl));
    note(text.substr(nl + 1));
    return;
  }
  if (text.find_first_not_of(' ') == std::string::npos) {
    flush_text();
    return;
  }
  const bool indented = text.rfind("  ", 0) == 0;
  if (indented != preformatted_) flush_text();
  preformatted_ = indented;
  paragraph_.push_back(text);
}

void Page::erratum(const std::string& text) {
  add(fmt::format("<aside class=\"erratum\"><strong>Erratum (docs/errata.md):</strong> {}</aside>\n",
                  escape(text)));
}

void Page::flush_text() {
  if (paragraph_.empty()) return;
  if (sections_.empty()) sections_.push_back({title_, ""});
  std::string joined;
  for (const std::string& line : paragraph_) {
    if (!joined.empty()) joined += preformatted_ ? "\n" : " ";
    joined += escape(line);
  }
  sections_.back().body += preformatted_ ? fmt::format("<pre class=\"note\">{}</pre>\n", joined)
                                         : fmt::format("<p class=\"note\">{}</p>\n", joined);
  paragraph_.clear();
}

std::string Page::render() const {
  // flush_text() mutates; render a copy so that the page can still grow afterwards.
  Page p = *this;
  p.flush_text();
  std::string s = "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n";
  s += fmt::format("<title>{}</title>\n<style>{}</style>\n</head>\n<body>\n", escape(p.title_), kStyle);
  s += fmt::format(
      "<header><h1>{}</h1><button id=\"prev\" type=\"button\">&#8592; previous</button>"
      "<span id=\"counter\">all {} sections</span><button id=\"next\" type=\"button\">next &#8594;</button>"
      "<button id=\"all\" type=\"button\">all / one at a time</button></header>\n",
      escape(p.title_), p.sections_.size());
  s += "<nav class=\"contents\">";
  for (std::size_t i = 0; i < p.sections_.size(); ++i)
    s += fmt::format("<a href=\"#s{}\">{}</a>", i + 1, escape(p.sections_[i].heading));
  s += "</nav>\n";
  for (std::size_t i = 0; i < p.sections_.size(); ++i)
    s += fmt::format("<section class=\"step\" id=\"s{}\">\n<h2>{}</h2>\n{}</section>\n", i + 1,
                     escape(p.sections_[i].heading), p.sections_[i].body);
  s += fmt::format("<script>{}</script>\n</body>\n</html>\n", kScript);
  return s;
}

void Page::write(const std::string& path) const {
  std::ofstream out(path, std::ios::binary);
  if (!out) throw std::runtime_error(fmt::format("--html: cannot open '{}' for writing", path));
  out << render();
  if (!out) throw std::runtime_error(fmt::format("--html: writing '{}' failed", path));
}

}  // namespace dsr1::html
