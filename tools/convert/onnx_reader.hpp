// read_onnx: ONNX ModelProto -> OnnxModel (graph + initializers); onnx_to_source traces the graph
// to find each Linear's weight, scale and bias and emits HF-named tensors in torch layout.
#pragma once

#include <bit>
#include <cmath>
#include <map>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "protobuf.hpp"
#include "source_model.hpp"

namespace tinybert::convert {

// TensorProto.DataType values (onnx.proto).
enum OnnxType : int32_t {
  kOnnxFloat = 1,
  kOnnxUint8 = 2,
  kOnnxInt8 = 3,
  kOnnxUint16 = 4,
  kOnnxInt16 = 5,
  kOnnxInt32 = 6,
  kOnnxInt64 = 7,
  kOnnxBool = 9,
  kOnnxFloat16 = 10,
  kOnnxDouble = 11,
  kOnnxBfloat16 = 16
};

struct OnnxTensor {
  std::string name;
  int32_t data_type = 0;
  Shape dims;
  std::vector<uint8_t> data;  // little-endian elements, whatever field they came from
  int64_t numel() const { return checked_numel(dims); }
};

struct OnnxAttribute {
  std::string name;
  int32_t type = 0;
  float f = 0;
  int64_t i = 0;
  std::string s;
  std::vector<int64_t> ints;
  std::vector<float> floats;
  std::optional<OnnxTensor> t;
};

struct OnnxNode {
  std::string name, op_type, domain;
  std::vector<std::string> inputs, outputs;
  std::vector<OnnxAttribute> attributes;
  const OnnxAttribute* attribute(std::string_view n) const {
    for (const auto& a : attributes)
      if (a.name == n) return &a;
    return nullptr;
  }
};

struct OnnxModel {
  int64_t ir_version = 0;
  std::string producer_name, producer_version, graph_name;
  std::vector<std::pair<std::string, int64_t>> opset_import;  // (domain, version)
  std::vector<OnnxNode> nodes;
  std::vector<OnnxTensor> initializers;
  std::vector<std::string> inputs, outputs;
};

namespace detail {

inline size_t onnx_elem_size(int32_t type) {
  switch (type) {
    case kOnnxFloat:
    case kOnnxInt32:
      return 4;
    case kOnnxUint8:
    case kOnnxInt8:
    case kOnnxBool:
      return 1;
    case kOnnxUint16:
    case kOnnxInt16:
    case kOnnxFloat16:
    case kOnnxBfloat16:
      return 2;
    case kOnnxInt64:
    case kOnnxDouble:
      return 8;
    default:
      return 0;
  }
}

using protobuf::Field;
using protobuf::Reader;

inline void expect_type(const Reader& r, const Field& f, protobuf::WireType t, const char* name) {
  if (f.type != t) r.fail(std::string("field ") + name + " has the wrong wire type", f.offset);
}

inline OnnxTensor parse_tensor(std::span<const uint8_t> bytes, uint64_t offset,
                               const std::string& what) {
  Reader r(bytes, offset, what);
  OnnxTensor t;
  bool external = false, has_raw = false;
  std::vector<float> floats;
  std::vector<int32_t> int32s;
  std::vector<int64_t> int64s;
  std::vector<uint64_t> doubles;
  std::span<const uint8_t> raw;
  const auto as_i64 = [](uint64_t v) { return static_cast<int64_t>(v); };
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        protobuf::read_repeated(f, r, t.dims, protobuf::kVarint, as_i64, what);
        break;
      case 2:
        expect_type(r, f, protobuf::kVarint, "data_type");
        t.data_type = static_cast<int32_t>(f.varint);
        break;
      case 4:
        protobuf::read_repeated(
            f, r, floats, protobuf::kFixed32,
            [](uint64_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v)); }, what);
        break;
      case 5:
        protobuf::read_repeated(
            f, r, int32s, protobuf::kVarint,
            [](uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }, what);
        break;
      case 7:
        protobuf::read_repeated(f, r, int64s, protobuf::kVarint, as_i64, what);
        break;
      case 8:
        expect_type(r, f, protobuf::kLengthDelimited, "name");
        t.name = protobuf::as_string(f);
        break;
      case 9:
        expect_type(r, f, protobuf::kLengthDelimited, "raw_data");
        raw = f.bytes;
        has_raw = true;
        break;
      case 10:
        protobuf::read_repeated(
            f, r, doubles, protobuf::kFixed64, [](uint64_t v) { return v; }, what);
        break;
      case 13:
        external = true;
        break;
      case 14:
        if (f.varint == 1) external = true;
        break;
      default:
        break;
    }
  }
  const std::string where = what + ": tensor " + t.name;
  if (external)
    throw Error(
        where +
        ": external data not supported (re-save the model with all tensors inside the .onnx file)");
  const size_t elem = onnx_elem_size(t.data_type);
  if (elem == 0) return t;  // a type we never read (string, complex...): kept without data
  int64_t numel = 0;
  try {
    numel = t.numel();
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
  const auto count_mismatch = [&](size_t found) {
    return Error(where + ": expected " + std::to_string(numel) + " elements for dims " +
                 shape_string(t.dims) + ", found " + std::to_string(found));
  };
  if (has_raw) {
    if (raw.size() / elem != static_cast<uint64_t>(numel) || raw.size() % elem)
      throw Error(where + ": raw_data has " + std::to_string(raw.size()) + " bytes, expected " +
                  std::to_string(numel) + " x " + std::to_string(elem));
    t.data.assign(raw.begin(), raw.end());
    return t;
  }
  const auto put = [&](auto value) {
    const size_t at = t.data.size();
    t.data.resize(at + sizeof(value));
    std::memcpy(&t.data[at], &value, sizeof(value));
  };
  if (t.data_type == kOnnxFloat) {
    if (floats.size() != static_cast<uint64_t>(numel)) throw count_mismatch(floats.size());
    for (float v : floats) put(v);
  } else if (t.data_type == kOnnxInt64) {
    if (int64s.size() != static_cast<uint64_t>(numel)) throw count_mismatch(int64s.size());
    for (int64_t v : int64s) put(v);
  } else if (t.data_type == kOnnxDouble) {
    if (doubles.size() != static_cast<uint64_t>(numel)) throw count_mismatch(doubles.size());
    for (uint64_t v : doubles) put(v);
  } else {  // int32_data holds every type of 4 bytes or fewer, one element per entry
    if (int32s.size() != static_cast<uint64_t>(numel)) throw count_mismatch(int32s.size());
    for (int32_t v : int32s) {
      if (elem == 4)
        put(v);
      else if (elem == 2)
        put(static_cast<uint16_t>(v));
      else
        put(static_cast<uint8_t>(v));
    }
  }
  return t;
}

