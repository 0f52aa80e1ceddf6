// Choosing a CPU backend by name at run time: "ref" (the plain fp32 reference) or, when the
// program links tinybert::onednn (which defines TINYBERT_HAVE_ONEDNN), "f32", "bf16" or "int8".
#pragma once

#include <string>

#include "tinybert/backend/cpu_ref.hpp"
#include "tinybert/error.hpp"
#ifdef TINYBERT_HAVE_ONEDNN
#include "tinybert/backend/onednn.hpp"
#endif

namespace tinybert {

inline std::string default_backend() {
#ifdef TINYBERT_HAVE_ONEDNN
  return "f32";
#else
  return "ref";
#endif
}

// Calls fn(backend) with the backend `name` selects and returns its result; the forward pass
// and tasks are templates, so fn is usually a generic lambda.
template <class Fn>
auto with_backend(const std::string& name, Fn&& fn) {
  if (name == "ref") {
    CpuRefBackend backend;
    return fn(backend);
  }
#ifdef TINYBERT_HAVE_ONEDNN
  OneDnnBackend backend(parse_precision(name));
  return fn(backend);
#else
  throw Error("backend '" + name + "': this build has no oneDNN backend (use ref)");
#endif
}

}  // namespace tinybert
