// The OpenAPI 3.0 description served at /openapi.json (the prose version is docs/api.md).
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace tinybert::server {

inline nlohmann::json openapi_document() {
  using nlohmann::json;
  const auto ref = [](const std::string& name) {
    return json{{"$ref", "#/components/schemas/" + name}};
  };
  const json string_or_list = {
      {"oneOf",
       {{{"type", "string"}},
        {{"type", "array"}, {"items", {{"type", "string"}}}, {"minItems", 1}}}}};
  const json model_field = {{"type", "string"},
                            {"description", "a --model name; default: the task's default model"}};
  const json latency = {{"type", "number"}, {"description", "server time in milliseconds"}};
  const json offsets = {{"start", {{"type", "integer"}, {"description", "code-point offset"}}},
                        {"end", {{"type", "integer"}}}};

  json schemas;
  schemas["Error"] = {
      {"type", "object"},
      {"properties",
       {{"error",
         {{"type", "object"},
          {"required", {"status", "type", "message"}},
          {"properties",
           {{"status", {{"type", "integer"}}},
            {"type",
             {{"type", "string"},
              {"enum",
               {"invalid_json", "invalid_request", "not_found", "method_not_allowed", "too_large",
                "overloaded", "timeout", "internal", "bad_http", "unsupported_media_type"}}}},
            {"message", {{"type", "string"}}},
            {"input_index", {{"type", "integer"}}},
            {"position",
             {{"type", "integer"},
              {"description", "code point in the input, or byte in the body"}}}}}}}}}};
  schemas["ClassifyRequest"] = {
      {"type", "object"},
      {"required", {"input", "labels"}},
      {"additionalProperties", false},
      {"properties",
       {{"model", model_field},
        {"input", string_or_list},
        {"labels",
         {{"oneOf",
           {{{"type", "array"}, {"items", {{"type", "string"}, {"minLength", 1}}}, {"minItems", 1}},
            {{"type", "string"},
             {"description",
              "one string split on \",\" and \"，\" (items stripped, empty items dropped)"}}}}}},
        {"multi_label", {{"type", "boolean"}, {"default", false}}},
        {"template",
         {{"oneOf",
           {{{"type", "string"}},
            {{"type", "array"},
             {"items", {{"type", "string"}}},
             {"minItems", 1},
             {"maxItems", 16}}}},
          {"description",
           "every {} is replaced by the label; a list is a template ensemble (embedding mode): a "
           "label's embedding is the mean of its templated texts' unit vectors"}}},
        {"calibrate",
         {{"type", "boolean"},
          {"default", false},
          {"description",
           "embedding mode: subtract each label's mean cosine to content-free inputs (\"\", "
           "\"N/A\", \"[MASK]\", \"无\"); the multi-label threshold then defaults to 0"}}},
        {"temperature", {{"type", "number"}, {"default", 0.05}}},
        {"threshold", {{"type", "number"}}}}}};
  schemas["ClassifyResponse"] = {
      {"type", "object"},
      {"properties",
       {{"model", {{"type", "string"}}},
        {"mode", {{"type", "string"}, {"enum", {"embedding", "nli", "modelscope-nli"}}}},
        {"template",
         {{"oneOf", {{{"type", "string"}}, {{"type", "array"}, {"items", {{"type", "string"}}}}}},
          {"description", "the template used, or the request's list"}}},
        {"multi_label", {{"type", "boolean"}}},
        {"calibrate", {{"type", "boolean"}}},
        {"latency_ms", latency},
        {"results",
         {{"type", "array"},
          {"items",
           {{"type", "object"},
            {"properties",
             {{"text", {{"type", "string"}}},
              {"labels",
               {{"type", "array"},
                {"items",
                 {{"type", "object"},
                  {"properties",
                   {{"label", {{"type", "string"}}},
                    {"score", {{"type", "number"}}},
                    {"selected", {{"type", "boolean"}}},
                    {"cosine", {{"type", "number"}}},
                    {"content_free",
                     {{"type", "number"},
                      {"description",
                       "calibrate: the label's mean cosine to the content-free inputs, "
                       "subtracted from cosine"}}}}}}}}}}}}}}}}}};
  json attributed = {{"type", "object"},
                     {"properties",
                      {{"token", {{"type", "string"}}},
                       {"token_index", {{"type", "integer"}}},
                       {"weight", {{"type", "number"}}}}}};
  attributed["properties"].update(offsets);
  json mask = {{"type", "object"},
               {"properties",
                {{"token_index", {{"type", "integer"}}},
                 {"candidates",
                  {{"type", "array"},
                   {"items",
                    {{"type", "object"},
                     {"properties",
                      {{"token", {{"type", "string"}}},
                       {"id", {{"type", "integer"}}},
                       {"probability", {{"type", "number"}}}}}}}}},
                 {"attribution", {{"type", "array"}, {"items", attributed}}}}}};
  mask["properties"].update(offsets);
  schemas["FillMaskRequest"] = {
      {"type", "object"},
      {"required", {"input"}},
      {"additionalProperties", false},
      {"properties",
       {{"model", model_field},
        {"input", string_or_list},
        {"top_k", {{"type", "integer"}, {"minimum", 1}, {"maximum", 50}, {"default", 5}}},
        {"attribution", {{"type", "integer"}, {"minimum", 0}, {"maximum", 64}, {"default", 0}}},
        {"joint", {{"type", "boolean"}, {"default", false}}}}}};
  schemas["FillMaskResponse"] = {
      {"type", "object"},
      {"properties",
       {{"model", {{"type", "string"}}},
        {"latency_ms", latency},
        {"results",
         {{"type", "array"},
          {"items",
           {{"type", "object"},
            {"properties",
             {{"text", {{"type", "string"}}},
              {"masks", {{"type", "array"}, {"items", mask}}},
              {"phrases", {{"type", "array"}, {"items", {{"type", "object"}}}}}}}}}}}}}};
  json span = {
      {"type", "object"},
      {"properties",
       {{"text", {{"type", "string"}}},
        {"probability", {{"type", "number"}}},
        {"relations", {{"type", "object"}, {"additionalProperties", {{"type", "array"}}}}}}}};
  span["properties"].update(offsets);
  schemas["ExtractRequest"] = {
      {"type", "object"},
      {"required", {"input", "schema"}},
      {"additionalProperties", false},
      {"properties",
       {{"model", model_field},
        {"input", string_or_list},
        {"schema",
         {{"description",
           "PaddleNLP schema (a name, a list of names and objects, or an object name -> children) "
           "or SiameseUIE's nested object {name: null | {child: ...}}; keys keep their order"}}},
        {"threshold",
         {{"type", "number"},
          {"description",
           "UIE: span probability in (0, 1); SiameseUIE: raw head / tail logit, default 0.5"}}},
        {"format",
         {{"type", "string"},
          {"enum", {"uie", "modelscope"}},
          {"description",
           "uie (default): {name: [spans]} per input; modelscope (SiameseUIE models): "
           "{\"output\": [[{type, span, offset}]]} per input"}}}}}};
  // per input: {name: [spans]} ("uie"), or ModelScope's {"output": [[{type, span, offset}]]}
  const json nested_spans = {{"type", "object"},
                             {"additionalProperties", {{"type", "array"}, {"items", span}}}};
  const json chain_link = {{"type", "object"},
                           {"properties",
                            {{"type", {{"type", "string"}}},
                             {"span", {{"type", "string"}}},
                             {"offset", {{"type", "array"}, {"items", {{"type", "integer"}}}}}}}};
  const json chain = {{"type", "array"}, {"items", chain_link}};
  const json modelscope_output = {
      {"type", "object"},
      {"required", {"output"}},
      {"properties", {{"output", {{"type", "array"}, {"items", chain}}}}}};
  schemas["ExtractResponse"] = {
      {"type", "object"},
      {"properties",
       {{"model", {{"type", "string"}}},
        {"latency_ms", latency},
        {"format", {{"type", "string"}, {"enum", {"uie", "modelscope"}}}},
        {"results",
         {{"type", "array"}, {"items", {{"oneOf", {nested_spans, modelscope_output}}}}}}}}};
  schemas["EmbeddingsRequest"] = {
      {"type", "object"},
      {"required", {"input"}},
      {"additionalProperties", false},
      {"properties",
       {{"model", model_field},
        {"input", string_or_list},
        {"normalize", {{"type", "boolean"}, {"description", "default: the model's"}}}}}};
  schemas["EmbeddingsResponse"] = {
      {"type", "object"},
      {"properties",
       {{"model", {{"type", "string"}}},
        {"object", {{"type", "string"}}},
        {"latency_ms", latency},
        {"data",
         {{"type", "array"},
          {"items",
           {{"type", "object"},
            {"properties",
             {{"object", {{"type", "string"}}},
              {"index", {{"type", "integer"}}},
              {"embedding", {{"type", "array"}, {"items", {{"type", "number"}}}}}}}}}}},
        {"usage",
         {{"type", "object"},
          {"properties",
           {{"prompt_tokens", {{"type", "integer"}}},
            {"total_tokens", {{"type", "integer"}}}}}}}}}};

  const auto error_response = [&](const std::string& description) {
    return json{{"description", description},
                {"content", {{"application/json", {{"schema", ref("Error")}}}}}};
  };
  const auto post = [&](const std::string& summary, const std::string& request,
                        const std::string& response) {
    return json{
        {"post",
         {{"summary", summary},
          {"requestBody",
           {{"required", true}, {"content", {{"application/json", {{"schema", ref(request)}}}}}}},
          {"responses",
           {{"200",
             {{"description", "one result per input"},
              {"content", {{"application/json", {{"schema", ref(response)}}}}}}},
            {"400",
             error_response("malformed JSON, wrong field or type, invalid schema or mask syntax")},
            {"404", error_response("unknown model, or no model serves the task")},
            {"413",
             error_response("body, inputs, characters, labels or schema names over the limits")},
            {"503", error_response("queue full or shutting down; see Retry-After")},
            {"504", error_response("the request's deadline passed while it waited")}}}}}};
  };
  const auto get = [](const std::string& summary, const std::string& type) {
    return json{{"get",
                 {{"summary", summary},
                  {"responses",
                   {{"200", {{"description", "OK"}, {"content", {{type, json::object()}}}}}}}}}};
  };
  json paths = {
      {"/v1/classify", post("Zero-shot classification into candidate labels", "ClassifyRequest",
                            "ClassifyResponse")},
      {"/v1/fill-mask", post("Top-k tokens for every [MASK], with attention attribution",
                             "FillMaskRequest", "FillMaskResponse")},
      {"/v1/extract", post("Information extraction with a schema (UIE or SiameseUIE)",
                           "ExtractRequest", "ExtractResponse")},
      {"/v1/embeddings", post("Sentence embeddings", "EmbeddingsRequest", "EmbeddingsResponse")},
      {"/v1/models", get("Loaded models and the default model of each task", "application/json")},
      {"/health", get("Liveness and readiness (503 while draining; status degraded while a model "
                      "serves from its fallback)",
                      "application/json")},
      {"/metrics", get("Prometheus metrics", "text/plain")},
      {"/openapi.json", get("This document", "application/json")}};
  return {{"openapi", "3.0.3"},
          {"info",
           {{"title", "tinybert-server"},
            {"version", "1.0.0"},
            {"description",
             "BERT-family encoders for Chinese NLP: classify, fill-mask, extract, embeddings"}}},
          {"paths", paths},
          {"components", {{"schemas", schemas}}}};
}

}  // namespace tinybert::server
