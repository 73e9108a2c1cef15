// The C++ wrapper at work: quantize, add a LoRA adapter, train a few steps
// on the example data, save a checkpoint and the adapter as a PEFT folder
// (loaded back with identical tensors), merge it (checked against a float64
// W + scaling * B A) and write the merged model, generate with streaming —
// and the error paths (ftq::Error with the library's message; an exception
// thrown inside a callback comes back out of the call that ran it).
//
// usage: ftq-cpp-example [source tree] [steps]   (default: the current folder, 5 steps)
#include "libftq.hpp"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

static const char *CONFIG =
    R"({"hidden_size": 48, "intermediate_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "vocab_size": 1481, "max_position_embeddings": 256, "initializer_range": 0.05,
        "bos_token_id": 1, "eos_token_id": 2})";

int main(int argc, char **argv) {
  const std::string root = argc > 1 ? argv[1] : ".";
  const int steps = argc > 2 ? std::atoi(argv[2]) : 5;
  int failures = 0;
  auto expect = [&](bool ok, const char *what) {
    if (!ok) {
      std::fprintf(stderr, "FAILED: %s\n", what);
      failures++;
    }
  };
  try {
    std::cout << "libftq " << ftq_version_string() << "\n";
    ftq::Options ctx_opts;
    ctx_opts.set("num_threads", 2);
    ftq::Context ctx("cpu", &ctx_opts);
    int log_lines = 0;
    ctx.set_log_callback([&](ftq_log_level level, std::string_view msg) {
      log_lines++;
      if (level <= FTQ_LOG_WARN) std::cout << "  [log] " << msg << "\n";
    });
    std::cout << "device: " << ctx.device_name() << "\n";

    {
      // quantization on its own
      ftq::Options q;
      q.set("bnb_4bit_quant_type", "nf4").set("bnb_4bit_use_double_quant", true);
      ftq::Quantizer quantizer(ctx, &q);
      std::vector<float> w(4096);
      for (size_t i = 0; i < w.size(); i++) w[i] = std::sin(0.37 * static_cast<double>(i)) * 0.05f;
      ftq::QTensor t = quantizer.quantize(w, {64, 64});
      auto stats = quantizer.error_stats(w, {64, 64});
      std::cout << "NF4: 64x64 -> " << t.bytes() << " bytes, SQNR " << stats[FTQ_QSTAT_SQNR_DB] << " dB\n";
      expect(t.dequantize().size() == w.size() && stats[FTQ_QSTAT_SQNR_DB] > 15, "NF4 quantization");

      // a model with NF4 linear layers, an adapter, the data, a few training steps
      ftq::Tokenizer tok(root + "/tests/ref/tok/sp_meta");
      ftq::Options load;
      load.set("load_in_4bit", true).set("bnb_4bit_quant_type", "nf4");
      ftq::Model model = ftq::Model::init_random(ctx, CONFIG, 11, &load);
      ftq::Options lo;
      lo.set("r", 8).set("lora_alpha", 16).set("target_modules", "all-linear");
      ftq::Lora lora(model, &lo, 3);
      std::cout << "adapter: " << lora.num_parameters() << " parameters, first tensor " << lora.tensor_name(0) << "\n";
      ftq::Options data_opts;
      data_opts.set("max_seq_length", 64).set("per_device_train_batch_size", 4);
      ftq::Dataset data(&ctx, tok, root + "/examples/data/catalog_train_text.jsonl", &data_opts);
      ftq::Options train_opts;
      train_opts.set("max_steps", steps).set("learning_rate", 0.01).set("logging_steps", 1);
      // a communicator: one rank here; with N processes, each joins with its
      // rank (or from the launcher's environment) and the trainer all-reduces
      const ftq::CommId id = ftq::Comm::make_id(FTQ_DEVICE_CPU);
      expect(ftq::Comm::id_from_string(ftq::Comm::id_to_string(id)) == id, "communicator id as text and back");
      ftq::Comm comm(ctx, id, 0, 1);
      expect(comm.size() == 1 && comm.allreduce(2.5, FTQ_COMM_MAX) == 2.5, "one-rank communicator");
      ftq::Trainer trainer(model, lora, data, &train_opts);
      trainer.set_comm(&comm);
      double first = 0, last = 0;
      trainer.on_progress([&](int64_t step, int64_t total, double loss, double lr, double) {
        std::printf("  step %lld/%lld  loss %.4f  lr %.2e\n", static_cast<long long>(step),
                    static_cast<long long>(total), loss, lr);
        (step == 1 ? first : last) = loss;
        return false;
      });
      expect(trainer.train() && trainer.global_step() == steps, "training ran its steps");
      expect(last < first, "the loss went down");
      auto out = std::filesystem::temp_directory_path() / ("ftq-cpp-example-" + std::to_string(getpid()));
      std::filesystem::create_directories(out);
      trainer.save_checkpoint((out / "checkpoint").string());
      std::cout << "saved " << (out / "checkpoint").string() << "\n";
      expect(std::filesystem::exists(out / "checkpoint"), "checkpoint written");

      // the adapter as a PEFT folder (PeftModel.from_pretrained loads it), loaded back
      lora.save((out / "adapter").string());
      std::cout << "saved " << (out / "adapter").string() << " (PEFT adapter folder)\n";
      expect(std::filesystem::exists(out / "adapter" / "adapter_model.safetensors") &&
                 std::filesystem::exists(out / "adapter" / "adapter_config.json"),
             "adapter folder written");
      {
        ftq::Lora back = ftq::Lora::load(model, (out / "adapter").string(), nullptr, "reloaded");
        bool same = back.name() == "reloaded" && back.tensor_count() == lora.tensor_count() &&
                    back.scaling() == lora.scaling() && !back.is_active();
        for (size_t i = 0; same && i < lora.tensor_count(); i++)
          same = back.tensor_name(i) == lora.tensor_name(i) && back.get_tensor(i) == lora.get_tensor(i);
        expect(same, "the saved adapter loads back with identical tensors");
      }

      // merging: W' = dequant(W) + scaling * B A, against a float64 recomputation
      {
        const std::string name = "model.layers.1.mlp.down_proj.weight";
        const size_t ia = lora.find_tensor("base_model.model.model.layers.1.mlp.down_proj.lora_A.weight");
        auto shape = model.weight_shape(name);
        auto ra = lora.tensor_shape(ia);
        std::vector<float> base = model.merged_weight(name), merged = model.merged_weight(name, &lora);
        std::vector<float> a = lora.get_tensor(ia), b = lora.get_tensor(ia + 1);
        const size_t rows = static_cast<size_t>(shape[0]), cols = static_cast<size_t>(shape[1]);
        const size_t r = static_cast<size_t>(ra[0]);
        double worst = 0, largest = 0;
        for (size_t i = 0; i < rows; i++)
          for (size_t j = 0; j < cols; j++) {
            double ba = 0;
            for (size_t k = 0; k < r; k++) ba += static_cast<double>(b[i * r + k]) * a[k * cols + j];
            double want = base[i * cols + j] + lora.scaling() * ba;
            worst = std::max(worst, std::fabs(merged[i * cols + j] - want));
            largest = std::max(largest, std::fabs(want));
          }
        std::cout << "merged " << name << " [" << rows << ", " << cols << "]: largest error " << worst << "\n";
        expect(lora.tensor_name(ia + 1).find("lora_B") != std::string::npos && static_cast<size_t>(ra[1]) == cols &&
                   worst <= 1e-6 * largest,
               "merged weight equals dequant(W) + scaling * B A");
        // the merged model as a Hugging Face folder, loaded back: its weight is the merged one
        ftq::Options f32;
        f32.set("torch_dtype", "float32");
        model.save_merged((out / "merged").string(), &lora, &f32);
        ftq::Model reloaded = ftq::Model::load(ctx, (out / "merged").string());
        expect(reloaded.merged_weight(name) == merged, "the merged folder holds the merged weights");
      }
      std::filesystem::remove_all(out);

      // generation, streamed through the callback
      ftq::Options gen;
      gen.set("max_new_tokens", 12);
      std::string streamed;
      auto prompt = tok.encode("Convert this record to catalog form.", FTQ_ENCODE_ADD_SPECIAL);
      ftq::Generation g = model.generate(prompt, &gen, 0, [&](int32_t token, size_t) {
        streamed += tok.piece(token);
        return false;
      });
      std::cout << "generated " << g.tokens.size() << " tokens: " << streamed << "\n";
      expect(!g.tokens.empty() && tok.decode(g.tokens).size() > 0, "generation");

      // an exception inside a callback comes back out of generate()
      bool caught = false;
      try {
        model.generate(prompt, &gen, 0, [](int32_t, size_t index) -> bool {
          if (index == 2) throw std::runtime_error("stop from the callback");
          return false;
        });
      } catch (const std::runtime_error &e) {
        caught = std::string(e.what()) == "stop from the callback";
      }
      expect(caught, "callback exception rethrown");
    }
    expect(ctx.memory() == 0, "everything released");

    // errors carry the library's message
    try {
      ftq::Model m = ftq::Model::init_random(ctx, CONFIG, 1);
      ftq::Lora::load(m, "/nonexistent/adapter");
      expect(false, "missing adapter folder accepted");
    } catch (const ftq::Error &e) {
      std::cout << "error (as expected): " << e.what() << " [" << ftq_status_string(e.status()) << "]\n";
      expect(e.status() == FTQ_ERR_NOT_FOUND && std::string(e.what()).find("/nonexistent/adapter") != std::string::npos,
             "missing adapter folder: not found, naming it");
    }
    try {
      ftq::Options bad;
      bad.set("bnb_4bit_quant_type", "nf5");
      expect(false, "bad option accepted");
    } catch (const ftq::Error &e) {
      std::cout << "error (as expected): " << e.what() << " [" << ftq_status_string(e.status()) << "]\n";
      expect(e.status() == FTQ_ERR_OPTION_RANGE, "option range error");
    }
    expect(log_lines > 0, "log callback called");
  } catch (const std::exception &e) {
    std::fprintf(stderr, "unexpected exception: %s\n", e.what());
    return 1;
  }
  std::cout << (failures ? "FAILED" : "OK") << "\n";
  return failures ? 1 : 0;
}