inline OnnxAttribute parse_attribute(std::span<const uint8_t> bytes, uint64_t offset,
                                     const std::string& what) {
  Reader r(bytes, offset, what);
  OnnxAttribute a;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        expect_type(r, f, protobuf::kLengthDelimited, "attribute.name");
        a.name = protobuf::as_string(f);
        break;
      case 20:
        a.type = static_cast<int32_t>(f.varint);
        break;
      case 2:
        a.f = std::bit_cast<float>(static_cast<uint32_t>(f.varint));
        break;
      case 3:
        a.i = static_cast<int64_t>(f.varint);
        break;
      case 4:
        expect_type(r, f, protobuf::kLengthDelimited, "attribute.s");
        a.s = protobuf::as_string(f);
        break;
      case 5:
        expect_type(r, f, protobuf::kLengthDelimited, "attribute.t");
        a.t = parse_tensor(f.bytes, r.offset_of(f.bytes), what);
        break;
      case 7:
        protobuf::read_repeated(
            f, r, a.floats, protobuf::kFixed32,
            [](uint64_t v) { return std::bit_cast<float>(static_cast<uint32_t>(v)); }, what);
        break;
      case 8:
        protobuf::read_repeated(
            f, r, a.ints, protobuf::kVarint, [](uint64_t v) { return static_cast<int64_t>(v); },
            what);
        break;
      default:
        break;  // subgraphs and the rest are not needed to find weights
    }
  }
  return a;
}

