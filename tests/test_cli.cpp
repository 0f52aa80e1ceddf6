// The command-line programs as a user runs them: JSON on stdout, one-line errors, exit codes.
#include <sys/wait.h>

#include <array>
#include <catch2/catch.hpp>
#include <cmath>
#include <cstdio>

#include "test_support.hpp"

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

using Run = tinybert::test::CommandResult;
Run run(const std::string& command) { return tinybert::test::run_command(command); }

std::string quote(const std::string& s) { return "'" + s + "'"; }
const std::string kCli = tinybert::test::program_command(TINYBERT_CLI);
const std::string kConvert = tinybert::test::program_command(TINYBERT_CONVERT);

std::string convert_tiny(const std::string& name) {
  const auto out = tinybert::test::scratch_dir("cli") / (name + ".tbw");
  const Run r = run(kConvert + " " + (tinybert::test::test_data_dir() / "tiny" / name).string() +
                    " " + out.string());
  REQUIRE(r.exit_code == 0);
  return out.string();
}

// One line on stderr, non-zero exit, nothing on stdout.
void check_one_line_error(const Run& r, const std::string& fragment) {
  INFO(r.err);
  CHECK(r.exit_code != 0);
  CHECK(r.out.empty());
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK_THAT(r.err, Catch::Contains(fragment));
}

}  // namespace

TEST_CASE("tinybert tokenize prints tokens, ids, type ids and offsets", "[cli]") {
  const auto vocab = (tinybert::test::test_data_dir() / "tiny/tiny-bert/vocab.txt").string();
  const Run r = run(kCli + " tokenize --vocab " + vocab + " " + quote("[MASK]你好"));
  REQUIRE(r.exit_code == 0);
  const json j = json::parse(r.out);
  REQUIRE(j.size() == 1);
  CHECK(j[0]["tokens"].front() == "[CLS]");
  CHECK(j[0]["tokens"][1] == "[MASK]");
  CHECK(j[0]["offsets"][1] == json{0, 6});
  CHECK(j[0]["ids"].size() == j[0]["type_ids"].size());

  const Run pair = run(kCli + " tokenize --vocab " + vocab + " --pair b a");
  REQUIRE(pair.exit_code == 0);
  CHECK(json::parse(pair.out)[0]["type_ids"].back() == 1);

  const Run lines = run("printf 'a\\nb\\n' | " + kCli + " tokenize --vocab " + vocab);
  CHECK(json::parse(lines.out).size() == 2);
}

TEST_CASE("tinybert embed, fill-mask and inspect print JSON", "[cli]") {
  const std::string bert = convert_tiny("tiny-bert"), mlm = convert_tiny("tiny-mlm");
  const Run embed = run(kCli + " embed --model " + bert + " a b");
  REQUIRE(embed.exit_code == 0);
  const json e = json::parse(embed.out);
  CHECK(e["dim"] == 32);
  REQUIRE(e["embeddings"].size() == 2);
  double norm = 0;
  for (double x : e["embeddings"][0]) norm += x * x;
  CHECK(norm == Approx(1.0).margin(1e-5));  // normalised by default

  const Run fill = run(kCli + " fill-mask --model " + mlm + " --top-k 3 " + quote("a[MASK]b"));
  REQUIRE(fill.exit_code == 0);
  const json f = json::parse(fill.out);
  REQUIRE(f[0]["masks"].size() == 1);
  CHECK(f[0]["masks"][0]["candidates"].size() == 3);
  CHECK(f[0]["masks"][0]["start"] == 1);
  CHECK(f[0]["masks"][0]["end"] == 7);

  const Run inspect = run(kCli + " inspect " + bert);
  REQUIRE(inspect.exit_code == 0);
  CHECK(json::parse(inspect.out)["config"]["architecture"] == "encoder");

  const Run table = run(kConvert + " --inspect " + bert);
  REQUIRE(table.exit_code == 0);
  CHECK_THAT(table.out, Catch::Contains("layers.0.attention.qkv.weight"));
}

