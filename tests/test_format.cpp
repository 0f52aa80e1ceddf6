// The .tbw format: round trip, validation of malformed files, weight binding errors, zero-copy
// opening, and converter errors on bad model folders.
#include <catch2/catch.hpp>
#include <fstream>
#include <random>

#include "convert.hpp"
#include "test_support.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
namespace fs = std::filesystem;

namespace {

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}
void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A converted tiny model: a real, valid .tbw to corrupt.
fs::path valid_tbw() {
  const auto out = test::scratch_dir("format") / "tiny-bert.tbw";
  if (!fs::exists(out))
    convert::convert_folder(test::test_data_dir() / "tiny/tiny-bert", out.string());
  return out;
}

// Opens path as a Model; returns the Error message, or "" when it opened.
std::string open_error(const fs::path& path) {
  try {
    Model model(path.string());
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

// Rewrites the JSON header of a valid file with edit() applied. Tensor offsets are relative to
// the data start, so the data moves along with a header of a new length.
fs::path with_header(const std::string& name, const std::function<void(nlohmann::json&)>& edit) {
  const std::string bytes = read_bytes(valid_tbw());
  const uint64_t header_bytes = load_le<uint64_t>(bytes.data() + 16);
  auto header = nlohmann::json::parse(bytes.substr(24, header_bytes));
  edit(header);
  std::string text = header.dump();
  text.resize(
      (24 + text.size() + format::kAlignment - 1) / format::kAlignment * format::kAlignment - 24,
      ' ');
  std::string out = bytes.substr(0, 24);
  const uint64_t new_bytes = text.size();
  std::memcpy(out.data() + 16, &new_bytes, 8);
  out += text;
  out += bytes.substr(24 + header_bytes);
  const auto path = test::scratch_dir("format") / (name + ".tbw");
  write_bytes(path, out);
  return path;
}

nlohmann::json& tensor_entry(nlohmann::json& header, const std::string& name) {
  for (auto& t : header["tensors"])
    if (t["name"] == name) return t;
  throw std::runtime_error("no tensor " + name);
}

int64_t rss_kb() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stoll(line.substr(6));
  return -1;
}

}  // namespace

TEST_CASE("a converted file opens and describes itself", "[format]") {
  const WeightFile file(valid_tbw().string());
  CHECK(file.config()["architecture"] == "encoder");
  CHECK(file.find("layers.1.attention.qkv.weight")->view.shape == Shape{96, 32});
  for (const auto& t : file.tensors()) CHECK(t.offset % format::kAlignment == 0);
  const auto d = describe(file);
  CHECK(d["tensors"].size() == file.tensors().size());
}