inline OnnxNode parse_node(std::span<const uint8_t> bytes, uint64_t offset,
                           const std::string& what) {
  Reader r(bytes, offset, what);
  OnnxNode n;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        expect_type(r, f, protobuf::kLengthDelimited, "node.input");
        n.inputs.push_back(protobuf::as_string(f));
        break;
      case 2:
        expect_type(r, f, protobuf::kLengthDelimited, "node.output");
        n.outputs.push_back(protobuf::as_string(f));
        break;
      case 3:
        expect_type(r, f, protobuf::kLengthDelimited, "node.name");
        n.name = protobuf::as_string(f);
        break;
      case 4:
        expect_type(r, f, protobuf::kLengthDelimited, "node.op_type");
        n.op_type = protobuf::as_string(f);
        break;
      case 7:
        expect_type(r, f, protobuf::kLengthDelimited, "node.domain");
        n.domain = protobuf::as_string(f);
        break;
      case 5:
        expect_type(r, f, protobuf::kLengthDelimited, "node.attribute");
        n.attributes.push_back(parse_attribute(f.bytes, r.offset_of(f.bytes), what));
        break;
      default:
        break;
    }
  }
  return n;
}

inline std::string parse_value_info_name(std::span<const uint8_t> bytes, uint64_t offset,
                                         const std::string& what) {
  Reader r(bytes, offset, what);
  Field f;
  std::string name;
  while (r.next(f))
    if (f.number == 1 && f.type == protobuf::kLengthDelimited) name = protobuf::as_string(f);
  return name;
}

inline void parse_graph(std::span<const uint8_t> bytes, uint64_t offset, const std::string& what,
                        OnnxModel& m) {
  Reader r(bytes, offset, what);
  Field f;
  while (r.next(f)) {
    if (f.number == 1 || f.number == 2 || f.number == 5 || f.number == 11 || f.number == 12)
      expect_type(r, f, protobuf::kLengthDelimited, "graph field");
    switch (f.number) {
      case 1:
        m.nodes.push_back(parse_node(f.bytes, r.offset_of(f.bytes), what));
        break;
      case 2:
        m.graph_name = protobuf::as_string(f);
        break;
      case 5:
        m.initializers.push_back(parse_tensor(f.bytes, r.offset_of(f.bytes), what));
        break;
      case 11:
        m.inputs.push_back(parse_value_info_name(f.bytes, r.offset_of(f.bytes), what));
        break;
      case 12:
        m.outputs.push_back(parse_value_info_name(f.bytes, r.offset_of(f.bytes), what));
        break;
      case 15:
        throw Error(what + ": sparse initializers are not supported");
      default:
        break;
    }
  }
}

}  // namespace detail