// stdout stays the JSON answer; stderr says what the CPU made of --backend: bf16 the CPU lacks
// runs as f32 instead, int8 takes the 8-bit (dot-product instructions) or 7-bit path.
TEST_CASE("tinybert says on stderr how the CPU runs --backend", "[cli]") {
  const std::string bert = convert_tiny("tiny-bert");
  const Run int8 = run(kCli + " embed --backend int8 --model " + bert + " a");
  INFO(int8.err);
  if (int8.exit_code != 0 && int8.err.find("no oneDNN backend") != std::string::npos)
    tinybert::test::skip("this build has no oneDNN backend");
  REQUIRE(int8.exit_code == 0);
  CHECK(json::parse(int8.out)["dim"] == 32);
  // (on AArch64 followed by "; slower than f32 ...": bench/RESULTS.md, "Edge: aarch64")
  CHECK_THAT(int8.err, Catch::Matches("tinybert: int8: [78]-bit weights \\(.*\\)(; .*)?\n"));
  const Run bf16 = run(kCli + " embed --backend bf16 --model " + bert + " a");
  INFO(bf16.err);
  REQUIRE(bf16.exit_code == 0);
  if (!bf16.err.empty()) CHECK_THAT(bf16.err, Catch::Matches("tinybert: bf16 .*; using f32\n"));
  CHECK(run(kCli + " embed --backend f32 --model " + bert + " a").err.empty());
}

TEST_CASE("bad input gives one line on stderr and a non-zero exit", "[cli][errors]") {
  const std::string bert = convert_tiny("tiny-bert"), mlm = convert_tiny("tiny-mlm");
  const auto vocab = (tinybert::test::test_data_dir() / "tiny/tiny-bert/vocab.txt").string();
  check_one_line_error(run(kCli + " embed --model /nonexistent.tbw a"), "cannot open");
  check_one_line_error(run(kCli + " embed --model " + vocab + " a"), "not a .tbw file");
  check_one_line_error(run(kCli + " fill-mask --model " + mlm + " " + quote("no mask here")),
                       "text 1: no [MASK]");
  check_one_line_error(run(kCli + " fill-mask --model " + bert + " " + quote("a[MASK]")),
                       "needs a masked_lm model");
  check_one_line_error(run(kCli + " fill-mask --model " + mlm + " --top-k x a"),
                       "--top-k must be an integer");
  check_one_line_error(run(kCli + " embed --model " + bert + " $(printf 'ab\\377c')"),
                       "invalid UTF-8 at byte 2");
  check_one_line_error(run(kCli + " embed --model " + bert + " --bogus a"),
                       "unknown option --bogus");
  check_one_line_error(run(kCli + " tokenize a"), "needs --model");
  check_one_line_error(run(kConvert + " /nonexistent /tmp/x.tbw"), "not a directory");
  CHECK(run(kCli + " frobnicate").exit_code == 2);
}

TEST_CASE("tinybert classify and extract print JSON, and bad requests are one-line errors",
          "[cli]") {
  const std::string bert = convert_tiny("tiny-bert"), nli = convert_tiny("tiny-nli"),
                    uie = convert_tiny("tiny-uie");
  const Run embedding = run(kCli + " classify --model " + bert + " --labels a,b " + quote("a b"));
  REQUIRE(embedding.exit_code == 0);
  const json e = json::parse(embedding.out);
  CHECK(e.dump().find("\"a\"") != std::string::npos);
  const Run cross =
      run(kCli + " classify --model " + nli + " --labels a,b --multi-label " + quote("a b"));
  REQUIRE(cross.exit_code == 0);
  CHECK_NOTHROW(json::parse(cross.out));

  const Run extract = run(kCli + " extract --model " + uie + " --max-seq-len 32 --schema " +
                          quote(R"(["a",{"b":["c"]}])") + " " + quote("a b a b"));
  REQUIRE(extract.exit_code == 0);
  CHECK(json::parse(extract.out).is_array());

  check_one_line_error(run(kCli + " classify --model " + bert + " a"), "label");
  check_one_line_error(run(kCli + " classify --model " + bert + " --labels a,a x"), "duplicate");
  check_one_line_error(run(kCli + " extract --model " + uie + " --schema " + quote("[1]") + " x"),
                       "schema");
  check_one_line_error(
      run(kCli + " extract --model " + uie + " --schema " + quote("[\"a\"") + " x"), "schema");
  // a number beyond double: nlohmann's out_of_range, not a parse_error (was an uncaught throw)
  check_one_line_error(run(kCli + " extract --model " + uie + " --schema 1e400 x"),
                       "schema is not valid JSON");
  check_one_line_error(
      run(kCli + " extract --model " + bert + " --schema " + quote("[\"a\"]") + " x"),
      "needs a uie model");

  // --schema-file: the same schema from a file; a file cut short by NUL bytes is refused (the
  // JSON parser alone would stop at the NUL and accept "[...]\0anything").
  const auto schema_file = tinybert::test::scratch_dir("cli-schema") / "schema.json";
  std::ofstream(schema_file) << R"(["a",{"b":["c"]}])";
  const Run from_file = run(kCli + " extract --model " + uie + " --max-seq-len 32 --schema-file " +
                            schema_file.string() + " " + quote("a b a b"));
  REQUIRE(from_file.exit_code == 0);
  CHECK(json::parse(from_file.out) == json::parse(extract.out));
  std::ofstream(schema_file, std::ios::binary) << std::string("[\"a\"]\0\0{\"b\"", 10);
  check_one_line_error(
      run(kCli + " extract --model " + uie + " --schema-file " + schema_file.string() + " x"),
      "schema file " + schema_file.string() + " is not valid JSON: a NUL byte at byte 5");
  check_one_line_error(run(kCli + " extract --model " + uie + " --schema-file /nonexistent x"),
                       "cannot open schema file /nonexistent");
  check_one_line_error(run(kCli + " extract --model " + uie + " --schema-file " +
                           schema_file.string() + " --schema " + quote("[\"a\"]") + " x"),
                       "exactly one of");
}

