// tinybert::Error, the one exception type for bad input from users and files, and InputError,
// the Error that also says which input string (and which character in it) was at fault.
#pragma once

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>

namespace tinybert {

// Thrown for malformed files, invalid text, wrong shapes, bad options. The message says what
// was expected and what was found, so the CLI can print it as one line.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// An Error located in one of a request's input strings. The location travels as data (the
// server copies it into its JSON error as input_index / position); the message starts with the
// same location for people, 1-based: "line 3, character 7: ..." or "text 3: ...".
class InputError : public Error {
 public:
  enum class Noun { line, text };  // how the message names an input: fill-mask lines, texts

  // input_index and character are 0-based (character: a code point of that input).
  InputError(size_t input_index, std::optional<size_t> character, const std::string& what,
             Noun noun = Noun::line)
      : Error(prefix(noun, input_index, character) + what),
        input_index_(input_index),
        character_(character) {}

  size_t input_index() const { return input_index_; }
  std::optional<size_t> character() const { return character_; }

 private:
  static std::string prefix(Noun noun, size_t input_index, std::optional<size_t> character) {
    std::string s = noun == Noun::line ? "line " : "text ";
    s += std::to_string(input_index + 1);
    if (character) {
      s += ", character ";
      s += std::to_string(*character + 1);
    }
    s += ": ";
    return s;
  }

  size_t input_index_;
  std::optional<size_t> character_;
};

}  // namespace tinybert