inline OnnxModel parse_onnx(std::span<const uint8_t> file, const std::string& what) {
  using namespace detail;
  Reader r(file, 0, what);
  OnnxModel m;
  bool has_graph = false;
  Field f;
  while (r.next(f)) {
    switch (f.number) {
      case 1:
        expect_type(r, f, protobuf::kVarint, "ir_version");
        m.ir_version = static_cast<int64_t>(f.varint);
        break;
      case 2:
        expect_type(r, f, protobuf::kLengthDelimited, "producer_name");
        m.producer_name = protobuf::as_string(f);
        break;
      case 3:
        expect_type(r, f, protobuf::kLengthDelimited, "producer_version");
        m.producer_version = protobuf::as_string(f);
        break;
      case 7:
        expect_type(r, f, protobuf::kLengthDelimited, "graph");
        if (has_graph) r.fail("second graph", f.offset);
        has_graph = true;
        parse_graph(f.bytes, r.offset_of(f.bytes), what, m);
        break;
      case 8: {
        expect_type(r, f, protobuf::kLengthDelimited, "opset_import");
        Reader o(f.bytes, r.offset_of(f.bytes), what);
        Field g;
        std::pair<std::string, int64_t> opset;
        while (o.next(g)) {
          if (g.number == 1 && g.type == protobuf::kLengthDelimited)
            opset.first = protobuf::as_string(g);
          if (g.number == 2 && g.type == protobuf::kVarint)
            opset.second = static_cast<int64_t>(g.varint);
        }
        m.opset_import.push_back(opset);
        break;
      }
      default:
        break;
    }
  }
  if (!has_graph || m.ir_version <= 0)
    throw Error(what + ": not an ONNX model (expected ir_version and a graph)");
  return m;
}

inline OnnxModel read_onnx(const std::string& path) {
  const MappedFile file(path);
  return parse_onnx(file.bytes(), path);
}

namespace detail {

inline bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

inline std::vector<float> onnx_floats(const OnnxTensor& t, const std::string& role) {
  const size_t elem = onnx_elem_size(t.data_type);
  if ((t.data_type != kOnnxFloat && t.data_type != kOnnxFloat16 && t.data_type != kOnnxBfloat16) ||
      t.data.size() != static_cast<uint64_t>(t.numel()) * elem)
    throw Error("initializer " + t.name + " (" + role +
                "): expected a float tensor, found data_type " + std::to_string(t.data_type));
  std::vector<float> out(t.data.size() / elem);
  if (t.data_type == kOnnxFloat) {
    for (size_t i = 0; i < out.size(); ++i) out[i] = load_le<float>(&t.data[i * 4]);
  } else {
    for (size_t i = 0; i < out.size(); ++i) {
      const uint16_t h = load_le<uint16_t>(&t.data[i * 2]);
      out[i] = t.data_type == kOnnxFloat16 ? f16_to_f32(h) : bf16_to_f32(h);
    }
  }
  return out;
}

inline std::vector<int32_t> onnx_int8s(const OnnxTensor& t, const std::string& role) {
  if ((t.data_type != kOnnxInt8 && t.data_type != kOnnxUint8) ||
      t.data.size() != static_cast<uint64_t>(t.numel()))
    throw Error("initializer " + t.name + " (" + role +
                "): expected int8 or uint8, found data_type " + std::to_string(t.data_type));
  std::vector<int32_t> out(t.data.size());
  for (size_t i = 0; i < out.size(); ++i)
    out[i] = t.data_type == kOnnxInt8 ? static_cast<int8_t>(t.data[i]) : t.data[i];
  return out;
}

// A quantized matrix as [rows, cols] with one (scale, zero point) per output row, or one for
// all. `transpose`: the source is stored [cols, rows]. When q - zero_point fits int8 the result
// stays int8 (exact); otherwise it is dequantized to f32.
inline SourceTensor dequantized_rows(const std::string& name, const OnnxTensor& q, bool transpose,
                                     const std::vector<int32_t>& zero_points,
                                     const std::vector<float>& scales) {
  if (q.dims.size() != 2)
    throw Error("initializer " + q.name + ": expected a 2-D quantized matrix, found " +
                shape_string(q.dims));
  const std::vector<int32_t> values = onnx_int8s(q, "quantized weight");
  const uint64_t rows = static_cast<uint64_t>(transpose ? q.dims[1] : q.dims[0]);
  const uint64_t cols = static_cast<uint64_t>(transpose ? q.dims[0] : q.dims[1]);
  const auto per_row_ok = [&](size_t n) { return n == 1 || n == rows; };
  if (!per_row_ok(scales.size()) || !per_row_ok(zero_points.size()))
    throw Error(name + ": expected 1 or " + std::to_string(rows) +
                " scales and zero points, found " + std::to_string(scales.size()) + " and " +
                std::to_string(zero_points.size()));
  SourceTensor out;
  out.name = name;
  out.shape = {static_cast<int64_t>(rows), static_cast<int64_t>(cols)};
  std::vector<int32_t> centred(values.size());
  bool fits = true;
  for (uint64_t r = 0; r < rows; ++r) {
    const int32_t zp = zero_points[zero_points.size() == 1 ? 0 : r];
    for (uint64_t c = 0; c < cols; ++c) {
      const int32_t v = values[transpose ? c * rows + r : r * cols + c] - zp;
      fits = fits && v >= -128 && v <= 127;
      centred[r * cols + c] = v;
    }
  }
  if (fits) {
    out.dtype = DType::i8;
    out.data.resize(centred.size());
    for (size_t i = 0; i < centred.size(); ++i)
      out.data[i] = static_cast<uint8_t>(static_cast<int8_t>(centred[i]));
    out.row_scales.resize(rows);
    for (uint64_t r = 0; r < rows; ++r) out.row_scales[r] = scales[scales.size() == 1 ? 0 : r];
  } else {
    out.dtype = DType::f32;
    out.data.resize(centred.size() * 4);
    for (uint64_t r = 0; r < rows; ++r)
      for (uint64_t c = 0; c < cols; ++c) {
        const float v =
            static_cast<float>(centred[r * cols + c]) * scales[scales.size() == 1 ? 0 : r];
        std::memcpy(&out.data[(r * cols + c) * 4], &v, 4);
      }
  }
  return out;
}

class GraphTracer {
 public:
  explicit GraphTracer(const OnnxModel& m) : m_(m) {
    for (const OnnxTensor& t : m.initializers) consts_[t.name] = &t;
    for (const OnnxNode& n : m.nodes) {
      for (const std::string& in : n.inputs) consumers_[in].push_back(&n);
      for (const std::string& out : n.outputs) producer_[out] = &n;
      if (n.op_type == "Constant" && n.outputs.size() == 1)
        if (const OnnxAttribute* a = n.attribute("value"); a && a->t)
          consts_[n.outputs[0]] = &*a->t;
    }
  }

