// Tests for the converter's readers: safetensors, torch.save zip/pickle, ONNX (+ graph tracing).
#include <catch2/catch.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>

#include "onnx_reader.hpp"
#include "pytorch_reader.hpp"
#include "safetensors_reader.hpp"
#include "test_support.hpp"

using namespace tinybert;
using namespace tinybert::convert;
inline auto ContainsSubstring(const std::string& s) { return Catch::Matchers::Contains(s); }
using Bytes = std::vector<uint8_t>;

namespace {

const std::string kShared = TINYBERT_SHARED_DIR;
const std::string kData = std::string(TINYBERT_TEST_DATA_DIR) + "/readers/";

Bytes read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in.good());
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void require_shared() { tinybert::test::shared_path_or_skip("models"); }

// A parser run on hostile input may throw tinybert::Error or succeed; anything else fails.
void error_or_ok(const std::function<void()>& parse) {
  try {
    parse();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    FAIL("non-tinybert exception: " << e.what());
  }
}

template <class T>
std::vector<T> values(const SourceTensor& t) {
  REQUIRE(t.data.size() % sizeof(T) == 0);
  std::vector<T> out(t.data.size() / sizeof(T));
  std::memcpy(out.data(), t.data.data(), t.data.size());
  return out;
}

const SourceTensor& get(const SourceModel& m, const std::string& name) {
  const SourceTensor* t = m.find(name);
  INFO("tensor " << name);
  REQUIRE(t != nullptr);
  return *t;
}

// --- writers for small test files -------------------------------------------------------------

struct StEntry {
  std::string name, dtype;
  Shape shape;
  uint64_t begin, end;
};
Bytes make_safetensors(const std::string& header, const Bytes& data) {
  Bytes out;
  out.reserve(8 + header.size() + data.size());
  for (int i = 0; i < 8; ++i)
    out.push_back(static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i)));
  for (char c : header) out.push_back(static_cast<uint8_t>(c));
  for (uint8_t b : data) out.push_back(b);
  return out;
}
std::string st_header(const std::vector<StEntry>& entries, const std::string& metadata = "") {
  std::string h = "{";
  if (!metadata.empty()) h.append("\"__metadata__\":").append(metadata).append(",");
  for (const auto& e : entries) {
    h.append("\"")
        .append(e.name)
        .append("\":{\"dtype\":\"")
        .append(e.dtype)
        .append("\",\"shape\":[");
    for (size_t i = 0; i < e.shape.size(); ++i)
      h.append(i ? "," : "").append(std::to_string(e.shape[i]));
    h.append("],\"data_offsets\":[").append(std::to_string(e.begin)).append(",");
    h.append(std::to_string(e.end)).append("]},");
  }
  if (h.back() == ',') h.pop_back();
  h.append("}");
  return h;
}

void put16(Bytes& b, uint16_t v) {
  b.push_back(v & 0xff);
  b.push_back(v >> 8);
}
void put32(Bytes& b, uint32_t v) {
  put16(b, v & 0xffff);
  put16(b, v >> 16);
}

// A STORED zip as torch.save lays it out (no ZIP64 records: the readers take both).
Bytes make_zip(const std::vector<std::pair<std::string, Bytes>>& files, uint16_t method = 0) {
  Bytes out, cd;
  for (const auto& [name, data] : files) {
    const uint32_t offset = static_cast<uint32_t>(out.size());
    const uint32_t crc = convert::detail::crc32(data);
    put32(out, 0x04034b50);
    put16(out, 20);
    put16(out, 0);
    put16(out, method);
    put32(out, 0);
    put32(out, crc);
    put32(out, data.size());
    put32(out, data.size());
    put16(out, name.size());
    put16(out, 0);
    out.insert(out.end(), name.begin(), name.end());
    out.insert(out.end(), data.begin(), data.end());
    put32(cd, 0x02014b50);
    put16(cd, 20);
    put16(cd, 20);
    put16(cd, 0);
    put16(cd, method);
    put32(cd, 0);
    put32(cd, crc);
    put32(cd, data.size());
    put32(cd, data.size());
    put16(cd, name.size());
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put16(cd, 0);
    put32(cd, 0);
    put32(cd, offset);
    cd.insert(cd.end(), name.begin(), name.end());
  }
  const uint32_t cd_offset = static_cast<uint32_t>(out.size());
  out.insert(out.end(), cd.begin(), cd.end());
  put32(out, 0x06054b50);
  put16(out, 0);
  put16(out, 0);
  put16(out, files.size());
  put16(out, files.size());
  put32(out, cd.size());
  put32(out, cd_offset);
  put16(out, 0);
  return out;
}

