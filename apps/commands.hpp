// The task subcommands of the tinybert CLI, each in its own apps/cmd_*.cpp.
#pragma once

#include <string>
#include <vector>

namespace tinybert::cli {

struct Command {
  const char* name;
  int (*run)(const std::vector<std::string>& args);
};

// Add a task command here and its file to apps/CMakeLists.txt.
inline std::vector<Command> task_commands() { return {}; }

}  // namespace tinybert::cli