  SourceModel run() {
    for (const OnnxNode& n : m_.nodes) {
      if (n.op_type == "MatMulInteger")
        trace_matmul_integer(n);
      else if (n.op_type == "MatMul")
        trace_matmul(n);
      else if (n.op_type == "Gemm")
        trace_gemm(n);
      else if (n.op_type == "DequantizeLinear")
        trace_dequantize(n);
    }
    std::string skipped;
    for (const OnnxTensor& t : m_.initializers) {
      if (used_.count(t.name)) continue;
      const bool is_float =
          t.data_type == kOnnxFloat || t.data_type == kOnnxFloat16 || t.data_type == kOnnxBfloat16;
      if (!is_float || t.name.rfind("onnx::", 0) == 0 || t.name.empty()) {
        skipped += (skipped.empty() ? "" : ",") + t.name;
        continue;
      }
      emit_plain(t.name, t);
    }
    if (!skipped.empty()) out_.metadata["skipped"] = skipped;
    out_.metadata["source_format"] = "onnx";
    out_.metadata["producer"] = m_.producer_name;
    if (!m_.producer_version.empty()) out_.metadata["producer_version"] = m_.producer_version;
    out_.metadata["ir_version"] = std::to_string(m_.ir_version);
    for (const auto& [domain, version] : m_.opset_import)
      out_.metadata["opset" + (domain.empty() ? std::string() : "." + domain)] =
          std::to_string(version);
    return std::move(out_);
  }

