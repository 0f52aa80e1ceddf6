// tinybert::Error: the one exception type for bad input from users and files.
#pragma once

#include <stdexcept>
#include <string>

namespace tinybert {

// Thrown for malformed files, invalid text, wrong shapes, bad options. The message says what
// was expected and what was found, so the CLI can print it as one line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace tinybert