// Pickle of {"w": _rebuild_tensor_v2(('storage', torch.FloatStorage, '0', 'cpu', 4), 0, (2,2),
// (2,1), False, OrderedDict())}
Bytes tiny_pickle() {
  using namespace std::string_literals;
  const std::string p = "\x80\x02}q\x00"s + "X\x01\x00\x00\x00"s + "w" +
                        "ctorch._utils\n_rebuild_tensor_v2\n((" + "X\x07\x00\x00\x00"s + "storage" +
                        "ctorch\nFloatStorage\n" + "X\x01\x00\x00\x00"s + "0" +
                        "X\x03\x00\x00\x00"s + "cpu" + "K\x04tQ" + "K\x00"s +
                        "K\x02K\x02\x86K\x02K\x01\x86\x89" + "ccollections\nOrderedDict\n)RtRs.";
  return Bytes(p.begin(), p.end());
}
Bytes floats_bytes(std::initializer_list<float> v) {
  Bytes b(v.size() * 4);
  std::memcpy(b.data(), std::data(v), b.size());
  return b;
}

void fuzz(const Bytes& valid, unsigned seed, int trials,
          const std::function<void(std::span<const uint8_t>)>& parse) {
  for (size_t len = 0; len < valid.size();
       len += (len < 64 ? 1 : std::max<size_t>(1, valid.size() / 50)))
    error_or_ok([&] { parse(std::span<const uint8_t>(valid.data(), len)); });
  std::mt19937 rng(seed);
  for (int trial = 0; trial < trials; ++trial) {
    Bytes bad = valid;
    const int flips = 1 + static_cast<int>(rng() % 4);
    for (int i = 0; i < flips; ++i)
      bad[rng() % bad.size()] ^= static_cast<uint8_t>(1u << (rng() % 8));
    if (rng() % 4 == 0) bad[rng() % bad.size()] = static_cast<uint8_t>(rng());
    error_or_ok([&] { parse(bad); });
  }
}

}  // namespace

// --- safetensors ------------------------------------------------------------------------------

TEST_CASE("safetensors: demo-uie model", "[readers][shared]") {
  require_shared();
  const SourceModel m = read_safetensors(kShared + "/models/demo-uie/model.safetensors");
  REQUIRE(m.tensors.size() == 74);  // 75 header keys including __metadata__
  for (const auto& t : m.tensors) CHECK(t.dtype == DType::f16);
  CHECK(m.metadata.at("format") == "paddle-layout");
  CHECK(m.metadata.at("linear_weight_layout") == "in_out");
  CHECK(get(m, "encoder.encoder.layers.0.linear1.weight").shape == Shape{512, 2048});
  CHECK(get(m, "linear_start.weight").shape == Shape{512, 1});
  CHECK(get(m, "encoder.embeddings.word_embeddings.weight").data.size() == 21128u * 512 * 2);
}

TEST_CASE("safetensors: valid small file round-trips", "[readers]") {
  const Bytes data = floats_bytes({1, 2, 3, 4, 5, 6});
  const Bytes file = make_safetensors(
      st_header({{"a", "F32", {2, 2}, 0, 16}, {"b", "U8", {8}, 16, 24}}, R"({"k":"v"})"), data);
  const SourceModel m = parse_safetensors(file, "t");
  REQUIRE(m.tensors.size() == 2);
  CHECK(values<float>(get(m, "a")) == std::vector<float>{1, 2, 3, 4});
  CHECK(get(m, "b").dtype == DType::u8);
  CHECK(m.metadata.at("k") == "v");
}