 private:
  const OnnxTensor* constant(const std::string& name) const {
    const auto it = consts_.find(name);
    return it == consts_.end() ? nullptr : it->second;
  }
  const OnnxNode* sole_consumer(const std::string& value, std::string_view op) const {
    const auto it = consumers_.find(value);
    if (it == consumers_.end() || it->second.size() != 1 || it->second[0]->op_type != op)
      return nullptr;
    return it->second[0];
  }
  const OnnxNode* producer(const std::string& value) const {
    const auto it = producer_.find(value);
    return it == producer_.end() ? nullptr : it->second;
  }
  static const std::string& other_input(const OnnxNode& n, const std::string& known) {
    if (n.inputs.size() != 2)
      throw Error("node " + n.name + " (" + n.op_type + "): expected 2 inputs");
    return n.inputs[0] == known ? n.inputs[1] : n.inputs[0];
  }

  // The bias: an Add consuming `value` whose other input is a float constant of `out` elements.
  const OnnxTensor* find_bias(const std::string& value, int64_t out) const {
    const auto it = consumers_.find(value);
    if (it == consumers_.end()) return nullptr;
    for (const OnnxNode* add : it->second) {
      if (add->op_type != "Add" || add->inputs.size() != 2) continue;
      const OnnxTensor* b = constant(other_input(*add, value));
      if (b && b->data_type == kOnnxFloat && b->dims.size() == 1 && b->dims[0] == out) return b;
    }
    return nullptr;
  }

  // "encoder.layer.0.attention.self.query" from the bias name, else from the node name
  // "/encoder/layer.0/attention/self/query/MatMul_quant".
  static std::string module_name(const OnnxNode& n, const OnnxTensor* bias,
                                 const std::string& weight) {
    if (bias && ends_with(bias->name, ".bias") && bias->name.rfind("onnx::", 0) != 0)
      return bias->name.substr(0, bias->name.size() - 5);
    std::string path = n.name;
    if (!path.empty() && path[0] == '/') path.erase(0, 1);
    const size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) {
      path.resize(slash);
      for (char& c : path)
        if (c == '/') c = '.';
      return path;
    }
    return ends_with(weight, ".weight") ? weight.substr(0, weight.size() - 7) : weight;
  }

  void emit(SourceTensor t) {
    if (!names_.insert(t.name).second)
      throw Error("ONNX graph: two tensors traced to the name " + t.name);
    out_.tensors.push_back(std::move(t));
  }
  void emit_plain(const std::string& name, const OnnxTensor& t) {
    SourceTensor s;
    s.name = name;
    s.dtype = t.data_type == kOnnxFloat     ? DType::f32
              : t.data_type == kOnnxFloat16 ? DType::f16
                                            : DType::bf16;
    s.shape = t.dims;
    if (t.data.size() != tensor_bytes(s.shape, s.dtype, "initializer " + t.name))
      throw Error("initializer " + t.name + ": data size does not match " + shape_string(t.dims));
    s.data = t.data;
    emit(std::move(s));
  }
  void emit_bias(const std::string& module, const OnnxTensor* bias) {
    if (!bias) return;
    used_.insert(bias->name);
    emit_plain(module + ".bias", *bias);
  }

