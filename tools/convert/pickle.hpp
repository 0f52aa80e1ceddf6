// A minimal pickle interpreter for the opcodes torch.save emits; builds objects in an arena.
#pragma once

#include <cstdint>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "source_model.hpp"

namespace tinybert::convert::pickle {

enum class Kind : uint8_t {
  none,
  boolean,
  integer,
  floating,
  string,
  bytes,
  tuple,
  list,
  dict,
  global,
  storage,
  tensor
};

// Objects live in one arena and refer to each other by index: no ownership cycles, no recursive
// destruction, whatever the pickle says.
struct Object {
  Kind kind = Kind::none;
  int64_t integer = 0;  // bool / int; index into storages / tensors for those kinds
  double floating = 0;
  std::string text;             // str / bytes; "module.name" for a global
  std::vector<uint32_t> items;  // tuple / list; dict: key0, value0, key1, value1, ...
};

// ('storage', storage_type, key, location, numel) from BINPERSID.
struct Storage {
  std::string type;  // e.g. "torch.HalfStorage"
  std::string key;   // data/<key> in the archive
};

// torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, ...).
struct Tensor {
  uint32_t storage = 0;  // index into storages
  int64_t storage_offset = 0;
  Shape size, stride;
};

struct Program {
  std::vector<Object> objects;
  std::vector<Storage> storages;
  std::vector<Tensor> tensors;
  uint32_t root = 0;
  const Object& at(uint32_t i) const { return objects[i]; }
};

inline constexpr size_t kMaxPickleBytes = size_t{16} << 20;
inline constexpr size_t kMaxObjects = size_t{1} << 22;

namespace detail {

class Machine {
 public:
  Machine(std::span<const uint8_t> data, const std::string& what) : data_(data), what_(what) {}