TEST_CASE("safetensors: malformed headers are Errors", "[readers]") {
  const Bytes data = floats_bytes({1, 2, 3, 4});
  const auto bad = [&](const std::string& header, const char* expected) {
    INFO(header);
    REQUIRE_THROWS_WITH(parse_safetensors(make_safetensors(header, data), "t"),
                        ContainsSubstring(expected));
  };
  bad(st_header({{"a", "F64", {2}, 0, 16}}), "unsupported dtype 'F64'");
  bad(st_header({{"a", "I64", {2}, 0, 16}}), "tensor a");
  bad(st_header({{"a", "F32", {2}, 0, 8}, {"b", "F32", {2}, 4, 12}}), "overlap");
  bad(st_header({{"a", "F32", {3}, 0, 8}}), "expected 12 bytes");
  bad(st_header({{"a", "F32", {2}, 8, 0}}), "begin 8 > end 0");
  bad(st_header({{"a", "F32", {4}, 8, 24}}), "beyond the data area");
  bad(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})",
      "twice");
  bad(R"({"a":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", "non-negative");
  bad(R"({"a":{"dtype":"F32","shape":[2]}})", "data_offsets");
  bad(R"({"__metadata__":{"k":1}})", "expected a string");
  bad(R"([1,2])", "JSON object");
  bad(R"({"a":)", "not valid JSON");
  bad(std::string(100, '[') + std::string(100, ']'), "nested deeper");
  bad(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,8]}})",
      "overflow");
  Bytes huge = make_safetensors("{}", data);
  huge[7] = 0x7f;  // header size far beyond the file
  REQUIRE_THROWS_WITH(parse_safetensors(huge, "t"), ContainsSubstring("exceeds the file"));
  REQUIRE_THROWS_AS(parse_safetensors(Bytes{1, 2, 3}, "t"), Error);
}

TEST_CASE("safetensors: truncations and corruptions never crash", "[readers][fuzz]") {
  const Bytes file = make_safetensors(
      st_header({{"a", "F32", {2, 2}, 0, 16}, {"b", "BF16", {2}, 16, 20}}, R"({"k":"v"})"),
      floats_bytes({1, 2, 3, 4, 5}));
  fuzz(file, 1, 400, [](std::span<const uint8_t> b) { parse_safetensors(b, "fuzz"); });
}

TEST_CASE("safetensors: truncated real file", "[readers][shared][fuzz]") {
  require_shared();
  const MappedFile f(kShared + "/models/demo-uie/model.safetensors");
  const auto all = f.bytes();
  for (size_t len = 0; len < all.size(); len += (len < 64 ? 1 : all.size() / 50))
    error_or_ok([&] { parse_safetensors(all.first(len), "trunc"); });
}

// --- PyTorch ----------------------------------------------------------------------------------

TEST_CASE("pytorch: demo-mlm model with a shared storage", "[readers][shared]") {
  require_shared();
  const SourceModel m = read_pytorch_bin(kShared + "/models/demo-mlm/pytorch_model.bin");
  REQUIRE(m.tensors.size() == 75);
  for (const auto& t : m.tensors) CHECK(t.dtype == DType::f16);
  const SourceTensor& word = get(m, "bert.embeddings.word_embeddings.weight");
  const SourceTensor& decoder = get(m, "cls.predictions.decoder.weight");
  CHECK(word.shape == Shape{21128, 512});
  CHECK(decoder.shape == word.shape);
  CHECK(decoder.data == word.data);
  CHECK(get(m, "bert.encoder.layer.3.output.LayerNorm.bias").shape == Shape{512});
  CHECK(m.metadata.count("skipped") == 0);
}

