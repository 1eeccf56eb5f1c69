// The explorer's page: reference/serve/explorer.html, compiled into the program (CMake writes it
// into a raw string, reference/serve/CMakeLists.txt), with the style sheet of the HTML pages
// (html/page.hpp picture_style) put in, so that the pictures look as they do in `--html` pages.
// Leaves out: what the page shows (views.hpp) and how it is served (server.hpp).
#pragma once

#include <string>
#include <string_view>

namespace dsr1::serve {

// explorer.html as written (generated: build/reference/serve/explorer_page_text.cpp).
std::string_view explorer_page_text();

// The page as served: explorer.html with the pictures' style sheet in place of its
// /*DSR1_PICTURE_STYLE*/ marker.
std::string explorer_page_html();

}  // namespace dsr1::serve
