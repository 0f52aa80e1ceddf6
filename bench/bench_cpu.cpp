// CPU latency/throughput of the oneDNN backend: batch 1 at seq 16..512 and a packed batch of 32
// sequences of 16..128 tokens, for one model and one precision per process (so peak RSS is
// that variant's). Prints one JSON object per line; bench/run_cpu_bench.sh runs it next to
// PyTorch and ONNX Runtime and writes the table.
//   bench_cpu --model M.tbw --precision f32|bf16|int8 [--threads 2] [--passes 3] [--runs 20]
//             [--shapes 16,32,64,128,256,512,b32] [--attention fused|blocked|amx]
//   (a shape bNxL adds N packed sequences of L tokens, e.g. b40x23, with tokens per second)
//   bench_cpu --make-bert-base OUT.tbw      (random weights, bert-base-chinese shape)
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include "bench_models.hpp"
#include "tinybert/backend/onednn.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using bench::add_sequence;
using bench::make_bert_base;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Resident memory now, split by what backs it (from /proc/self/smaps): the mmapped weight file,
// shared-library images (code and data of libdnnl, libgomp, libstdc++, ...: not the engine's to
// control), and anonymous memory (heap, packed weights, activations, thread stacks).
struct RssBreakdown {
  double total = 0, weight_file = 0, libraries = 0, anonymous = 0, other = 0;  // MiB
};

RssBreakdown rss_breakdown(const std::string& weight_path) {
  RssBreakdown r;
  std::ifstream smaps("/proc/self/smaps");
  std::string line, mapping;
  double* bucket = &r.other;
  while (std::getline(smaps, line)) {
    if (line.empty()) continue;
    if (std::isxdigit(static_cast<unsigned char>(line[0])) && line.find('-') < line.find(' ')) {
      std::istringstream fields(line);
      std::string range, perms, offset, device, inode;
      mapping.clear();
      fields >> range >> perms >> offset >> device >> inode;
      std::getline(fields >> std::ws, mapping);
      const bool library = mapping.find(".so") != std::string::npos;
      bucket = mapping.empty() || mapping[0] == '['             ? &r.anonymous
               : mapping.find(weight_path) != std::string::npos ? &r.weight_file
               : library                                        ? &r.libraries
                                                                : &r.other;
    } else if (line.rfind("Rss:", 0) == 0) {
      const double mib = std::stod(line.substr(4)) / 1024.0;
      *bucket += mib;
      r.total += mib;
    }
  }
  return r;
}

std::string rss_json(const RssBreakdown& r) {
  char text[256];
  std::snprintf(
      text, sizeof text,
      "{\"total\":%.1f,\"weight_file\":%.1f,\"libraries\":%.1f,\"anonymous\":%.1f,\"other\":%.1f}",
      r.total, r.weight_file, r.libraries, r.anonymous, r.other);
  return text;
}

// Linear layers + attention of one forward pass over this batch.
double forward_flops(const ModelConfig& c, const Batch& batch) {
  const double h = static_cast<double>(c.hidden_size), f = static_cast<double>(c.intermediate_size);
  double flops = 2.0 * static_cast<double>(batch.num_tokens()) * (4 * h * h + 2 * h * f);
  for (int64_t s = 0; s < batch.num_sequences(); ++s)
    flops += 4.0 * double(batch.seq_len(s)) * double(batch.seq_len(s)) * h;
  return flops * static_cast<double>(c.num_layers);
}

double process_cpu_ms() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

// Median of `runs` timed forwards, best of `passes` passes: wall time, and the process's CPU
// time (all threads; with one thread an estimate of the unloaded time on a busy machine).
struct Timing {
  double ms = 1e30, cpu_ms = 1e30;
};

