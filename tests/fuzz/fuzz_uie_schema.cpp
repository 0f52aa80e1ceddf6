// Fuzz target: UIE / SiameseUIE schemas (JSON) -> Schema trees, and the prompts built from them.
// The first byte picks the limits (the library's defaults or a server's) and the prompt language.
#include "fuzz_support.hpp"
#include "tinybert/tasks/uie_schema.hpp"

using namespace tinybert;

namespace {

size_t check_nodes(const std::vector<SchemaNode>& nodes, const SchemaLimits& limits, size_t depth,
                   const std::string* parent, bool english) {
  size_t count = 0;
  for (const SchemaNode& n : nodes) {
    FUZZ_CHECK(depth <= limits.max_depth, "too deep: " + n.name);
    FUZZ_CHECK(!n.name.empty(), "empty name");
    const size_t chars = detail::decode_utf8(n.name).code_points.size();  // valid UTF-8
    FUZZ_CHECK(chars <= limits.max_name_chars, "name too long: " + n.name);
    const std::string prompt = build_prompt(n.name, parent, english);
    detail::decode_utf8(prompt);  // throws (a finding: not caught below) if not UTF-8
    FUZZ_CHECK(!prompt.empty(), "empty prompt for " + n.name);
    count += 1 + check_nodes(n.children, limits, depth + 1, &n.name, english);
  }
  return count;
}

template <class Json>
void parse_and_check(std::string_view text, const SchemaLimits& limits, bool english) {
  const Json json = Json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded()) return;
  fuzz::ok_or_error([&] {
    const Schema schema = parse_schema(json, limits);
    FUZZ_CHECK(!schema.roots.empty(), "a schema without names");
    const size_t nodes = check_nodes(schema.roots, limits, 1, nullptr, english);
    FUZZ_CHECK(nodes <= limits.max_nodes, std::to_string(nodes) + " names");
    FUZZ_CHECK(schema.depth() <= limits.max_depth, "depth()");
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  const uint8_t bits = fuzz::take_byte(input);
  SchemaLimits limits;
  if (bits & 1) limits.max_nodes = 64;  // tinybert-server's max_schema_names
  if (bits & 2) limits = {1, 4, 8};
  const bool english = bits & 4;
  parse_and_check<nlohmann::json>(input, limits, english);
  parse_and_check<nlohmann::ordered_json>(input, limits, english);
  return 0;
}