TEST_CASE("malformed .tbw files give a clear Error", "[format][errors]") {
  const std::string bytes = read_bytes(valid_tbw());
  const auto dir = test::scratch_dir("format");
  SECTION("truncated at many lengths") {
    for (size_t len : {size_t{0}, size_t{7}, size_t{8}, size_t{23}, size_t{24}, size_t{100},
                       bytes.size() / 2, bytes.size() - 1}) {
      write_bytes(dir / "truncated.tbw", bytes.substr(0, len));
      INFO("length " << len);
      CHECK_FALSE(open_error(dir / "truncated.tbw").empty());
    }
  }
  SECTION("wrong magic, version, alignment, header size") {
    std::string b = bytes;
    b[0] = 'X';
    write_bytes(dir / "magic.tbw", b);
    CHECK_THAT(open_error(dir / "magic.tbw"), Catch::Contains("magic"));
    b = bytes;
    b[8] = 9;
    write_bytes(dir / "version.tbw", b);
    CHECK_THAT(open_error(dir / "version.tbw"), Catch::Contains("version 9"));
    b = bytes;
    b[12] = 3;
    write_bytes(dir / "alignment.tbw", b);
    CHECK_THAT(open_error(dir / "alignment.tbw"), Catch::Contains("alignment"));
    b = bytes;
    for (int i = 16; i < 24; ++i) b[i] = '\xff';
    write_bytes(dir / "header.tbw", b);
    CHECK_THAT(open_error(dir / "header.tbw"), Catch::Contains("does not fit"));
  }
  SECTION("bad tensor entries") {
    const std::string qkv = "layers.0.attention.qkv.weight";
    CHECK_THAT(
        open_error(with_header("misaligned", [&](auto& h) { tensor_entry(h, qkv)["offset"] = 8; })),
        Catch::Contains("not aligned"));
    CHECK_THAT(open_error(with_header(
                   "outside", [&](auto& h) { tensor_entry(h, qkv)["offset"] = 1ull << 40; })),
               Catch::Contains("outside"));
    CHECK_THAT(open_error(with_header(
                   "overflow", [&](auto& h) { tensor_entry(h, qkv)["offset"] = UINT64_MAX - 63; })),
               Catch::Contains("outside"));
    CHECK_THAT(
        open_error(with_header("bytes", [&](auto& h) { tensor_entry(h, qkv)["bytes"] = 12; })),
        Catch::Contains("expected"));
    CHECK_THAT(
        open_error(with_header("dtype", [&](auto& h) { tensor_entry(h, qkv)["dtype"] = "f64"; })),
        Catch::Contains("unknown dtype 'f64'"));
    CHECK_THAT(open_error(with_header("dims",
                                      [&](auto& h) {
                                        tensor_entry(h, qkv)["shape"] = {1ull << 62, 1ull << 62};
                                      })),
               Catch::Contains("overflows"));
    CHECK_THAT(open_error(with_header("negative",
                                      [&](auto& h) {
                                        tensor_entry(h, qkv)["shape"] = {-96, 32};
                                      })),
               Catch::Contains("negative"));
    CHECK_THAT(
        open_error(with_header(
            "duplicate",
            [&](auto& h) { tensor_entry(h, "layers.1.attention.qkv.weight")["name"] = qkv; })),
        Catch::Contains("duplicate tensor name"));
    CHECK_THAT(open_error(with_header("overlap",
                                      [&](auto& h) {
                                        tensor_entry(h, "layers.1.attention.qkv.weight")["offset"] =
                                            tensor_entry(h, qkv)["offset"];
                                      })),
               Catch::Contains("overlap"));
    CHECK_THAT(open_error(with_header("noconfig", [&](auto& h) { h.erase("config"); })),
               Catch::Contains("config"));
  }
  SECTION("binding: missing, misshapen and unknown tensors say expected vs got") {
    CHECK_THAT(open_error(with_header("missing",
                                      [&](auto& h) {
                                        tensor_entry(h, "layers.1.ffn.norm.weight")["name"] =
                                            "layers.1.ffn.norm.weights";
                                      })),
               Catch::Contains("missing tensor 'layers.1.ffn.norm.weight': expected [32] f32"));
    CHECK_THAT(open_error(with_header("shape",
                                      [&](auto& h) {
                                        auto& t =
                                            tensor_entry(h, "layers.0.attention.output.weight");
                                        t["shape"] = {16, 64};
                                      })),
               Catch::Contains("tensor 'layers.0.attention.output.weight': expected [32,32] "
                               "f32/f16/bf16/i8, got [16,64] f32"));
    CHECK_THAT(open_error(with_header("config", [&](auto& h) { h["config"]["num_layers"] = 1; })),
               Catch::Contains("unexpected tensor 'layers.1."));
    CHECK_THAT(open_error(with_header("heads", [&](auto& h) { h["config"]["num_heads"] = 5; })),
               Catch::Contains("not divisible"));
    // Numbers JSON can hold but the fields cannot: a float beyond int64 was converted with
    // undefined behaviour (tests/fuzz/fuzz_tbw), so was a double beyond float.
    CHECK_THAT(open_error(with_header(
                   "huge", [&](auto& h) { h["config"]["max_position_embeddings"] = 8.2e20; })),
               Catch::Contains("\"max_position_embeddings\" must be an integer, found 8.2e+20"));
    CHECK_THAT(open_error(with_header("float", [&](auto& h) { h["config"]["num_layers"] = 2.5; })),
               Catch::Contains("\"num_layers\" must be an integer"));
    CHECK_THAT(
        open_error(with_header("eps", [&](auto& h) { h["config"]["layer_norm_eps"] = 1e300; })),
        Catch::Contains("\"layer_norm_eps\" must be a number in float's range"));
    CHECK_THAT(open_error(with_header(
                   "max_len", [&](auto& h) { h["tokenizer"]["model_max_length"] = -1e30; })),
               Catch::Contains("\"model_max_length\" must be an integer"));
  }
  SECTION("random corruption never crashes") {
    std::mt19937 rng(42);
    const uint64_t header_end = 24 + load_le<uint64_t>(bytes.data() + 16);
    int errors = 0;
    for (int trial = 0; trial < 300; ++trial) {
      std::string b = bytes;
      for (int flips = 0; flips < 4; ++flips) b[rng() % header_end] = static_cast<char>(rng());
      write_bytes(dir / "fuzz.tbw", b);
      errors += !open_error(dir / "fuzz.tbw").empty();
    }
    CHECK(errors > 0);
  }
}