Timing time_forward(const Encoder<OneDnnBackend>& encoder, const Batch& batch,
                    Workspace<OneDnnBackend>& ws, int passes, int runs) {
  encoder.forward(batch, ws);
  Timing best;
  for (int p = 0; p < passes; ++p) {
    std::vector<double> times, cpu_times;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = Clock::now();
      const double cpu0 = process_cpu_ms();
      encoder.forward(batch, ws);
      cpu_times.push_back(process_cpu_ms() - cpu0);
      times.push_back(ms_since(t0));
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    std::nth_element(cpu_times.begin(), cpu_times.begin() + cpu_times.size() / 2, cpu_times.end());
    best.ms = std::min(best.ms, times[times.size() / 2]);
    best.cpu_ms = std::min(best.cpu_ms, cpu_times[cpu_times.size() / 2]);
  }
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--make-bert-base") {
      make_bert_base(args[1]);
      return 0;
    }
    std::string model_path, precision_name_arg = "f32", shapes = "16,32,64,128,256,512,b32";
    auto attention = OneDnnBackend::AttentionKernel::automatic;
    int threads = 2, passes = 3, runs = 20;
    for (size_t i = 0; i + 1 < args.size(); i += 2) {
      if (args[i] == "--model")
        model_path = args[i + 1];
      else if (args[i] == "--precision")
        precision_name_arg = args[i + 1];
      else if (args[i] == "--threads")
        threads = std::stoi(args[i + 1]);
      else if (args[i] == "--passes")
        passes = std::stoi(args[i + 1]);
      else if (args[i] == "--runs")
        runs = std::stoi(args[i + 1]);
      else if (args[i] == "--shapes")
        shapes = args[i + 1];
      else if (args[i] == "--attention" && args[i + 1] == "fused")
        attention = OneDnnBackend::AttentionKernel::fused;
      else if (args[i] == "--attention" && args[i + 1] == "blocked")
        attention = OneDnnBackend::AttentionKernel::blocked;
      else if (args[i] == "--attention" && args[i + 1] == "amx")
        attention = OneDnnBackend::AttentionKernel::amx;
      else
        throw Error("unknown option " + args[i] + " " + args[i + 1]);
    }
    if (model_path.empty()) throw Error("usage: bench_cpu --model M.tbw --precision f32|bf16|int8");
    omp_set_num_threads(threads);
    const Precision precision = parse_precision(precision_name_arg);

    const auto t_load = Clock::now();
    const Model model(model_path);
    OneDnnBackend backend(precision, 128, attention);
    const Encoder encoder(model, backend);
    const double load_only_ms = ms_since(t_load);
    const std::string weight_path = std::filesystem::canonical(model_path).string();
    const RssBreakdown after_load = rss_breakdown(weight_path);
    Workspace<OneDnnBackend> ws;
    std::mt19937 rng(7);
    Batch first;
    add_sequence(first, 16, model.config().vocab_size, rng);
    encoder.forward(first, ws);
    const double load_ms = ms_since(t_load);
    const RssBreakdown after_first = rss_breakdown(weight_path);
    const std::string name = model.config().name;
    if (!backend.fallback_reason().empty())
      std::fprintf(stderr, "bench_cpu: %s\n", backend.fallback_reason().c_str());
    std::printf(
        "{\"engine\":\"tinybert\",\"model\":\"%s\",\"dtype\":\"%s\",\"threads\":%d,\"load_ms\":%."
        "1f,\"load_and_first_ms\":%.1f,\"ran_as\":\"%s\",\"attention\":\"%s\"}\n",
        name.c_str(), precision_name(precision), threads, load_only_ms, load_ms,
        precision_name(backend.precision()),
        backend.attention_name(model.config().head_dim()).c_str());

    std::vector<std::string> shape_list;  // the comma-separated --shapes
    for (size_t start = 0; start <= shapes.size();) {
      const size_t end = std::min(shapes.find(',', start), shapes.size());
      shape_list.push_back(shapes.substr(start, end - start));
      start = end + 1;
    }
    const auto wanted = [&](const std::string& shape) {
      return std::find(shape_list.begin(), shape_list.end(), shape) != shape_list.end();
    };
    for (int64_t length : {16, 32, 64, 128, 256, 512}) {
      if (!wanted(std::to_string(length))) continue;
      Batch batch;
      add_sequence(batch, length, model.config().vocab_size, rng);
      const Timing t =
          time_forward(encoder, batch, ws, passes, length >= 256 ? std::max(3, runs / 4) : runs);
      std::printf(
          "{\"engine\":\"tinybert\",\"model\":\"%s\",\"dtype\":\"%s\",\"shape\":\"b1 "
          "s%lld\",\"ms\":%.3f,\"cpu_ms\":%.3f,\"gflops\":%.1f}\n",
          name.c_str(), precision_name(precision), static_cast<long long>(length), t.ms, t.cpu_ms,
          forward_flops(model.config(), batch) / t.ms / 1e6);
      std::fflush(stdout);
    }
    Batch packed;  // 32 sequences, lengths spread over 16..128, no padding
    for (int i = 0; i < 32; ++i)
      add_sequence(packed, std::lround(16 + i * 112.0 / 31), model.config().vocab_size, rng);
    if (wanted("b32")) {
      const Timing t = time_forward(encoder, packed, ws, passes, std::max(3, runs / 4));
      std::printf(
          "{\"engine\":\"tinybert\",\"model\":\"%s\",\"dtype\":\"%s\",\"shape\":\"b32 "
          "s16..128\",\"ms\":%.3f,\"cpu_ms\":%.3f,\"gflops\":%.1f,\"tokens\":%lld}\n",
          name.c_str(), precision_name(precision), t.ms, t.cpu_ms,
          forward_flops(model.config(), packed) / t.ms / 1e6,
          static_cast<long long>(packed.num_tokens()));
    }
    // bNxL: N packed sequences of L tokens each, e.g. the server's merged classify passes
    // (bench/RESULTS.md, "AMX attention and fused feed-forward"), with the tokens per second they
    // run at.
    for (const std::string& shape : shape_list) {
      long long count = 0, length = 0;
      int used = 0;
      if (std::sscanf(shape.c_str(), "b%lldx%lld%n", &count, &length, &used) != 2 ||
          used != static_cast<int>(shape.size()))
        continue;
      if (count < 1 || length < 1 || length > model.config().max_position_embeddings)
        throw Error("shape " + shape + ": N >= 1 sequences of 1.." +
                    std::to_string(model.config().max_position_embeddings) + " tokens");
      Batch batch;
      for (long long i = 0; i < count; ++i)
        add_sequence(batch, length, model.config().vocab_size, rng);
      const Timing t = time_forward(encoder, batch, ws, passes, runs);
      std::printf(
          "{\"engine\":\"tinybert\",\"model\":\"%s\",\"dtype\":\"%s\",\"shape\":\"%s\",\"ms\":"
          "%.3f,\"cpu_ms\":%.3f,\"tokens\":%lld,\"tokens_per_s\":%.0f}\n",
          name.c_str(), precision_name(precision), shape.c_str(), t.ms, t.cpu_ms, count * length,
          static_cast<double>(count * length) / t.ms * 1e3);
      std::fflush(stdout);
    }
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const RssBreakdown at_end = rss_breakdown(weight_path);
    std::printf(
        "{\"engine\":\"tinybert\",\"model\":\"%s\",\"dtype\":\"%s\",\"peak_rss_mib\":%.0f,\"rss_"
        "after_load_mib\":%.0f,"
        "\"weight_file_mib\":%.1f,\"rss_after_load\":%s,\"rss_after_first\":%s,\"rss_at_end\":%s}"
        "\n",
        name.c_str(), precision_name(precision), usage.ru_maxrss / 1024.0, after_load.total,
        model.file().file_bytes() / 1048576.0, rss_json(after_load).c_str(),
        rss_json(after_first).c_str(), rss_json(at_end).c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cpu: error: %s\n", e.what());
    return 1;
  }
}
