// GPU latency and throughput of the CUDA backend, one model and one precision per process: batch 1
// at seq 16..512 (CUDA Graph replays, then eager), batch 128 at seq 128 (one packed batch). Each
// timing is a whole request as a server sees it: upload, encoder, CLS pooling, copy back. Median
// of `runs`, best of `passes`. Prints JSON lines; bench/gpu/run_gpu_bench.sh runs it beside
// PyTorch and writes the table.
//   bench_gpu --model M.tbw --precision f16|bf16|int8 [--label NAME] [--passes 3] [--runs 50]
//   bench_gpu --make-bert-base OUT.tbw      (random weights, bert-base-chinese shape)
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

#include "../bench_models.hpp"
#include "tinybert/backend/cuda_runner.hpp"
#include "tinybert/tinybert.hpp"

using namespace tinybert;
using bench::add_sequence;
using bench::make_bert_base;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// Linear layers + attention of one forward pass over this batch.
double forward_flops(const ModelConfig& c, const Batch& batch) {
  const double h = static_cast<double>(c.hidden_size), f = static_cast<double>(c.intermediate_size);
  double flops = 2.0 * static_cast<double>(batch.num_tokens()) * (4 * h * h + 2 * h * f);
  for (int64_t s = 0; s < batch.num_sequences(); ++s)
    flops += 4.0 * double(batch.seq_len(s)) * double(batch.seq_len(s)) * h;
  return flops * static_cast<double>(c.num_layers);
}

// Median of `runs` requests, best of `passes` passes, after warm-up (which also captures the
// graph).
double time_requests(Runner& runner, const ForwardRequest& request, int passes, int runs) {
  for (int i = 0; i < 3; ++i) runner.run(request);
  double best = 1e30;
  for (int p = 0; p < passes; ++p) {
    std::vector<double> times;
    for (int r = 0; r < runs; ++r) {
      const auto t0 = Clock::now();
      runner.run(request);
      times.push_back(ms_since(t0));
    }
    std::nth_element(times.begin(), times.begin() + times.size() / 2, times.end());
    best = std::min(best, times[times.size() / 2]);
  }
  return best;
}

void print_timing(const std::string& label, const char* dtype, const std::string& shape,
                  const char* mode, double ms, const ModelConfig& config, const Batch& batch) {
  std::printf(
      "{\"engine\":\"tinybert-cuda\",\"model\":\"%s\",\"dtype\":\"%s\",\"shape\":\"%s\",\"mode\":"
      "\"%s\",\"ms\":%.4f,"
      "\"seq_per_s\":%.1f,\"tflops\":%.2f}\n",
      label.c_str(), dtype, shape.c_str(), mode, ms,
      1000.0 * static_cast<double>(batch.num_sequences()) / ms,
      forward_flops(config, batch) / ms / 1e9);
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  try {
    if (args.size() == 2 && args[0] == "--make-bert-base") {
      make_bert_base(args[1]);
      return 0;
    }
    std::string model_path, precision_arg = "f16", label;
    int passes = 3, runs = 50;
    for (size_t i = 0; i + 1 < args.size(); i += 2) {
      if (args[i] == "--model")
        model_path = args[i + 1];
      else if (args[i] == "--precision")
        precision_arg = args[i + 1];
      else if (args[i] == "--label")
        label = args[i + 1];
      else if (args[i] == "--passes")
        passes = std::stoi(args[i + 1]);
      else if (args[i] == "--runs")
        runs = std::stoi(args[i + 1]);
      else
        throw Error("unknown option " + args[i]);
    }
    if (model_path.empty())
      throw Error("usage: bench_gpu --model M.tbw --precision f16|bf16|int8 [--label NAME]");
    if (auto reason = cuda_unavailable_reason()) throw Error(*reason);
    CudaOptions options;
    options.precision = parse_precision(precision_arg);
    const char* dtype = precision_name(options.precision);

    const auto t_load = Clock::now();
    const Model model(model_path);
    if (label.empty()) label = model.config().name;
    std::mt19937 rng(7);
    std::vector<std::pair<int64_t, ForwardRequest>> latency;
    for (int64_t length : {16, 32, 64, 128, 256, 512}) {
      ForwardRequest request;
      add_sequence(request.batch, length, model.config().vocab_size, rng);
      request.head = {HeadKind::pooled, Pooling::cls, false};
      latency.emplace_back(length, std::move(request));
    }
    ForwardRequest throughput;  // 128 sequences of 128 tokens, packed (no padding to remove)
    for (int i = 0; i < 128; ++i)
      add_sequence(throughput.batch, 128, model.config().vocab_size, rng);
    throughput.head = {HeadKind::pooled, Pooling::cls, false};

    CudaMemoryReport memory;
    {
      CudaRunner runner(model, options);
      runner.run(latency.front().second);
      std::printf(
          "{\"engine\":\"tinybert-cuda\",\"model\":\"%s\",\"dtype\":\"%s\",\"device\":\"%s\","
          "\"load_and_first_ms\":%.1f}\n",
          label.c_str(), dtype, runner.backend().device_name().c_str(), ms_since(t_load));
      for (auto& [length, request] : latency)
        print_timing(
            label, dtype, std::string("b1 s") + std::to_string(length), "graph",
            time_requests(runner, request, passes, length >= 256 ? std::max(10, runs / 2) : runs),
            model.config(), request.batch);
      print_timing(label, dtype, "b128 s128", "eager",
                   time_requests(runner, throughput, passes, std::max(5, runs / 5)), model.config(),
                   throughput.batch);
      memory = runner.memory_report();
      const auto stats = runner.graph_stats();
      if (!stats.disabled_reason.empty())
        std::fprintf(stderr, "bench_gpu: graphs off: %s\n", stats.disabled_reason.c_str());
    }
    {
      CudaOptions eager_options = options;
      eager_options.cuda_graphs = false;
      CudaRunner runner(model, eager_options);
      for (auto& [length, request] : latency)
        print_timing(
            label, dtype, std::string("b1 s") + std::to_string(length), "eager",
            time_requests(runner, request, passes, length >= 256 ? std::max(10, runs / 2) : runs),
            model.config(), request.batch);
    }
    const double mib = 1048576.0;
    std::printf(
        "{\"engine\":\"tinybert-cuda\",\"model\":\"%s\",\"dtype\":\"%s\",\"weight_mib\":%.1f,"
        "\"activation_mib\":%.1f,"
        "\"scratch_mib\":%.1f,\"device_used_mib\":%.1f,\"context_mib\":%.1f,\"weight_file_mib\":%."
        "1f}\n",
        label.c_str(), dtype, memory.weight_bytes / mib, memory.activation_bytes / mib,
        memory.scratch_bytes / mib, memory.device_used_bytes / mib, memory.context_used_bytes / mib,
        model.file().file_bytes() / mib);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_gpu: error: %s\n", e.what());
    return 1;
  }
}