TEST_CASE("opening a 100 MB file copies no tensor data", "[format][mmap]") {
  const auto path = test::scratch_dir("format") / "big.tbw";
  {
    WeightFileWriter writer;
    writer.add("big", DType::u8, {100 << 20}, std::vector<uint8_t>(100 << 20, 7));
    writer.write(path.string());
  }
  const int64_t before = rss_kb();
  const WeightFile file(path.string());
  const int64_t after = rss_kb();
  CHECK(file.at("big").view.bytes() == size_t{100} << 20);
  CHECK(reinterpret_cast<uintptr_t>(file.at("big").view.data) % format::kAlignment == 0);
  INFO("RSS grew by " << (after - before) << " KB");
  CHECK(after - before < 4096);
}

TEST_CASE("the converter rejects bad model folders with clear messages", "[convert][errors]") {
  const auto src = test::test_data_dir() / "tiny/tiny-bert";
  const auto dir = test::scratch_dir("badfolders");
  const auto copy_with_config = [&](const std::string& name,
                                    const std::function<void(nlohmann::json&)>& edit) {
    const auto folder = dir / name;
    fs::create_directories(folder);
    for (const auto& f : fs::directory_iterator(src))
      fs::copy_file(f.path(), folder / f.path().filename(), fs::copy_options::overwrite_existing);
    auto config = test::read_json(src / "config.json");
    edit(config);
    std::ofstream(folder / "config.json") << config.dump();
    return folder;
  };
  const auto convert_error = [&](const fs::path& folder) -> std::string {
    try {
      convert::convert_folder(folder, (dir / "out.tbw").string());
      return "";
    } catch (const Error& e) {
      return e.what();
    }
  };
  CHECK_THAT(convert_error(dir / "does-not-exist"), Catch::Contains("not a directory"));
  CHECK_THAT(convert_error(copy_with_config("relu", [](auto& c) { c["hidden_act"] = "relu"; })),
             Catch::Contains("hidden_act \"relu\""));
  CHECK_THAT(convert_error(copy_with_config("nohidden", [](auto& c) { c.erase("hidden_size"); })),
             Catch::Contains("hidden_size"));
  CHECK_THAT(convert_error(copy_with_config("layers", [](auto& c) { c["num_hidden_layers"] = 3; })),
             Catch::Contains("missing tensor 'layers.2."));
  CHECK_THAT(
      convert_error(copy_with_config("roberta", [](auto& c) { c["model_type"] = "roberta"; })),
      Catch::Contains("RoBERTa"));
  const auto no_vocab = copy_with_config("novocab", [](auto&) {});
  fs::remove(no_vocab / "vocab.txt");
  CHECK_THAT(convert_error(no_vocab), Catch::Contains("vocab.txt"));
  // Found by tests/fuzz/fuzz_configs: JSON of the wrong shape or type escaped as a
  // nlohmann::json exception instead of an Error naming the file.
  CHECK_THAT(convert_error(copy_with_config("string", [](auto& c) { c = "BertModel"; })),
             Catch::Contains("config.json: expected a JSON object, found string"));
  CHECK_THAT(convert_error(copy_with_config("model_type", [](auto& c) { c["model_type"] = 7; })),
             Catch::Contains("config.json: [json.exception.type_error"));
  // A config.json cut short by NUL bytes: nlohmann's parser would stop at the NUL and accept it.
  const auto nul_config = copy_with_config("nul", [](auto&) {});
  std::ofstream(nul_config / "config.json", std::ios::binary) << std::string("{}\0{\"x\"", 7);
  CHECK_THAT(convert_error(nul_config),
             Catch::Contains("config.json is not valid JSON: a NUL byte at byte 2"));
  const auto bad_tokenizer = copy_with_config("tokenizer", [](auto&) {});
  std::ofstream(bad_tokenizer / "tokenizer_config.json") << R"({"do_lower_case": "yes"})";
  CHECK_THAT(convert_error(bad_tokenizer), Catch::Contains("tokenizer_config.json: "));
  const auto bad_modelscope = copy_with_config("modelscope", [](auto&) {});
  std::ofstream(bad_modelscope / "configuration.json") << R"({"task": 3})";
  CHECK_THAT(convert_error(bad_modelscope), Catch::Contains("configuration.json: "));
}

