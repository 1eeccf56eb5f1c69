// Subcommand registry of the `dsr1` program: each reference/cli/cmd_*.cpp file registers one
// subcommand with a static `Register` object, so adding a command touches no other file.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <string>
#include <vector>

namespace dsr1::cli {

struct Command {
  std::string name;
  std::string help;
  // Adds options to `sub` and returns the action to run when the subcommand is chosen.
  // The action returns the process exit code.
  std::function<std::function<int()>(CLI::App& sub)> setup;
};

std::vector<Command>& registry();

struct Register {
  explicit Register(Command c) { registry().push_back(std::move(c)); }
};

}  // namespace dsr1::cli
