// Fuzz target: the HTTP request bodies of classify, fill-mask, extract and embeddings through
// Service (what tinybert-server, the C API and the Python package call), without sockets, on
// the tiny test models. The first input byte picks the endpoint; the rest is the body.
//
// One target for the four endpoints rather than four: they share the request reader, the model
// selection and the error mapping, the models load once, and CI compiles the service and the
// encoder under the fuzzer's instrumentation once instead of four times.
#include <chrono>
#include <filesystem>

#include "convert.hpp"
#include "fuzz_support.hpp"
#include "tinybert/serving/batching_runner.hpp"
#include "tinybert/serving/service.hpp"

using namespace tinybert;

namespace {

Service& service() {
  static Service* s = [] {
    const std::filesystem::path data = TINYBERT_TEST_DATA_DIR;
    const std::pair<const char*, std::filesystem::path> models[] = {
        {"bert", data / "tiny/tiny-bert"},
        {"mlm", data / "tiny/tiny-mlm"},
        {"uie", data / "tiny/tiny-uie"},
        {"nli", data / "tiny/tiny-nli"},
        {"siamese", data / "modelscope/siamese-uie"}};
    ServiceOptions options;
    options.backend = "ref";
    options.batching.enabled = false;  // no waiting for company: one input at a time
    options.batching.max_wait = std::chrono::microseconds(0);
    for (const auto& [name, folder] : models) {
      const auto out = fuzz::scratch_dir() / (std::string(name) + ".tbw");
      convert::convert_folder(folder, out.string());
      options.models.push_back({name, out.string()});
    }
    return new Service(std::move(options));  // never destroyed: its threads outlive main
  }();
  return *s;
}

// The input texts of a body that the service accepted.
std::vector<std::string> inputs_of(const json& body) {
  const json& input = body.at("input");
  if (input.is_string()) return {input.get<std::string>()};
  return input.get<std::vector<std::string>>();
}

// Code points [start, end) of a text, or a failed check when they are not inside it. SiameseUIE
// answers may be empty (allow_empty): as in ModelScope, [CLS] and [SEP] (offsets (0, 0)) can
// start or end a span, which gives "" at [0, 0) or [k, 0).
std::string substring(const std::string& text, int64_t start, int64_t end, const std::string& at,
                      bool allow_empty = false) {
  const detail::DecodedText d = detail::decode_utf8(text);
  const auto chars = static_cast<int64_t>(d.code_points.size());
  if (allow_empty && 0 <= start && start <= chars && 0 <= end && end <= start) return "";
  FUZZ_CHECK(0 <= start && start < end && end <= chars,
             at + ": span [" + std::to_string(start) + ", " + std::to_string(end) +
                 ") outside a text of " + std::to_string(chars) + " characters");
  return text.substr(d.byte_starts[start], d.byte_starts[end] - d.byte_starts[start]);
}

void check_probability(const json& value, const std::string& at) {
  FUZZ_CHECK(value.is_number() && fuzz::finite_in_unit(value.get<double>()),
             at + ": " + value.dump() + " is not a probability");
}

void check_classify(const json& out, const std::vector<std::string>& texts) {
  FUZZ_CHECK(out.at("results").size() == texts.size(), "one result per text");
  for (size_t t = 0; t < texts.size(); ++t) {
    const json& r = out["results"][t];
    FUZZ_CHECK(r.at("text") == texts[t], "result text");
    for (const json& label : r.at("labels")) {
      check_probability(label.at("score"), "classify score");
      if (label.contains("cosine")) {
        const double c = label["cosine"].get<double>();
        FUZZ_CHECK(std::isfinite(c) && c >= -1.001 && c <= 1.001, "cosine " + label.dump());
      }
    }
  }
}

void check_fill_mask(const json& out, const std::vector<std::string>& texts) {
  FUZZ_CHECK(out.at("results").size() == texts.size(), "one result per text");
  for (size_t t = 0; t < texts.size(); ++t) {
    const json& r = out["results"][t];
    for (const json& mask : r.at("masks")) {
      substring(texts[t], mask.at("start"), mask.at("end"), "mask");
      for (const json& c : mask.at("candidates")) check_probability(c.at("probability"), "token");
      if (mask.contains("attribution"))
        for (const json& a : mask["attribution"]) {
          check_probability(a.at("weight"), "attribution weight");
          if (a.at("end").get<int64_t>() > a.at("start").get<int64_t>())
            substring(texts[t], a["start"], a["end"], "attributed token");
        }
    }
    if (r.contains("phrases"))
      for (const json& p : r["phrases"]) check_probability(p.at("probability"), "phrase");
  }
}

// PaddleNLP's nested form: {name: [{"text", "start", "end", "probability", "relations"}]}.
void check_extraction(const json& extraction, const std::string& text, bool siamese) {
  for (const auto& [name, spans] : extraction.items())
    for (const json& span : spans) {
      check_probability(span.at("probability"), "span of " + name);
      if (span.contains("start"))
        FUZZ_CHECK(substring(text, span["start"], span.at("end"), name, siamese) == span.at("text"),
                   name + ": span text is not the text at its offsets: " + span.dump());
      if (span.contains("relations")) check_extraction(span["relations"], text, siamese);
    }
}

void check_extract(const json& out, const std::vector<std::string>& texts) {
  FUZZ_CHECK(out.at("results").size() == texts.size(), "one result per text");
  const bool siamese = out.at("model") == "siamese";
  for (size_t t = 0; t < texts.size(); ++t) {
    const json& r = out["results"][t];
    if (out.at("format") == "uie") {
      check_extraction(r, texts[t], siamese);
      continue;
    }
    for (const json& chain : r.at("output"))
      for (const json& link : chain) {
        const json& offset = link.at("offset");
        FUZZ_CHECK(
            substring(texts[t], offset.at(0), offset.at(1), link.dump(), true) == link.at("span"),
            "siamese span text: " + link.dump());
      }
  }
}

void check_embeddings(const json& out, const json& body, const std::vector<std::string>& texts) {
  FUZZ_CHECK(out.at("data").size() == texts.size(), "one vector per text");
  // "normalize": null is absent (the model's default), as RequestBody::boolean reads it; only an
  // explicit true promises unit vectors (found by this fuzzer: value() threw on the null).
  const auto normalize = body.find("normalize");
  const bool asked_unit =
      normalize != body.end() && normalize->is_boolean() && normalize->get<bool>();
  for (const json& d : out["data"]) {
    double norm = 0;
    for (const json& v : d.at("embedding")) {
      FUZZ_CHECK(v.is_number() && std::isfinite(v.get<double>()), "embedding value");
      norm += v.get<double>() * v.get<double>();
    }
    if (asked_unit)
      FUZZ_CHECK(std::abs(std::sqrt(norm) - 1) < 1e-3, "norm " + std::to_string(std::sqrt(norm)));
  }
}

// A refused request: a 4xx (or 503/504) whose body is valid JSON with a type and a message.
void check_error(const ApiError& error) {
  FUZZ_CHECK(error.status >= 400 && error.status < 600, "status " + std::to_string(error.status));
  FUZZ_CHECK(error.status != 500, std::string("an internal error for a request: ") + error.what());
  FUZZ_CHECK(!error.type.empty(), "error without a type");
  // dump() throws on invalid UTF-8: a message quoting raw input bytes would fail here
  const std::string text = error.body().dump();
  const json parsed = json::parse(text);
  FUZZ_CHECK(parsed.at("error").at("type").is_string() &&
                 parsed["error"].at("message").is_string() &&
                 parsed["error"].at("status") == error.status,
             "error body " + text);
}

// Shorter than the server's default 30 s: the fuzzer's -timeout (10 s in CI) must stay a finding.
constexpr std::chrono::milliseconds kRequestDeadline{2000};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  service();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const uint8_t endpoint = fuzz::take_byte(input) % 4;
  const std::string body(input);
  Service& s = service();
  // As the server does for every request (--request-timeout-ms): passes that would start after
  // the deadline are refused (504), so an input whose schema fans out into thousands of passes
  // ends, as it does there, instead of taking minutes (long runs found such inputs).
  const DeadlineScope deadline(SteadyClock::now() + kRequestDeadline);
  try {
    json out;
    switch (endpoint) {
      case 0:
        out = s.classify(body);
        break;
      case 1:
        out = s.fill_mask(body);
        break;
      case 2:
        out = s.extract(body);
        break;
      default:
        out = s.embeddings(body);
        break;
    }
    // it was accepted, so it parses, and wholly: nlohmann's parser stops at a NUL byte
    FUZZ_CHECK(body.find('\0') == std::string::npos, "accepted a body with a NUL byte");
    const json request = json::parse(body);
    FUZZ_CHECK(out.at("model").is_string(), "response without a model");
    out.dump();  // the response must serialise (valid UTF-8 throughout)
    const std::vector<std::string> texts = inputs_of(request);
    if (endpoint == 0) check_classify(out, texts);
    if (endpoint == 1) check_fill_mask(out, texts);
    if (endpoint == 2) check_extract(out, texts);
    if (endpoint == 3) check_embeddings(out, request, texts);
  } catch (...) {
    check_error(current_api_error());
  }
  return 0;
}
