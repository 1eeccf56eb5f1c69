// The explorer's page (explorer_page.hpp).
#include "reference/serve/explorer_page.hpp"

#include <stdexcept>

#include "reference/html/page.hpp"

namespace dsr1::serve {

std::string explorer_page_html() {
  static const std::string page = [] {
    std::string text(explorer_page_text());
    const std::string marker = "/*DSR1_PICTURE_STYLE*/";
    const std::size_t at = text.find(marker);
    if (at == std::string::npos) throw std::logic_error("explorer.html has no " + marker + " marker");
    return text.replace(at, marker.size(), html::picture_style());
  }();
  return page;
}

}  // namespace dsr1::serve
