// One self-contained HTML page: inline CSS, inline SVG pictures, a few lines of inline JavaScript
// for the classroom's step mode (one section at a time, previous/next by buttons or arrow keys,
// or all sections at once). No external URL anywhere: the page opens from disk and prints.
// Leaves out: the pictures (pictures.hpp) and what goes into the sections (html_tracer.hpp).
//
// The page is also well-formed XML (every element closed, the script inside a CDATA section
// that HTML reads as a comment), so that tests/html/check_page.py can parse it with a plain
// XML parser and count what is drawn.
#pragma once

#include <string>
#include <vector>

namespace dsr1::html {

// The pages' style sheet (large type for a projector, the pictures' layout), for other pages that
// show the same pictures: the explorer of `dsr1 serve` (reference/serve/).
const char* picture_style();

class Page {
 public:
  explicit Page(std::string title);

  // Starts a section (a step of the step mode): "§1.2 Multi-head attention".
  void section(const std::string& heading);
  // Appends raw HTML (a picture, a table) to the current section (opening one if none is open).
  void add(const std::string& fragment);
  // A sub-heading inside the section ("step 3: ...").
  void heading(const std::string& text);
  // A line of commentary. Consecutive lines join into one paragraph; indented lines (tables of
  // the terminal) stay preformatted; an empty line ends the paragraph.
  void note(const std::string& text);
  // An erratum call-out: where the explainer document rounds or is wrong (docs/errata.md).
  void erratum(const std::string& text);

  std::size_t sections() const { return sections_.size(); }
  // The page as one string, and written to `path` (throws naming the path if it cannot be written).
  std::string render() const;
  void write(const std::string& path) const;

 private:
  void flush_text();
  struct Section {
    std::string heading;
    std::string body;
  };
  std::string title_;
  std::vector<Section> sections_;
  std::vector<std::string> paragraph_;  // lines of the open paragraph
  bool preformatted_ = false;           // the open paragraph is a block of indented lines
};

}  // namespace dsr1::html
