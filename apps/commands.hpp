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
int cmd_fill_mask(const std::vector<std::string>& args);
int cmd_extract(const std::vector<std::string>& args);
int cmd_classify(const std::vector<std::string>& args);

inline std::vector<Command> task_commands() {
  return {{"fill-mask", cmd_fill_mask}, {"extract", cmd_extract}, {"classify", cmd_classify}};
}

}  // namespace tinybert::cli