TEST_CASE("pytorch: every storage type, views, strides, tied keys", "[readers]") {
  const SourceModel m = read_pytorch_bin(kData + "torch_small.pt");
  CHECK(values<float>(get(m, "f32")) == std::vector<float>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
  CHECK(get(m, "transposed").shape == Shape{4, 3});
  CHECK(values<float>(get(m, "transposed")) ==
        std::vector<float>{0, 4, 8, 1, 5, 9, 2, 6, 10, 3, 7, 11});
  CHECK(values<float>(get(m, "row_view")) == std::vector<float>{4, 5, 6, 7});
  const auto f16 = values<uint16_t>(get(m, "f16"));
  REQUIRE(f16.size() == 5);
  CHECK(f16_to_f32(f16[1]) == -2.5f);
  CHECK(f16_to_f32(f16[3]) == 65504.0f);
  CHECK(get(m, "tied_a").data == get(m, "f16").data);
  const auto bf16 = values<uint16_t>(get(m, "bf16"));
  CHECK(get(m, "bf16").shape == Shape{2, 3});
  CHECK(bf16_to_f32(bf16[4]) == 0.25f);
  CHECK(values<int8_t>(get(m, "i8")) == std::vector<int8_t>{-128, -1, 0, 127});
  CHECK(values<uint8_t>(get(m, "u8")) == std::vector<uint8_t>{0, 128, 255});
  CHECK(values<float>(get(m, "param")) == std::vector<float>{0.5f, 1.5f});
  CHECK(get(m, "0.weight").shape == Shape{3, 4});
  CHECK(m.find("position_ids") == nullptr);
  CHECK_THAT(m.metadata.at("skipped"), ContainsSubstring("position_ids (torch.LongStorage)"));
}

TEST_CASE("pytorch: nested state_dict, legacy format, unsupported content", "[readers]") {
  const SourceModel nested = read_pytorch_bin(kData + "torch_nested.pt");
  REQUIRE(nested.tensors.size() == 1);
  CHECK(values<float>(get(nested, "w")) == std::vector<float>{1, 1, 1, 1});
  REQUIRE_THROWS_WITH(read_pytorch_bin(kData + "torch_legacy.pt"),
                      ContainsSubstring("legacy (non-zip)"));

  const Bytes storage = floats_bytes({1, 2, 3, 4});
  const Bytes ok = make_zip({{"archive/data.pkl", tiny_pickle()}, {"archive/data/0", storage}});
  CHECK(values<float>(get(parse_pytorch_bin(ok, "t"), "w")) == std::vector<float>{1, 2, 3, 4});

  REQUIRE_THROWS_WITH(
      parse_pytorch_bin(
          make_zip({{"archive/data.pkl", tiny_pickle()}, {"archive/data/0", storage}}, 8), "t"),
      ContainsSubstring("compressed"));
  Bytes pkl = tiny_pickle();
  pkl.insert(pkl.begin() + 2, {'I', '1', '\n'});  // INT: a protocol-0 opcode torch never writes
  REQUIRE_THROWS_WITH(
      parse_pytorch_bin(make_zip({{"a/data.pkl", pkl}, {"a/data/0", storage}}), "t"),
      ContainsSubstring("unsupported pickle opcode 0x49 at byte 2"));
  using namespace std::string_literals;
  const std::string evil = "\x80\x02"s + "cos\nsystem\n" + "X\x02\x00\x00\x00"s + "ls\x85R.";
  REQUIRE_THROWS_WITH(
      parse_pytorch_bin(make_zip({{"a/data.pkl", Bytes(evil.begin(), evil.end())}}), "t"),
      ContainsSubstring("unsupported callable os.system"));
  REQUIRE_THROWS_WITH(
      parse_pytorch_bin(make_zip({{"a/data.pkl", tiny_pickle()}, {"a/data/0", Bytes(8)}}), "t"),
      ContainsSubstring("past its storage"));
  REQUIRE_THROWS_WITH(parse_pytorch_bin(make_zip({{"a/data.pkl", tiny_pickle()}}), "t"),
                      ContainsSubstring("a/data/0 is missing"));
  Bytes crc = ok;
  crc[crc.size() / 3] ^= 1;
  error_or_ok([&] { parse_pytorch_bin(crc, "t"); });
}

TEST_CASE("pytorch: truncations and corruptions never crash", "[readers][fuzz]") {
  fuzz(read_bytes(kData + "torch_small.pt"), 2, 400,
       [](std::span<const uint8_t> b) { parse_pytorch_bin(b, "fuzz"); });
  // Corrupt the pickle itself (inside a valid zip) so the interpreter sees hostile opcodes.
  const Bytes storage = floats_bytes({1, 2, 3, 4});
  fuzz(tiny_pickle(), 3, 600, [&](std::span<const uint8_t> b) {
    parse_pytorch_bin(make_zip({{"a/data.pkl", Bytes(b.begin(), b.end())}, {"a/data/0", storage}}),
                      "fuzz");
  });
}

TEST_CASE("pytorch: truncated real file", "[readers][shared][fuzz]") {
  require_shared();
  const MappedFile f(kShared + "/models/demo-mlm/pytorch_model.bin");
  const auto all = f.bytes();
  for (size_t len = 0; len < all.size(); len += (len < 64 ? 1 : all.size() / 50))
    error_or_ok([&] { parse_pytorch_bin(all.first(len), "trunc"); });
}

// --- ONNX -------------------------------------------------------------------------------------

TEST_CASE("onnx: bge-small-zh int8 graph traced to HF names", "[readers][shared]") {
  require_shared();
  const OnnxModel onnx = read_onnx(kShared + "/models/bge-small-zh-v1.5/onnx/model_quantized.onnx");
  CHECK(onnx.ir_version == 6);
  CHECK(onnx.producer_name == "onnx.quantize");
  const SourceModel m = onnx_to_source(onnx);
  CHECK(m.metadata.at("opset") == "11");
  for (const char* e : {"word", "position", "token_type"}) {
    const SourceTensor& t = get(m, std::string("embeddings.") + e + "_embeddings.weight");
    CHECK(t.dtype == DType::i8);
    CHECK(t.shape[1] == 512);
    CHECK(t.row_scales.size() == static_cast<size_t>(t.shape[0]));
  }
  CHECK(get(m, "embeddings.word_embeddings.weight").shape == Shape{21128, 512});
  CHECK(get(m, "embeddings.LayerNorm.weight").shape == Shape{512});
  CHECK(get(m, "embeddings.LayerNorm.bias").dtype == DType::f32);
  for (int layer = 0; layer < 4; ++layer) {
    const std::string p = "encoder.layer." + std::to_string(layer) + ".";
    for (const char* lin : {"attention.self.query", "attention.self.key", "attention.self.value",
                            "attention.output.dense", "intermediate.dense", "output.dense"}) {
      const SourceTensor& w = get(m, p + lin + ".weight");
      const SourceTensor& b = get(m, p + lin + ".bias");
      CHECK(w.dtype == DType::i8);
      CHECK(w.row_scales.size() == static_cast<size_t>(w.shape[0]));
      CHECK(b.shape == Shape{w.shape[0]});
    }
    CHECK(get(m, p + "intermediate.dense.weight").shape == Shape{2048, 512});
    CHECK(get(m, p + "output.dense.weight").shape == Shape{512, 2048});
    for (const char* ln : {"attention.output.LayerNorm", "output.LayerNorm"}) {
      CHECK(get(m, p + ln + ".weight").shape == Shape{512});
      CHECK(get(m, p + ln + ".bias").shape == Shape{512});
    }
  }
  CHECK(m.tensors.size() == 5 + 4 * 16);
  for (const auto& t : m.tensors) CHECK(t.name.rfind("onnx::", 0) != 0);
  // Values computed with numpy from the ONNX initializers: W[o][i] = (q[i][o] - zp[o]) * scale[o].
  const SourceTensor& w = get(m, "encoder.layer.2.intermediate.dense.weight");
  const auto q = values<int8_t>(w);
  const auto at = [&](int64_t r, int64_t c) {
    return q[static_cast<size_t>(r * 512 + c)] * w.row_scales[static_cast<size_t>(r)];
  };
  CHECK(at(0, 0) == 0.0050811767578125f);
  CHECK(at(5, 7) == -0.0073871612548828125f);
  CHECK(at(2047, 511) == -0.0194549560546875f);
  CHECK(q[1000 * 512 + 300] == -36);
  CHECK(w.row_scales[1000] == 0.00162506103515625f);
  const SourceTensor& word = get(m, "embeddings.word_embeddings.weight");
  const auto e = values<int8_t>(word);
  CHECK(e[101 * 512 + 0] == -10);
  CHECK(e[101 * 512 + 1] == 4);
  CHECK(word.row_scales[101] == 0.014223345555365086f);
  CHECK(get(m, "embeddings.position_embeddings.weight").row_scales[7] == 0.003607536666095257f);
  CHECK(values<float>(get(m, "encoder.layer.3.output.LayerNorm.weight"))[10] == 0.7412109375f);
}

TEST_CASE("onnx: small quantized + fp32 graph", "[readers]") {
  const SourceModel m = onnx_to_source(read_onnx(kData + "onnx_small.onnx"));
  const SourceTensor& w = get(m, "layer.dense.weight");  // from the bias name
  CHECK(w.dtype == DType::i8);
  CHECK(w.shape == Shape{2, 3});
  CHECK(values<int8_t>(w) == std::vector<int8_t>{-33, 66, 79, 2, 89, 107});  // q [3,2] transposed
  CHECK(w.row_scales == std::vector<float>{0.5f, 0.25f});
  CHECK(values<float>(get(m, "layer.dense.bias")) == std::vector<float>{1, -1});
  const SourceTensor& proj = get(m, "head.proj.weight");  // bias is onnx::Add_10: node name used
  CHECK(proj.dtype == DType::f32);
  CHECK(proj.shape == Shape{4, 2});
  const auto pw = values<float>(proj);
  CHECK(pw[0] == 0.10490011423826218f);
  CHECK(pw[1] == 0.9470809698104858f);
  CHECK(pw[7] == -0.6232744455337524f);
  CHECK(values<float>(get(m, "head.proj.bias"))[1] == -2.32503080368042f);
  const SourceTensor& emb = get(m, "emb.word_embeddings.weight");
  CHECK(emb.dtype == DType::i8);
  CHECK(emb.shape == Shape{5, 3});
  CHECK(values<int8_t>(emb)[0] == 33 - 128);
  CHECK(values<int8_t>(emb)[1] == 215 - 128);
  CHECK(emb.row_scales == std::vector<float>(5, 0.125f));
  CHECK(values<float>(get(m, "layer.LayerNorm.weight")) == std::vector<float>{1, 2, 3, 4});
  CHECK(m.tensors.size() == 6);
  CHECK(m.metadata.at("skipped") == "onnx::Reshape_11");
  CHECK(m.metadata.at("producer") == "tinybert-fixture");
}

TEST_CASE("onnx: external data and malformed files are Errors", "[readers]") {
  REQUIRE_THROWS_WITH(read_onnx(kData + "onnx_external.onnx"),
                      ContainsSubstring("external data not supported"));
  REQUIRE_THROWS_AS(parse_onnx(Bytes{0x08}, "t"), Error);              // varint cut short
  REQUIRE_THROWS_AS(parse_onnx(Bytes{0x3a, 0x05, 0x0a}, "t"), Error);  // length past the end
  REQUIRE_THROWS_AS(parse_onnx(Bytes{0x0b, 0x00}, "t"), Error);        // group wire type
  REQUIRE_THROWS_AS(parse_onnx(Bytes(12, 0xff), "t"), Error);          // varint > 10 bytes
  REQUIRE_THROWS_WITH(parse_onnx(Bytes{0x08, 0x01}, "t"), ContainsSubstring("not an ONNX model"));
}

TEST_CASE("onnx: truncations and corruptions never crash", "[readers][fuzz]") {
  fuzz(read_bytes(kData + "onnx_small.onnx"), 4, 600,
       [](std::span<const uint8_t> b) { onnx_to_source(parse_onnx(b, "fuzz")); });
}

TEST_CASE("onnx: truncated real file", "[readers][shared][fuzz]") {
  require_shared();
  const MappedFile f(kShared + "/models/bge-small-zh-v1.5/onnx/model_quantized.onnx");
  const auto all = f.bytes();
  for (size_t len = 0; len < all.size(); len += (len < 64 ? 1 : all.size() / 50))
    error_or_ok([&] { onnx_to_source(parse_onnx(all.first(len), "trunc")); });
}
