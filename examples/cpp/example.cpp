// The C++ wrapper at work: quantize, add a LoRA adapter, train a few steps
// on the example data, save a checkpoint, generate with streaming — and the
// error paths (ftq::Error with the library's message; an exception thrown
// inside a callback comes back out of the call that ran it).
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
      ftq::Trainer trainer(model, lora, data, &train_opts);
      double first = 0, last = 0;
      trainer.on_progress([&](int64_t step, int64_t total, double loss, double lr, double) {
        std::printf("  step %lld/%lld  loss %.4f  lr %.2e\n", static_cast<long long>(step),
                    static_cast<long long>(total), loss, lr);
        (step == 1 ? first : last) = loss;
        return false;
      });
      expect(trainer.train() && trainer.global_step() == steps, "training ran its steps");
      expect(last < first, "the loss went down");
      auto ckpt = std::filesystem::temp_directory_path() / ("ftq-cpp-example-" + std::to_string(getpid()));
      trainer.save_checkpoint(ckpt.string());
      std::cout << "saved " << ckpt.string() << "\n";
      expect(std::filesystem::exists(ckpt), "checkpoint written");
      std::filesystem::remove_all(ckpt);

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
