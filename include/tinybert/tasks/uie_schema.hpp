// UIE schemas (PaddleNLP Taskflow forms) and prompt building: parsing JSON into a tree of
// names, full-width -> half-width normalisation, child and classification prompts.
#pragma once

#include <cstddef>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "tinybert/error.hpp"
#include "tinybert/tokenizer.hpp"

namespace tinybert {

// One extraction target. Children are asked once per span found for their parent
// ("<parent span>的<child>"), which is how relations, event arguments and opinions work.
struct SchemaNode {
  std::string name;
  std::vector<SchemaNode> children;
};

struct Schema {
  std::vector<SchemaNode> roots;
  size_t depth() const {
    size_t deepest = 0;
    const auto walk = [&](const auto& self, const std::vector<SchemaNode>& nodes,
                          size_t level) -> void {
      for (const SchemaNode& n : nodes) {
        deepest = std::max(deepest, level);
        self(self, n.children, level + 1);
      }
    };
    walk(walk, roots, 1);
    return deepest;
  }
};

// A schema with more names than SchemaLimits::max_nodes (a server answers it as "too large").
class SchemaTooLarge : public Error {
 public:
  using Error::Error;
};

struct SchemaLimits {
  size_t max_depth = 3;    // entity -> relation -> sub-relation
  size_t max_nodes = 256;  // names in the whole tree
  size_t max_name_chars = 64;
};

namespace detail {

// Over nlohmann::json (keys sorted) or nlohmann::ordered_json (keys in the order written, which
// SiameseUIE's output order follows).
template <class Json>
struct SchemaParser {
  const SchemaLimits& limits;
  size_t nodes = 0;

  SchemaNode leaf(const std::string& name, const std::string& path, size_t depth) {
    if (name.empty()) throw Error("schema " + path + ": empty name");
    // decode_utf8 rejects a bad name here rather than in the tokenizer later
    if (decode_utf8(name).code_points.size() > limits.max_name_chars)
      throw Error("schema " + path + ": name longer than " + std::to_string(limits.max_name_chars) +
                  " characters");
    if (depth > limits.max_depth)
      throw Error("schema " + path + ": nested " + std::to_string(depth) +
                  " levels deep (at most " + std::to_string(limits.max_depth) + ")");
    if (++nodes > limits.max_nodes)
      throw SchemaTooLarge("schema " + path + ": more than " + std::to_string(limits.max_nodes) +
                           " names");
    return SchemaNode{name, {}};
  }

  // Children of a named node: null (none), "name", [items...] or {"name": children, ...}.
  void children(const Json& value, const std::string& path, size_t depth,
                std::vector<SchemaNode>& out) {
    if (value.is_null()) return;
    if (value.is_string()) {
      out.push_back(leaf(value.template get<std::string>(), path, depth));
    } else if (value.is_array()) {
      for (size_t i = 0; i < value.size(); ++i) {
        std::string item_path = path;
        item_path += "[" + std::to_string(i) + "]";
        list_item(value[i], item_path, depth, out);
      }
    } else if (value.is_object()) {
      object(value, path, depth, out);
    } else {
      throw Error("schema " + path + ": expected a name, a list, an object or null, found " +
                  value.type_name());
    }
  }

  // A list item is a name or an object {"name": children}.
  void list_item(const Json& item, const std::string& path, size_t depth,
                 std::vector<SchemaNode>& out) {
    if (item.is_string()) {
      out.push_back(leaf(item.template get<std::string>(), path, depth));
    } else if (item.is_object()) {
      object(item, path, depth, out);
    } else {
      throw Error("schema " + path + ": expected a name or an object, found " + item.type_name());
    }
  }

  void object(const Json& value, const std::string& path, size_t depth,
              std::vector<SchemaNode>& out) {
    if (value.empty()) throw Error("schema " + path + ": empty object");
    for (const auto& [key, child] : value.items()) {
      std::string child_path = path;
      child_path += ".";
      child_path += key;
      SchemaNode node = leaf(key, child_path, depth);
      children(child, child_path, depth + 1, node.children);
      out.push_back(std::move(node));
    }
  }
};

}  // namespace detail

// Accepts every PaddleNLP Taskflow form and SiameseUIE's nested dicts:
//   "人名"                                   one entity type
//   ["人名", "地址"]                          entity types
//   [{"竞赛名称": ["主办方", "承办方"]}]        relations / events / opinions
//                                                (child names)
//   {"评价维度": ["观点词", "情感倾向[正向，负向]"]}
//   {"产品名称": null, "属性词": {"情感词": null}}   SiameseUIE
// Errors name the place in the schema, e.g. "schema $[1].竞赛名称[0]: empty name".
// Names keep the order of the JSON object when it is an nlohmann::ordered_json.
template <class Json = nlohmann::json>
Schema parse_schema(const Json& schema, const SchemaLimits& limits = {}) {
  detail::SchemaParser<Json> parser{limits};
  Schema out;
  if (schema.is_null()) throw Error("schema $: expected a name, a list or an object, found null");
  parser.children(schema, "$", 1, out.roots);
  if (out.roots.empty()) throw Error("schema $: no names");
  return out;
}

// PaddleNLP dbc2sbc: full-width ASCII variants (U+FF01..U+FF5E) and the ideographic space
// (U+3000) become their half-width forms; everything else is kept.
inline std::string to_half_width(std::string_view text) {
  const detail::DecodedText decoded = detail::decode_utf8(text);
  std::string out;
  out.reserve(text.size());
  for (char32_t cp : decoded.code_points) {
    if (cp == 0x3000)
      cp = 0x20;
    else if (cp >= 0xFF01 && cp <= 0xFF5E)
      cp -= 0xFEE0;
    detail::append_utf8(out, cp);
  }
  return out;
}

// A classification name ends with its options in brackets: "情感倾向[正向，负向]".
// PaddleNLP asks it as it is; the answer is a span of the prompt (one of the options).
inline bool is_classification(std::string_view name) {
  const size_t open = name.find('[');
  return open != std::string_view::npos && name.size() > open + 1 && name.back() == ']';
}

// The prompt for a node: its name at the top level; under a parent span "<parent>的<name>" in
// Chinese, "<name> of <parent>" in English ("<prefix> of <parent> [options]" for classification
// names), all normalised to half width as PaddleNLP does.
inline std::string build_prompt(const std::string& name, const std::string* parent_text,
                                bool english) {
  if (!parent_text) return to_half_width(name);
  std::string prompt;
  if (!english) {
    prompt = *parent_text;
    prompt += "的";
    prompt += name;
  } else if (is_classification(name)) {
    const size_t open = name.find('[');
    std::string_view prefix(name.data(), open);
    while (!prefix.empty() && prefix.back() == ' ') prefix.remove_suffix(1);
    prompt = prefix;
    prompt += " of ";
    prompt += *parent_text;
    prompt += " ";
    prompt += name.substr(open);
  } else {
    prompt = name;
    prompt += " of ";
    prompt += *parent_text;
  }
  return to_half_width(prompt);
}

}  // namespace tinybert