TEST_CASE("tinybert classify --calibrate and a repeated --template (an ensemble)",
          "[cli][calibrate]") {
  const std::string bert = convert_tiny("tiny-bert"), nli = convert_tiny("tiny-nli");
  const std::string classify =
      kCli + " classify --backend ref --model " + bert + " --labels 好,北京 ";
  const Run single = run(classify + "--template " + quote("是{}的") + " 北京天气好");
  const Run ensemble = run(classify + "--template " + quote("{}") + " --template " +
                           quote("是{}的") + " --calibrate 北京天气好");
  REQUIRE(single.exit_code == 0);
  REQUIRE(ensemble.exit_code == 0);
  const json s = json::parse(single.out), e = json::parse(ensemble.out);
  CHECK(s["template"] == "是{}的");
  CHECK(s["calibrate"] == false);
  CHECK_FALSE(s["results"][0]["labels"][0].contains("content_free"));
  CHECK(e["template"] == json{"{}", "是{}的"});
  CHECK(e["calibrate"] == true);
  const json& labels = e["results"][0]["labels"];
  REQUIRE(labels.size() == 2);
  // Both templates count: the ensemble's cosine for a label is not that of 是{}的 alone.
  const json& single_labels = s["results"][0]["labels"];
  const json& same =
      single_labels[0]["label"] == labels[0]["label"] ? single_labels[0] : single_labels[1];
  CHECK(std::abs(labels[0]["cosine"].get<double>() - same["cosine"].get<double>()) > 1e-4);
  // Calibrated: the best label's score is sigmoid of the calibrated margin over T = 0.05.
  const auto calibrated = [](const json& l) {
    return l["cosine"].get<double>() - l["content_free"].get<double>();
  };
  CHECK(labels[0]["score"].get<double>() ==
        Approx(1 / (1 + std::exp(-(calibrated(labels[0]) - calibrated(labels[1])) / 0.05)))
            .margin(1e-4));
  CHECK(calibrated(labels[0]) >= calibrated(labels[1]));

  check_one_line_error(run(classify + "--template " + quote("{}") + " --template x a"),
                       "template 1 'x' has no {}");
  check_one_line_error(
      run(classify + "--template " + quote("{}") + " --template " + quote("{}") + " a"),
      "duplicate template");
  check_one_line_error(run(kCli + " classify --model " + nli + " --labels a,b --calibrate a"),
                       "calibration is for embedding mode");
  check_one_line_error(run(kCli + " classify --model " + nli + " --labels a,b --template " +
                           quote("{}") + " --template " + quote("是{}") + " a"),
                       "a list of templates is for embedding mode");
}

TEST_CASE("the CLI backend option selects the reference or a oneDNN precision", "[cli][backend]") {
  const std::string bert = convert_tiny("tiny-bert");
  const Run ref = run(kCli + " embed --backend ref --model " + bert + " a");
  const Run fast = run(kCli + " embed --model " + bert + " a");  // default backend
  REQUIRE(ref.exit_code == 0);
  REQUIRE(fast.exit_code == 0);
  const auto a = json::parse(ref.out)["embeddings"][0], b = json::parse(fast.out)["embeddings"][0];
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(a[i].get<double>() == Approx(b[i].get<double>()).margin(1e-4));
  check_one_line_error(run(kCli + " embed --backend bogus --model " + bert + " a"), "bogus");
}