  Program run() {
    if (data_.size() > kMaxPickleBytes)
      throw Error(what_ + ": pickle of " + std::to_string(data_.size()) + " bytes exceeds the " +
                  std::to_string(kMaxPickleBytes) + "-byte limit");
    none_ = make(Kind::none);
    true_ = make(Kind::boolean);
    prog_.objects[true_].integer = 1;
    false_ = make(Kind::boolean);
    empty_tuple_ = make(Kind::tuple);
    while (true) {
      if (pos_ >= data_.size()) throw Error(what_ + ": pickle ends without STOP");
      op_pos_ = pos_;
      const uint8_t op = data_[pos_++];
      switch (op) {
        case 0x80:
          take(1);
          break;  // PROTO
        case 0x95:
          take(8);
          break;   // FRAME: framing is only a buffering hint
        case '.':  // STOP
          prog_.root = pop();
          return std::move(prog_);
        case '(':
          marks_.push_back(stack_.size());
          break;
        case '}':
          push(make(Kind::dict));
          break;
        case ']':
          push(make(Kind::list));
          break;
        case ')':
          push(empty_tuple_);
          break;
        case 't':
          push(make_seq(Kind::tuple, pop_mark()));
          break;
        case 0x85:
          push(make_seq(Kind::tuple, pop_n(1)));
          break;
        case 0x86:
          push(make_seq(Kind::tuple, pop_n(2)));
          break;
        case 0x87:
          push(make_seq(Kind::tuple, pop_n(3)));
          break;
        case 'l':
          push(make_seq(Kind::list, pop_mark()));
          break;
        case 'd': {
          std::vector<uint32_t> kv = pop_mark();
          if (kv.size() % 2) fail("DICT with an odd number of items");
          push(make_seq(Kind::dict, std::move(kv)));
          break;
        }
        case 's': {
          const uint32_t value = pop(), key = pop();
          add_items(top(), Kind::dict, {key, value});
          break;
        }
        case 'u': {
          std::vector<uint32_t> kv = pop_mark();
          if (kv.size() % 2) fail("SETITEMS with an odd number of items");
          add_items(top(), Kind::dict, kv);
          break;
        }
        case 'a': {
          const uint32_t value = pop();
          add_items(top(), Kind::list, {value});
          break;
        }
        case 'e': {
          std::vector<uint32_t> values = pop_mark();
          add_items(top(), Kind::list, values);
          break;
        }
        case 'J':
          push(make_int(load_le<int32_t>(take(4))));
          break;
        case 'K':
          push(make_int(*take(1)));
          break;
        case 'M':
          push(make_int(load_le<uint16_t>(take(2))));
          break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          const uint8_t n = *take(1);
          if (n > 8) fail("LONG1 of " + std::to_string(n) + " bytes (more than 64 bits)");
          const uint8_t* p = take(n);
          uint64_t v = 0;
          for (uint8_t i = 0; i < n; ++i) v |= uint64_t{p[i]} << (8 * i);
          if (n > 0 && n < 8 && (p[n - 1] & 0x80)) v |= ~uint64_t{0} << (8 * n);
          push(make_int(static_cast<int64_t>(v)));
          break;
        }
        case 'G': {  // BINFLOAT: big-endian double
          const uint8_t* p = take(8);
          uint64_t bits = 0;
          for (int i = 0; i < 8; ++i) bits = (bits << 8) | p[i];
          const uint32_t o = make(Kind::floating);
          std::memcpy(&prog_.objects[o].floating, &bits, 8);
          push(o);
          break;
        }
        case 0x88:
          push(true_);
          break;
        case 0x89:
          push(false_);
          break;
        case 'N':
          push(none_);
          break;
        case 0x8c:
          push(make_text(Kind::string, *take(1)));
          break;
        case 'X':
          push(make_text(Kind::string, load_le<uint32_t>(take(4))));
          break;
        case 0x8d:
          push(make_text(Kind::string, load_le<uint64_t>(take(8))));
          break;
        case 'C':
          push(make_text(Kind::bytes, *take(1)));
          break;
        case 'B':
          push(make_text(Kind::bytes, load_le<uint32_t>(take(4))));
          break;
        case 'q':
          memo_[*take(1)] = top();
          break;
        case 'r':
          memo_[load_le<uint32_t>(take(4))] = top();
          break;
        case 0x94:
          memo_[static_cast<uint32_t>(memo_.size())] = top();
          break;
        case 'h':
          push(memo_get(*take(1)));
          break;
        case 'j':
          push(memo_get(load_le<uint32_t>(take(4))));
          break;
        case 'c': {  // GLOBAL "module\nname\n"
          std::string module = line(), name = line();
          push(make_global(module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          const uint32_t name = pop(), module = pop();
          if (obj(name).kind != Kind::string || obj(module).kind != Kind::string)
            fail("STACK_GLOBAL expects two strings");
          push(make_global(obj(module).text + "." + obj(name).text));
          break;
        }
        case 'R': {
          const uint32_t args = pop(), callable = pop();
          push(reduce(callable, args));
          break;
        }
        case 0x81: {  // NEWOBJ: cls.__new__(cls, *args); only OrderedDict is expected
          const uint32_t args = pop(), cls = pop();
          if (obj(cls).kind != Kind::global || obj(cls).text != "collections.OrderedDict" ||
              obj(args).kind != Kind::tuple)
            fail("NEWOBJ of an unsupported class");
          push(make(Kind::dict));
          break;
        }
        case 'b': {  // BUILD: state (e.g. the state_dict's _metadata) is not needed
          pop();
          top();
          break;
        }
        case 'Q':
          push(persistent_load(pop()));
          break;
        default: {
          char hex[8];
          std::snprintf(hex, sizeof hex, "0x%02x", op);
          fail(std::string("unsupported pickle opcode ") + hex);
        }
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& message) const {
    throw Error(what_ + ": pickle " + message + " at byte " + std::to_string(op_pos_));
  }
  const uint8_t* take(uint64_t n) {
    if (n > data_.size() - pos_) fail("argument runs past the end of the pickle");
    const uint8_t* p = data_.data() + pos_;
    pos_ += n;
    return p;
  }
  std::string line() {
    const size_t rest = data_.size() - pos_;
    const void* nl = std::memchr(data_.data() + pos_, '\n', rest);
    if (!nl) fail("GLOBAL without a newline");
    const size_t len = static_cast<const uint8_t*>(nl) - (data_.data() + pos_);
    std::string s(reinterpret_cast<const char*>(take(len)), len);
    take(1);
    return s;
  }
  Object& obj(uint32_t i) { return prog_.objects[i]; }
  uint32_t make(Kind kind) {
    if (prog_.objects.size() >= kMaxObjects) fail("creates too many objects");
    prog_.objects.push_back(Object{});
    prog_.objects.back().kind = kind;
    return static_cast<uint32_t>(prog_.objects.size() - 1);
  }
  uint32_t make_int(int64_t v) {
    const uint32_t o = make(Kind::integer);
    obj(o).integer = v;
    return o;
  }
  uint32_t make_text(Kind kind, uint64_t n) {
    const uint8_t* p = take(n);
    const uint32_t o = make(kind);
    obj(o).text.assign(reinterpret_cast<const char*>(p), n);
    return o;
  }
  uint32_t make_global(std::string name) {
    const uint32_t o = make(Kind::global);
    obj(o).text = std::move(name);
    return o;
  }
  uint32_t make_seq(Kind kind, std::vector<uint32_t> items) {
    const uint32_t o = make(kind);
    obj(o).items = std::move(items);
    return o;
  }
  void push(uint32_t o) { stack_.push_back(o); }
  uint32_t top() {
    if (stack_.size() <= base()) fail("needs an object but the stack is empty");
    return stack_.back();
  }
  uint32_t pop() {
    const uint32_t o = top();
    stack_.pop_back();
    return o;
  }
  size_t base() const { return marks_.empty() ? 0 : marks_.back(); }
  std::vector<uint32_t> pop_n(size_t n) {
    if (stack_.size() < base() + n) fail("needs " + std::to_string(n) + " objects on the stack");
    std::vector<uint32_t> items(stack_.end() - static_cast<std::ptrdiff_t>(n), stack_.end());
    stack_.resize(stack_.size() - n);
    return items;
  }
  std::vector<uint32_t> pop_mark() {
    if (marks_.empty()) fail("needs a MARK");
    const size_t mark = marks_.back();
    marks_.pop_back();
    std::vector<uint32_t> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  void add_items(uint32_t target, Kind kind, const std::vector<uint32_t>& items) {
    if (obj(target).kind != kind)
      fail(kind == Kind::dict ? "SETITEM(S) on something that is not a dict"
                              : "APPEND(S) on something that is not a list");
    auto& dst = obj(target).items;
    dst.insert(dst.end(), items.begin(), items.end());
  }
  uint32_t memo_get(uint32_t key) {
    const auto it = memo_.find(key);
    if (it == memo_.end()) fail("memo key " + std::to_string(key) + " was never stored");
    return it->second;
  }
  int64_t as_int(uint32_t o, const char* what) {
    if (obj(o).kind != Kind::integer) fail(std::string(what) + ": expected an int");
    return obj(o).integer;
  }
  Shape as_shape(uint32_t o, const char* what) {
    if (obj(o).kind != Kind::tuple) fail(std::string(what) + ": expected a tuple of ints");
    Shape shape;
    for (uint32_t item : obj(o).items) shape.push_back(as_int(item, what));
    return shape;
  }

  uint32_t reduce(uint32_t callable, uint32_t args_index) {
    if (obj(callable).kind != Kind::global) fail("REDUCE on something that is not a global");
    if (obj(args_index).kind != Kind::tuple) fail("REDUCE arguments are not a tuple");
    const std::string name = obj(callable).text;
    const std::vector<uint32_t> args = obj(args_index).items;  // copy: make() may reallocate
    if (name == "collections.OrderedDict") {
      if (!args.empty()) fail("OrderedDict() with arguments");
      return make(Kind::dict);
    }
    if (name == "torch._utils._rebuild_tensor_v2") {
      if (args.size() != 6 && args.size() != 7)
        fail("_rebuild_tensor_v2 expects 6 or 7 arguments, found " + std::to_string(args.size()));
      if (obj(args[0]).kind != Kind::storage) fail("_rebuild_tensor_v2: expected a storage");
      Tensor t;
      t.storage = static_cast<uint32_t>(obj(args[0]).integer);
      t.storage_offset = as_int(args[1], "storage_offset");
      t.size = as_shape(args[2], "size");
      t.stride = as_shape(args[3], "stride");
      if (t.size.size() != t.stride.size())
        fail("_rebuild_tensor_v2: size and stride ranks differ");
      const uint32_t o = make(Kind::tensor);
      obj(o).integer = static_cast<int64_t>(prog_.tensors.size());
      prog_.tensors.push_back(std::move(t));
      return o;
    }
    if (name == "torch._utils._rebuild_parameter" ||
        name == "torch._utils._rebuild_parameter_with_state") {
      if (args.empty() || obj(args[0]).kind != Kind::tensor)
        fail(name + ": expected a tensor argument");
      return args[0];
    }
    fail("unsupported callable " + name);
  }

  uint32_t persistent_load(uint32_t pid) {
    const Object& t = obj(pid);
    if (t.kind != Kind::tuple || t.items.size() != 5 || obj(t.items[0]).kind != Kind::string ||
        obj(t.items[0]).text != "storage")
      fail("persistent id: expected ('storage', type, key, location, numel)");
    const Object& type = obj(t.items[1]);
    const Object& key = obj(t.items[2]);
    if (type.kind != Kind::global) fail("persistent id: storage type is not a global");
    if (key.kind != Kind::string) fail("persistent id: storage key is not a string");
    Storage s{type.text, key.text};
    const uint32_t o = make(Kind::storage);
    obj(o).integer = static_cast<int64_t>(prog_.storages.size());
    prog_.storages.push_back(std::move(s));
    return o;
  }

  std::span<const uint8_t> data_;
  const std::string& what_;
  size_t pos_ = 0, op_pos_ = 0;
  Program prog_;
  std::vector<uint32_t> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint32_t, uint32_t> memo_;
  uint32_t none_ = 0, true_ = 0, false_ = 0, empty_tuple_ = 0;
};

}  // namespace detail

// Runs the pickle and returns the arena with the root object.
inline Program run(std::span<const uint8_t> data, const std::string& what) {
  return detail::Machine(data, what).run();
}

}  // namespace tinybert::convert::pickle
