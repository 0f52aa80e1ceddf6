// Embeds two texts with an installed, header-only tinybert; prints the embedding size.
#include <iostream>
#include <tinybert/tinybert.hpp>

int main(int argc, char** argv) {
  if (argc != 2) return 2;
  try {
    const tinybert::Model model(argv[1]);
    tinybert::CpuRefBackend backend;
    tinybert::DirectRunner runner(model, backend);
    const auto rows = tinybert::embed_texts(runner, {"a", "b"});
    std::cout << rows.size() << "x" << rows[0].size() << "\n";
    return rows.size() == 2 && static_cast<int64_t>(rows[0].size()) == model.config().hidden_size
               ? 0
               : 1;
  } catch (const tinybert::Error& e) {
    std::cerr << e.what() << "\n";
    return 1;
  }
}
