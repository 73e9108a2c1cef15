/* ftq-merge: a base model plus a PEFT LoRA adapter into one Hugging Face
 * model folder, W' = dequant(W) + scaling * B A (PEFT's merge_and_unload).
 *
 *   ftq-merge --model BASE_DIR --adapter ADAPTER_DIR --output MERGED_DIR
 *   ftq-merge --model BASE_DIR --adapter ADAPTER_DIR --output MERGED_NF4 \
 *             --load_in_4bit --bnb_4bit_quant_type nf4 --bnb_4bit_use_double_quant
 *   ftq-merge --model model.gguf --output HF_DIR          (no adapter: a conversion)
 *
 * The base is loaded with the given options; with --load_in_4bit it is
 * quantized at load (as it was for QLoRA training) and the merged weights
 * are quantized again with the same settings and written in bitsandbytes'
 * 4-bit layout (transformers loads the folder as a bitsandbytes model), as
 * PEFT's merge on a 4-bit model does; --dequantize writes the merged
 * weights unquantized instead. --torch_dtype sets the precision of the
 * written weights. Tokenizer files are copied from a Hugging Face base.
 * Public API only. */
#include <libftq/ftq.h>
#include <stdio.h>
#include <string.h>

#include "common/cli.h"
#include "common/setup.h"

int main(int argc, char **argv) {
  const char *model_path = NULL, *adapter = NULL, *output = NULL, *dequantize = NULL, *device = "cpu";
  const ftq_cli_flag flags[] = {
      {"model", "PATH", "base model: a Hugging Face folder or a GGUF file (required)", &model_path},
      {"adapter", "DIR", "PEFT LoRA adapter folder to merge (none: write the base as it is loaded)", &adapter},
      {"output", "DIR", "folder to write the merged model to (required; created if missing)", &output},
      {"dequantize", NULL, "with --load_in_4bit: write the merged weights unquantized", &dequantize},
      {"device", "DEV", "cpu, cuda or cuda:N", &device},
  };
  static const char *const groups[] = {"context", "model", "quant", "merge", NULL};
  const ftq_cli cli = {"ftq-merge", "Merges a PEFT LoRA adapter into its base model and writes a Hugging Face folder.",
                       groups, flags, sizeof flags / sizeof flags[0]};
  ftq_options *opts, *save_opts = NULL;
  if (ftq_options_create(&opts) != FTQ_OK) return 1;
  int rc = ftq_cli_parse(&cli, argc, argv, opts);
  if (rc) {
    ftq_options_destroy(opts);
    return rc == 1 ? 0 : 2;
  }
  if (!model_path || !output) {
    fprintf(stderr, "ftq-merge: give --model and --output (see --help)\n");
    ftq_options_destroy(opts);
    return 2;
  }
  ftq_context *ctx = NULL;
  ftq_model *model = NULL;
  ftq_lora *lora = NULL;
  ftq_status st = ftq_options_copy(opts, &save_opts);
  if (st == FTQ_OK && dequantize) st = ftq_options_unset(save_opts, "load_in_4bit");
  if (st == FTQ_OK) st = ftq_example_open(device, opts, FTQ_LOG_INFO, model_path, opts, adapter, &ctx, &model, &lora);
  if (st == FTQ_OK) st = ftq_model_save_merged(model, lora, output, save_opts);
  if (st == FTQ_OK) {
    printf("%s%s%s written to %s\n", model_path, adapter ? " + " : "", adapter ? adapter : "", output);
  } else {
    fprintf(stderr, "ftq-merge: %s\n", ftq_last_error());
    rc = 1;
  }
  ftq_lora_destroy(lora);
  ftq_model_destroy(model);
  ftq_context_destroy(ctx);
  ftq_options_destroy(save_opts);
  ftq_options_destroy(opts);
  return rc;
}
