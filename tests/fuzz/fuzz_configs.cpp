// Fuzz target: a model folder's JSON files, read as the converter reads them (config.json,
// tokenizer_config.json, ModelScope's configuration.json), and a .tbw header's config and
// tokenizer sections. One input holds the three files, separated by "\n----\n".
#include <fstream>

#include "fuzz_support.hpp"
#include "hf_config.hpp"
#include "tinybert/model.hpp"

using namespace tinybert;

namespace {

const char* const kArchitectures[] = {"encoder", "masked_lm", "sequence_classification", "uie",
                                      "siamese_uie"};

// The tiny models' vocab: the special tokens a settings object names must be in it.
const std::string& tiny_vocab() {
  static const std::string vocab = [] {
    std::ifstream in(std::string(TINYBERT_TEST_DATA_DIR) + "/tiny/tiny-bert/vocab.txt");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }();
  return vocab;
}

void check_hf_config(const nlohmann::json& hf, Architecture architecture) {
  const ModelConfig c = convert::model_config_from_hf(hf, architecture, "fuzz");
  c.validate();  // may throw Error: the converter validates after filling in more
  if (architecture == Architecture::sequence_classification)
    FUZZ_CHECK(!c.labels.empty(), "a classifier config without labels");
}

void check_tokenizer_config(const nlohmann::json& tc, int64_t max_positions) {
  const nlohmann::json settings = convert::tokenizer_settings_from_hf(tc, max_positions);
  const int64_t max_length = settings.at("model_max_length").get<int64_t>();
  FUZZ_CHECK(max_length >= 1 && max_length <= max_positions,
             "model_max_length " + std::to_string(max_length));
  // What the converter writes, the model loader must read back without a JSON exception.
  const TokenizerOptions options = tokenizer_options_from_json(settings);
  Tokenizer::from_vocab_text(tiny_vocab(), options);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const auto parts = fuzz::split_parts({reinterpret_cast<const char*>(data), size}, 3);
  const auto folder = fuzz::scratch_dir() / "model";
  std::filesystem::create_directories(folder);
  std::filesystem::remove(folder / "configuration.json");
  const char* const names[] = {"config.json", "tokenizer_config.json", "configuration.json"};
  for (size_t i = 0; i < parts.size(); ++i)
    fuzz::write_file(std::string("model/") + names[i], parts[i]);

  nlohmann::json hf, tc;
  const bool hf_ok = fuzz::ok_or_error([&] { hf = convert::read_json_file(folder / names[0]); });
  if (hf_ok) {
    std::optional<Architecture> named;
    fuzz::ok_or_error([&] { named = convert::architecture_from_hf(hf); });
    for (const char* a : kArchitectures)
      fuzz::ok_or_error([&] { check_hf_config(hf, parse_architecture(a)); });
    // The same JSON as a .tbw header's "config" section.
    fuzz::ok_or_error([&] { ModelConfig::from_json(hf); });
  }
  if (parts.size() > 1 &&
      fuzz::ok_or_error([&] { tc = convert::read_json_file(folder / names[1]); })) {
    for (int64_t max_positions : {int64_t{1}, int64_t{512}})
      fuzz::ok_or_error([&] { check_tokenizer_config(tc, max_positions); });
    // ... and as a .tbw header's "tokenizer" section.
    fuzz::ok_or_error(
        [&] { Tokenizer::from_vocab_text(tiny_vocab(), tokenizer_options_from_json(tc)); });
  }
  if (parts.size() > 2)
    fuzz::ok_or_error([&] {
      const auto info = convert::modelscope_info(folder);
      FUZZ_CHECK(info.has_value(), "configuration.json was written");
      if (info->zero_shot)
        FUZZ_CHECK(info->architecture == Architecture::sequence_classification, "zero-shot");
    });
  return 0;
}