TEST_CASE("ERNIE 3.0 / UIE family configs and the uie-base tokenizer load", "[convert][ernie]") {
  const auto folder = test::shared_path_or_skip("models/uie-base-tokenizer-and-config-NO-WEIGHTS");
  const auto hf = test::read_json(folder / "config.json");
  REQUIRE(convert::architecture_from_hf(hf) == Architecture::uie);
  const ModelConfig base = convert::model_config_from_hf(hf, Architecture::uie, "uie-base");
  CHECK(base.task_type_vocab_size == 3);
  CHECK(base.type_vocab_size == 4);
  CHECK(base.vocab_size == 40000);
  CHECK(base.max_position_embeddings == 2048);
  CHECK(base.layer_norm_eps == 1e-12f);  // as written in this config.json

  // PaddleNLP's own configs carry no layer_norm_eps: Paddle's LayerNorm default applies
  const auto family = test::read_json(folder / "uie_family_configs.json")["configs"];
  CHECK(family.size() == 5);
  for (const auto& [name, config] : family.items()) {
    INFO(name);
    const ModelConfig c = convert::model_config_from_hf(config, Architecture::uie, name, 1e-5f);
    CHECK(c.task_type_vocab_size > 0);
    CHECK(c.layer_norm_eps == 1e-5f);
    CHECK(c.hidden_size % c.num_heads == 0);
  }
  CHECK(convert::model_config_from_hf(family["uie-nano"], Architecture::uie, "nano").hidden_size ==
        312);

  // 39,980 vocab lines for 40,000 embedding rows; [UNK] is the last line
  const auto settings =
      convert::tokenizer_settings_from_hf(test::read_json(folder / "tokenizer_config.json"), 2048);
  const Tokenizer tokenizer = Tokenizer::from_vocab_file((folder / "vocab.txt").string(),
                                                         tokenizer_options_from_json(settings));
  CHECK(tokenizer.vocab_size() == 39980);
  CHECK(tokenizer.unk_id() == 39979);
  CHECK(tokenizer.cls_id() == 1);
  CHECK(tokenizer.encode("Hello，世界", 0).tokens ==
        std::vector<std::string>{"[CLS]", "hello", "，", "世", "界", "[SEP]"});
}