  void trace_matmul_integer(const OnnxNode& n) {
    const std::string where = "MatMulInteger " + n.name;
    if (n.inputs.size() < 2 || n.outputs.size() != 1)
      throw Error(where + ": expected inputs A, B and one output");
    const OnnxTensor* b = constant(n.inputs[1]);
    if (!b) throw Error(where + ": weight input " + n.inputs[1] + " is not an initializer");
    if (b->dims.size() != 2)
      throw Error(where + ": expected weight [in, out], found " + shape_string(b->dims));
    const int64_t out_features = b->dims[1];
    std::vector<int32_t> zero_points{0};
    if (n.inputs.size() > 3 && !n.inputs[3].empty()) {
      const OnnxTensor* zp = constant(n.inputs[3]);
      if (!zp) throw Error(where + ": weight zero point " + n.inputs[3] + " is not an initializer");
      zero_points = onnx_int8s(*zp, "weight zero point");
      used_.insert(zp->name);
    }
    // int32 result -> Cast(float) -> Mul(scale) where scale = x_scale * w_scale (or w_scale).
    const OnnxNode* cast = sole_consumer(n.outputs[0], "Cast");
    if (!cast || cast->outputs.size() != 1)
      throw Error(where + ": expected its output to feed one Cast");
    const OnnxNode* mul = sole_consumer(cast->outputs[0], "Mul");
    if (!mul || mul->outputs.size() != 1)
      throw Error(where + ": expected Cast -> Mul(scale) after it");
    const std::string& scale_value = other_input(*mul, cast->outputs[0]);
    const OnnxTensor* w_scale = constant(scale_value);
    if (!w_scale) {
      const OnnxNode* product = producer(scale_value);
      if (!product || product->op_type != "Mul" || product->inputs.size() != 2)
        throw Error(where + ": expected the scale " + scale_value + " to be x_scale * w_scale");
      const OnnxTensor* s0 = constant(product->inputs[0]);
      const OnnxTensor* s1 = constant(product->inputs[1]);
      if ((s0 == nullptr) == (s1 == nullptr))
        throw Error(where + ": expected exactly one initializer (w_scale) in " + product->name);
      w_scale = s0 ? s0 : s1;
    }
    const std::vector<float> scales = onnx_floats(*w_scale, "weight scale");
    used_.insert(w_scale->name);
    const OnnxTensor* bias = find_bias(mul->outputs[0], out_features);
    const std::string module = module_name(n, bias, b->name);
    used_.insert(b->name);
    emit(dequantized_rows(module + ".weight", *b, /*transpose=*/true, zero_points, scales));
    emit_bias(module, bias);
  }

  void emit_float_weight(const std::string& name, const OnnxTensor& w, bool transpose) {
    if (w.dims.size() != 2)
      throw Error("initializer " + w.name + ": expected a 2-D weight, found " +
                  shape_string(w.dims));
    SourceTensor s;
    s.name = name;
    s.dtype = w.data_type == kOnnxFloat     ? DType::f32
              : w.data_type == kOnnxFloat16 ? DType::f16
                                            : DType::bf16;
    const size_t elem = dtype_size(s.dtype);
    if (w.data.size() != tensor_bytes(w.dims, s.dtype, "initializer " + w.name))
      throw Error("initializer " + w.name + ": data size does not match " + shape_string(w.dims));
    const uint64_t rows = static_cast<uint64_t>(w.dims[0]), cols = static_cast<uint64_t>(w.dims[1]);
    s.shape = transpose ? Shape{w.dims[1], w.dims[0]} : w.dims;
    s.data = transpose ? transpose_bytes(w.data, rows, cols, elem) : w.data;
    used_.insert(w.name);
    emit(std::move(s));
  }
  static bool is_float_type(int32_t t) {
    return t == kOnnxFloat || t == kOnnxFloat16 || t == kOnnxBfloat16;
  }

  void trace_matmul(const OnnxNode& n) {
    if (n.inputs.size() != 2 || n.outputs.size() != 1) return;
    const OnnxTensor* b = constant(n.inputs[1]);
    if (!b || constant(n.inputs[0]) || !is_float_type(b->data_type) || b->dims.size() != 2)
      return;  // activation x activation
    const OnnxTensor* bias = find_bias(n.outputs[0], b->dims[1]);
    const std::string module = module_name(n, bias, b->name);
    emit_float_weight(module + ".weight", *b, /*transpose=*/true);
    emit_bias(module, bias);
  }