// The usage says embed, fill-mask, classify and extract take --backend: each one accepts it and
// uses it (an unknown name is refused by that command, not by its option parser).
TEST_CASE("every command the usage lists takes --backend", "[cli][backend]") {
  const std::string bert = convert_tiny("tiny-bert"), mlm = convert_tiny("tiny-mlm"),
                    uie = convert_tiny("tiny-uie");
  const std::vector<std::pair<std::string, std::string>> commands = {
      {"embed", "--model " + bert + " a"},
      {"fill-mask", "--model " + mlm + " " + quote("a[MASK]b")},
      {"classify", "--model " + bert + " --labels 好,北京 a"},
      {"extract",
       "--model " + uie + " --schema " + quote("[\"北京\"]") + " " + quote("北京的天气")}};
  for (const auto& [command, rest] : commands) {
    INFO(command);
    const Run ok = run(kCli + " " + command + " --backend ref " + rest);
    CHECK(ok.exit_code == 0);
    CHECK(ok.err.empty());
    check_one_line_error(run(kCli + " " + command + " --backend bogus " + rest), "'bogus'");
  }
}

// A ModelScope folder as downloaded: converted by tinybert-convert, inspected (what was detected),
// and extracted from in both shapes.
TEST_CASE("tinybert extract on a SiameseUIE model, --format modelscope", "[cli][modelscope]") {
  const auto folder = tinybert::test::test_data_dir() / "modelscope";
  const auto out = tinybert::test::scratch_dir("cli") / "ms-siamese.tbw";
  REQUIRE(run(kConvert + " " + (folder / "siamese-uie").string() + " " + out.string()).exit_code ==
          0);
  const Run inspect = run(kConvert + " --inspect " + out.string());
  CHECK_THAT(inspect.out, Catch::Contains("siamese_uie: 2 shared + 2 cross layers"));
  const auto zero_shot = tinybert::test::scratch_dir("cli") / "ms-zero-shot.tbw";
  REQUIRE(
      run(kConvert + " " + (folder / "structbert-zero-shot").string() + " " + zero_shot.string())
          .exit_code == 0);
  CHECK_THAT(
      run(kConvert + " --inspect " + zero_shot.string()).out,
      Catch::Contains(
          "nli: entailment = logit 0, contradiction = logit 2 (ModelScope's zero-shot pipeline"));

  std::ifstream golden_file(folder / "siamese-uie/golden.json");
  const auto golden = nlohmann::ordered_json::parse(golden_file);
  const auto& nested_case = golden["cases"][1];
  const std::string base = kCli + " extract --backend ref --model " + out.string() + " --schema " +
                           quote(nested_case["schema"].dump()) + " " +
                           quote(nested_case["text"].get<std::string>());
  const Run modelscope = run(base + " --format modelscope");
  INFO(modelscope.err);
  REQUIRE(modelscope.exit_code == 0);
  CHECK(json::parse(modelscope.out)[0] == json::parse(nested_case["output"].dump()));
  const Run nested = run(base);
  REQUIRE(nested.exit_code == 0);
  CHECK(json::parse(nested.out)[0]["人物"].size() == 2);
  check_one_line_error(run(base + " --format xml"), "format 'xml' (expected uie or modelscope)");
  check_one_line_error(run(base + " --max-seq-len 64"), "--max-seq-len is for UIE models");
  const std::string uie = convert_tiny("tiny-uie");
  check_one_line_error(
      run(kCli + " extract --model " + uie + " --schema '\"天\"' --format modelscope 天气"),
      "--format modelscope is for SiameseUIE models");
}

TEST_CASE("tinybert classify on a ModelScope zero-shot model: --labels split on , and ，",
          "[cli][modelscope]") {
  const auto folder = tinybert::test::test_data_dir() / "modelscope";
  const auto model = tinybert::test::scratch_dir("cli") / "ms-zero-shot-classify.tbw";
  REQUIRE(run(kConvert + " " + (folder / "structbert-zero-shot").string() + " " + model.string())
              .exit_code == 0);
  const json golden = tinybert::test::read_json(folder / "structbert-zero-shot/golden.json");
  // "文化， 体育，军事,科技,,汽车 " with the template 这篇文章的标题是{}
  const json& c = golden["cases"][2];
  const Run r = run(kCli + " classify --backend ref --model " + model.string() + " --labels " +
                    quote(c["candidate_labels"].get<std::string>()) + " --template " +
                    quote(c["hypothesis_template"].get<std::string>()) + " " +
                    quote(c["text"].get<std::string>()));
  INFO(r.err);
  REQUIRE(r.exit_code == 0);
  const json out = json::parse(r.out);
  CHECK(out["mode"] == "modelscope-nli");
  const json& labels = out["results"][0]["labels"];
  REQUIRE(labels.size() == 5);
  for (size_t l = 0; l < 5; ++l) {
    CHECK(labels[l]["label"] == c["output"]["labels"][l]);
    CHECK(std::abs(labels[l]["score"].get<double>() - c["output"]["scores"][l].get<double>()) <
          1e-5);
  }
}
