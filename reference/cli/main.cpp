// dsr1: the command-line program. Subcommands live one per file in reference/cli/.
#include <fmt/format.h>

#include <algorithm>
#include <exception>
#include <map>

#include "reference/cli/command.hpp"
#include "reference/io/memory_reuse.hpp"

namespace dsr1::cli {
std::vector<Command>& registry() {
  static std::vector<Command> commands;
  return commands;
}
}  // namespace dsr1::cli

int main(int argc, char** argv) {
  using namespace dsr1::cli;
  dsr1::keep_freed_memory_for_reuse();  // layer l+1 reuses layer l's pages (memory_reuse.hpp)
  CLI::App app{"dsr1 " DSR1_VERSION
               ": a numeric reference implementation of DeepSeek-V2, V3 and R1",
               "dsr1"};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("dsr1 ") + DSR1_VERSION);
  auto& commands = registry();
  std::sort(commands.begin(), commands.end(),
            [](const Command& a, const Command& b) { return a.name < b.name; });
  std::map<CLI::App*, std::function<int()>> actions;
  for (auto& c : commands) {
    CLI::App* sub = app.add_subcommand(c.name, c.help);
    actions[sub] = c.setup(*sub);
  }
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    for (auto& [sub, action] : actions)
      if (sub->parsed()) return action();
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsr1: error: {}\n", e.what());
    return 1;
  }
  return 0;
}