  void trace_gemm(const OnnxNode& n) {
    if (n.inputs.size() < 2 || n.outputs.size() != 1) return;
    const OnnxTensor* b = constant(n.inputs[1]);
    if (!b || !is_float_type(b->data_type) || b->dims.size() != 2) return;
    const auto attr_i = [&](const char* name, int64_t fallback) {
      const OnnxAttribute* a = n.attribute(name);
      return a ? a->i : fallback;
    };
    const auto attr_f = [&](const char* name) {
      const OnnxAttribute* a = n.attribute(name);
      return a ? a->f : 1.0f;
    };
    if (attr_i("transA", 0) != 0 || attr_f("alpha") != 1.0f || attr_f("beta") != 1.0f)
      throw Error("Gemm " + n.name + ": only transA = 0, alpha = beta = 1 are supported");
    const bool trans_b = attr_i("transB", 0) != 0;
    const int64_t out_features = trans_b ? b->dims[0] : b->dims[1];
    const OnnxTensor* bias = nullptr;
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      bias = constant(n.inputs[2]);
      if (!bias || bias->data_type != kOnnxFloat || bias->dims.size() != 1 ||
          bias->dims[0] != out_features)
        throw Error("Gemm " + n.name + ": expected a float bias initializer of " +
                    std::to_string(out_features));
    }
    const std::string module = module_name(n, bias, b->name);
    emit_float_weight(module + ".weight", *b, /*transpose=*/!trans_b);
    emit_bias(module, bias);
  }

  // uint8 embedding tables: Gather(table) -> DequantizeLinear, or DequantizeLinear(table) ->
  // Gather.
  void trace_dequantize(const OnnxNode& n) {
    if (n.inputs.size() < 2 || n.outputs.size() != 1) return;
    const OnnxTensor* table = constant(n.inputs[0]);
    std::string name;
    if (table) {
      if (!sole_consumer(n.outputs[0], "Gather")) return;  // a weight for something else
      name = ends_with(table->name, "_quantized") ? table->name.substr(0, table->name.size() - 10)
                                                  : n.outputs[0];
    } else {
      const OnnxNode* gather = producer(n.inputs[0]);
      if (!gather || gather->op_type != "Gather" || gather->inputs.empty()) return;
      table = constant(gather->inputs[0]);
      if (!table) return;
      if (const OnnxAttribute* axis = gather->attribute("axis"); axis && axis->i != 0)
        throw Error("Gather " + gather->name + ": expected axis 0 for an embedding table");
      name = ends_with(table->name, "_quantized") ? table->name.substr(0, table->name.size() - 10)
                                                  : table->name;
    }
    const std::string where = "DequantizeLinear " + n.name;
    const OnnxTensor* scale = constant(n.inputs[1]);
    if (!scale) throw Error(where + ": scale " + n.inputs[1] + " is not an initializer");
    std::vector<int32_t> zero_points{0};
    if (n.inputs.size() > 2 && !n.inputs[2].empty()) {
      const OnnxTensor* zp = constant(n.inputs[2]);
      if (!zp) throw Error(where + ": zero point " + n.inputs[2] + " is not an initializer");
      zero_points = onnx_int8s(*zp, "zero point");
      used_.insert(zp->name);
    }
    const std::vector<float> scales = onnx_floats(*scale, "scale");
    if (scales.size() != 1) {
      const OnnxAttribute* axis = n.attribute("axis");
      if (!axis || axis->i != 0)
        throw Error(where + ": expected a per-tensor or per-row (axis 0) scale for table " +
                    table->name);
    }
    used_.insert(scale->name);
    used_.insert(table->name);
    emit(dequantized_rows(name, *table, /*transpose=*/false, zero_points, scales));
  }

  const OnnxModel& m_;
  std::map<std::string, const OnnxTensor*> consts_;
  std::map<std::string, std::vector<const OnnxNode*>> consumers_;
  std::map<std::string, const OnnxNode*> producer_;
  std::set<std::string> used_, names_;
  SourceModel out_;
};

}  // namespace detail

// Finds the weights by tracing the graph (see GraphTracer) and returns them with HF names.
inline SourceModel onnx_to_source(const OnnxModel& model) {
  return detail::GraphTracer(model).run();
}

}  // namespace tinybert::convert
