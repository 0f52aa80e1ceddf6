// tinybert._native: the C API (include/tinybert/tinybert.h) for Python, with the engine linked in.
// The pure-Python package (python/tinybert/) is the public face; this module only moves data:
// texts in as UTF-8 without copies, embeddings out as numpy arrays over the C API's own buffer,
// JSON requests and responses as bytes / str. Every engine call runs with the GIL released, and
// every failure raises tinybert.Error built from tb_last_error_json().
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include "tinybert/tinybert.h"

namespace py = pybind11;

namespace {

// tinybert.Error from a status and the error body (the HTTP API's {"error": {...}}).
[[noreturn]] void raise_error(int status, const std::string& error_json) {
  const py::object error_class = py::module_::import("tinybert._errors").attr("Error");
  const py::object error = error_class.attr("_from_native")(status, error_json);
  PyErr_SetObject(error_class.ptr(), error.ptr());
  throw py::error_already_set();
}

// This thread's last failure (call right after the failed call, with the GIL held again: the
// message is thread-local in the C API and this is the thread that made the call).
[[noreturn]] void raise_last_error(tb_status status) {
  raise_error(static_cast<int>(status), tb_last_error_json());
}

// An error of the binding itself, in the same shape as the engine's.
[[noreturn]] void raise_request_error(tb_status status, const std::string& type,
                                      const std::string& message,
                                      std::optional<size_t> input_index = std::nullopt,
                                      std::optional<size_t> position = std::nullopt) {
  py::dict body;
  body["status"] = status == TB_INVALID_REQUEST || status == TB_INVALID_ARGUMENT ? 400 : 500;
  body["type"] = type;
  body["message"] = message;
  if (input_index) body["input_index"] = *input_index;
  if (position) body["position"] = *position;
  py::dict outer;
  outer["error"] = body;
  const std::string text = py::module_::import("json").attr("dumps")(outer).cast<std::string>();
  raise_error(static_cast<int>(status), text);
}

// Frees what the C API allocated, at the end of a scope.
struct Freed {
  void* buffer = nullptr;
  ~Freed() { tb_free(buffer); }
};

// The UTF-8 bytes of a text without copying: a str's UTF-8 form (CPython caches it in the
// object) or a bytes object as it is (the engine checks that it is UTF-8). The pointer lives as
// long as `text` does. Messages name the text as the engine does ("text 2, character 5: ...",
// 1-based; input_index / position 0-based). The C API takes NUL-terminated strings, so a NUL
// inside is refused here rather than cutting the text short.
const char* utf8_of(py::handle text, std::optional<size_t> index, const char* name) {
  const auto where = [&](std::optional<size_t> character) {
    std::string s = index ? "text " + std::to_string(*index + 1) : std::string(name);
    if (character) s += ", character " + std::to_string(*character + 1);
    return s + ": ";
  };
  const char* data = nullptr;
  Py_ssize_t size = 0;
  if (PyUnicode_Check(text.ptr())) {
    data = PyUnicode_AsUTF8AndSize(text.ptr(), &size);
    if (data == nullptr) {
      // A lone surrogate ("\ud800"): a Python str can hold it, UTF-8 cannot.
      py::error_already_set e;
      Py_ssize_t at = 0;
      Py_UCS4 code = 0;
      if (e.matches(PyExc_UnicodeEncodeError) &&
          PyUnicodeEncodeError_GetStart(e.value().ptr(), &at) == 0)
        code = PyUnicode_ReadChar(text.ptr(), at);
      PyErr_Clear();
      char hex[16];
      std::snprintf(hex, sizeof hex, "U+%04X", static_cast<unsigned>(code));
      const auto character = static_cast<size_t>(at);
      raise_request_error(TB_INVALID_REQUEST, "invalid_request",
                          where(character) + "a lone surrogate " + hex +
                              " is not valid Unicode and cannot be encoded as UTF-8",
                          index, character);
    }
    if (std::memchr(data, 0, static_cast<size_t>(size)) != nullptr) {
      const auto character = static_cast<size_t>(
          PyUnicode_FindChar(text.ptr(), 0, 0, PyUnicode_GetLength(text.ptr()), 1));
      raise_request_error(TB_INVALID_REQUEST, "invalid_request",
                          where(character) + "a NUL character (U+0000); texts cannot contain NUL",
                          index, character);
    }
    return data;
  }
  if (PyBytes_Check(text.ptr())) {
    char* bytes = nullptr;
    PyBytes_AsStringAndSize(text.ptr(), &bytes, &size);
    if (const void* nul = std::memchr(bytes, 0, static_cast<size_t>(size)))
      raise_request_error(TB_INVALID_REQUEST, "invalid_request",
                          where(std::nullopt) + "a NUL byte at byte " +
                              std::to_string(static_cast<const char*>(nul) - bytes) +
                              "; texts cannot contain NUL",
                          index);
    return bytes;
  }
  throw py::type_error((index ? "texts[" + std::to_string(*index) + "]" : std::string(name)) +
                       " must be a str (or UTF-8 bytes), not " + Py_TYPE(text.ptr())->tp_name);
}

// A sequence of texts as a tuple: it keeps every item alive while the GIL is released, even if
// another thread changes the caller's list meanwhile.
py::tuple text_tuple(py::handle texts) {
  if (PyUnicode_Check(texts.ptr()) || PyBytes_Check(texts.ptr()))
    throw py::type_error("texts must be a list of str, not one str");
  PyObject* tuple = PySequence_Tuple(texts.ptr());
  if (tuple == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::tuple>(tuple);
}

std::vector<const char*> text_pointers(const py::tuple& texts) {
  std::vector<const char*> pointers(texts.size());
  for (size_t i = 0; i < texts.size(); ++i) pointers[i] = utf8_of(texts[i], i, "text");
  return pointers;
}

// The C API's strings are UTF-8 (a vocabulary could hold a stray byte: replaced, not fatal).
py::str decode(const char* utf8) {
  PyObject* s = PyUnicode_DecodeUTF8(utf8, static_cast<Py_ssize_t>(std::strlen(utf8)), "replace");
  if (s == nullptr) throw py::error_already_set();
  return py::reinterpret_steal<py::str>(s);
}

// A numpy float32 array (rows x dimension) over the C API's buffer, freed with tb_free when the
// last view of it goes.
py::array_t<float> float_matrix(float* data, size_t rows, size_t dimension) {
  const auto r = static_cast<py::ssize_t>(rows), d = static_cast<py::ssize_t>(dimension);
  if (data == nullptr || rows * dimension == 0) {
    tb_free(data);
    return py::array_t<float>(std::vector<py::ssize_t>{r, d});
  }
  py::capsule owner(data, [](void* buffer) { tb_free(buffer); });
  const auto row_bytes = static_cast<py::ssize_t>(dimension * sizeof(float));
  return py::array_t<float>({r, d}, {row_bytes, py::ssize_t{sizeof(float)}}, data, owner);
}

class Model {
 public:
  Model(const std::string& path, const std::optional<std::string>& backend) {
    tb_model* model = nullptr;
    tb_status status;
    {
      py::gil_scoped_release release;
      status = tb_model_load(path.c_str(), backend ? backend->c_str() : nullptr, &model);
    }
    if (status != TB_OK) raise_last_error(status);
    model_ = model;
  }
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  // Python drops the last reference only when no call is running (each call holds one). In a
  // child made by fork() the model's scheduler thread does not exist: it is left alone there.
  ~Model() {
    if (getpid() == owner_pid_) tb_model_free(model_);
  }

  // Waits for the calls in flight, then frees the model; later calls raise tinybert.Error.
  void close() {
    py::gil_scoped_release release;
    std::unique_lock lock(mutex_);
    if (getpid() == owner_pid_) tb_model_free(model_);
    model_ = nullptr;
  }
  bool closed() const {
    std::shared_lock lock(mutex_);
    return model_ == nullptr;
  }

  py::str info() {
    char* json = nullptr;
    check(call([&](tb_model* m) { return tb_model_info(m, &json); }));
    const Freed freed{json};
    return decode(json);
  }

  py::dict tokenize(py::object text, py::object text_pair, size_t max_length) {
    const char* a = utf8_of(text, std::nullopt, "text");
    const char* b = text_pair.is_none() ? nullptr : utf8_of(text_pair, std::nullopt, "text_pair");
    tb_tokens* tokens = nullptr;
    check(call([&](tb_model* m) { return tb_tokenize(m, a, b, max_length, &tokens); }));
    const Freed freed{tokens};
    const size_t n = tokens->count;
    py::list ids(n), type_ids(n), mask(n), strings(n), offsets(n), sequence_ids(n);
    for (size_t i = 0; i < n; ++i) {
      ids[i] = tokens->ids[i];
      type_ids[i] = tokens->type_ids[i];
      mask[i] = 1;
      strings[i] = decode(tokens->tokens[i]);
      offsets[i] = py::make_tuple(tokens->char_begin[i], tokens->char_end[i]);
      sequence_ids[i] = tokens->sequence_ids[i] < 0 ? py::object(py::none())
                                                    : py::object(py::int_(tokens->sequence_ids[i]));
    }
    py::dict out;
    out["input_ids"] = ids;
    out["token_type_ids"] = type_ids;
    out["attention_mask"] = mask;
    out["tokens"] = strings;
    out["offsets"] = offsets;
    out["sequence_ids"] = sequence_ids;
    return out;
  }

  py::array_t<float> embed(py::handle texts, int normalize) {
    const py::tuple items = text_tuple(texts);
    const std::vector<const char*> pointers = text_pointers(items);
    float* vectors = nullptr;
    size_t dimension = 0;
    check(call([&](tb_model* m) {
      return tb_embed(m, pointers.data(), pointers.size(), normalize, &vectors, &dimension);
    }));
    return float_matrix(vectors, pointers.size(), dimension);
  }

  // The C++ side of bench/bench_python.py: `iterations` calls of tb_embed in a C++ loop (the
  // same model, runner and texts as embed() above), seconds in total.
  double time_embed(py::handle texts, int normalize, size_t iterations) {
    const py::tuple items = text_tuple(texts);
    const std::vector<const char*> pointers = text_pointers(items);
    double seconds = 0;
    check(call([&](tb_model* m) {
      const auto started = std::chrono::steady_clock::now();
      for (size_t i = 0; i < iterations; ++i) {
        float* vectors = nullptr;
        size_t dimension = 0;
        const tb_status s =
            tb_embed(m, pointers.data(), pointers.size(), normalize, &vectors, &dimension);
        tb_free(vectors);
        if (s != TB_OK) return s;
      }
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
      return TB_OK;
    }));
    return seconds;
  }

  // tb_classify, tb_fill_mask, tb_extract: request JSON (UTF-8 bytes) in, response JSON out.
  template <tb_status (*fn)(tb_model*, const char*, char**)>
  py::str json_call(const py::bytes& request) {
    const char* body = PyBytes_AsString(request.ptr());  // kept alive by `request`
    if (std::strlen(body) != static_cast<size_t>(PyBytes_Size(request.ptr())))
      raise_request_error(TB_INVALID_REQUEST, "invalid_request",
                          "the request contains a NUL byte; texts cannot contain NUL");
    char* response = nullptr;
    check(call([&](tb_model* m) { return fn(m, body, &response); }));
    const Freed freed{response};
    return decode(response);
  }

 private:
  // Runs fn(model) without the GIL while holding the model open; TB_OK or the failure.
  template <class Fn>
  tb_status call(Fn&& fn) {
    // A model loaded before fork() would wait forever for its scheduler thread in the child.
    if (getpid() != owner_pid_)
      raise_request_error(TB_INVALID_ARGUMENT, "invalid_argument",
                          "this model was loaded in another process (before fork()); load it "
                          "in this one, or use multiprocessing's \"spawn\" start method");
    bool closed = false;
    tb_status status = TB_OK;
    {
      py::gil_scoped_release release;
      std::shared_lock lock(mutex_);
      if (model_ == nullptr)
        closed = true;
      else
        status = fn(model_);
    }
    if (closed) raise_request_error(TB_INVALID_ARGUMENT, "invalid_argument", "the model is closed");
    return status;
  }
  static void check(tb_status status) {
    if (status != TB_OK) raise_last_error(status);
  }

  mutable std::shared_mutex mutex_;
  tb_model* model_ = nullptr;
  const pid_t owner_pid_ = getpid();
};

py::str convert(const std::string& model_dir, const std::string& out_path,
                const std::optional<std::string>& options_json) {
  char* report = nullptr;
  tb_status status;
  {
    py::gil_scoped_release release;
    status = tb_convert(model_dir.c_str(), out_path.c_str(),
                        options_json ? options_json->c_str() : nullptr, &report);
  }
  if (status != TB_OK) raise_last_error(status);
  const Freed freed{report};
  return decode(report == nullptr ? "{}" : report);
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "tinybert's C API for Python (use the tinybert package, not this module)";
  m.attr("C_API_VERSION") = py::make_tuple(TB_VERSION_MAJOR, TB_VERSION_MINOR);
  m.def(
      "version", [] { return std::string(tb_version()); }, "The library's version.");
  m.def("convert", &convert, py::arg("model_dir"), py::arg("out_path"),
        py::arg("options_json") = py::none(), "tb_convert: a model folder -> .tbw; report JSON.");

  py::class_<Model>(m, "Model")
      .def(py::init<const std::string&, const std::optional<std::string>&>(), py::arg("path"),
           py::arg("backend") = py::none())
      .def("close", &Model::close)
      .def_property_readonly("closed", &Model::closed)
      .def("info", &Model::info)
      .def("tokenize", &Model::tokenize, py::arg("text"), py::arg("text_pair") = py::none(),
           py::arg("max_length") = 0)
      .def("embed", &Model::embed, py::arg("texts"), py::arg("normalize") = -1)
      .def("time_embed", &Model::time_embed, py::arg("texts"), py::arg("normalize"),
           py::arg("iterations"))
      .def("classify", &Model::json_call<tb_classify>, py::arg("request"))
      .def("fill_mask", &Model::json_call<tb_fill_mask>, py::arg("request"))
      .def("extract", &Model::json_call<tb_extract>, py::arg("request"));
}
