/* The quantizer's options (group "quant", named as transformers'
 * BitsAndBytesConfig names them where it has them) and the settings they
 * make for the stand-alone quantizer and for the model loader. */
#include <string.h>

#include "core/error.h"
#include "core/options.h"
#include "quant/quant_internal.h"

static const ftq_option_def quant_option_defs[] = {
    {"load_in_4bit", "quant", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "quantize the base model's linear weights to 4 bits when loading it (bnb_4bit_quant_type)"},
    {"load_in_8bit", "quant", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "quantize the base model's linear weights to INT8 when loading it (int8_*); makes ftq_quantizer INT8"},
    {"bnb_4bit_quant_type", "quant", FTQ_OPTION_STRING, "fp4", 0, 0, "nf4|fp4", 0,
     "4-bit data type: nf4 (NormalFloat, what QLoRA uses) or fp4; fp4 is bitsandbytes' default"},
    {"bnb_4bit_use_double_quant", "quant", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "quantize the 4-bit blocks' absmax again (8-bit, blocks of 256, mean subtracted): ~0.37 bit/parameter less"},
    {"bnb_4bit_compute_dtype", "quant", FTQ_OPTION_STRING, "float32", 0, 0, "float32|float16|bfloat16", 0,
     "dtype of the matrix products with dequantized 4-bit weights"},
    {"quant_blocksize", "quant", FTQ_OPTION_INT, "64", 32, 4096, NULL, 0,
     "elements per 4-bit block sharing one absmax; a power of two (bitsandbytes' blocksize)"},
    {"int8_scheme", "quant", FTQ_OPTION_STRING, "symmetric", 0, 0, "symmetric|asymmetric", 0,
     "INT8 codes: symmetric int8 in [-127, 127] (scale absmax/127) or asymmetric uint8 with a zero point"},
    {"int8_granularity", "quant", FTQ_OPTION_STRING, "channel", 0, 0, "tensor|channel|group", 0,
     "INT8 scales per tensor, per output channel (row), or per group of int8_group_size elements of a row"},
    {"int8_group_size", "quant", FTQ_OPTION_INT, "128", 1, 1073741824, NULL, 0,
     "elements per INT8 scale with int8_granularity \"group\""},
    {"observer", "quant", FTQ_OPTION_STRING, "minmax", 0, 0, "minmax|percentile", 0,
     "how calibration turns observed activations into an asymmetric INT8 range"},
    {"observer_percentile", "quant", FTQ_OPTION_FLOAT, "99.99", 50, 100, NULL, 0,
     "percentile observer: the range runs from the (100-p)-th to the p-th percentile of what was observed"},
};
FTQ_OPTION_TABLE(quant, quant_option_defs);

static ftq_status read_4bit(const ftq_options *opts, ftq_qconfig *cfg) {
  const char *type;
  int64_t bs;
  int dq;
  FTQ_TRY(ftq_options_get_string(opts, "bnb_4bit_quant_type", &type));
  FTQ_TRY(ftq_options_get_int(opts, "quant_blocksize", &bs));
  FTQ_TRY(ftq_options_get_bool(opts, "bnb_4bit_use_double_quant", &dq));
  cfg->scheme = strcmp(type, "nf4") == 0 ? FTQ_QSCHEME_NF4 : FTQ_QSCHEME_FP4;
  cfg->blocksize = bs;
  cfg->nested = dq;
  if (bs & (bs - 1))
    return ftq_error(FTQ_ERR_OPTION_RANGE, "option quant_blocksize: %lld is not a power of two (32, 64, ..., 4096)",
                     (long long)bs);
  return FTQ_OK;
}

static ftq_status read_8bit(const ftq_options *opts, ftq_qconfig *cfg) {
  const char *scheme, *gran;
  FTQ_TRY(ftq_options_get_string(opts, "int8_scheme", &scheme));
  FTQ_TRY(ftq_options_get_string(opts, "int8_granularity", &gran));
  FTQ_TRY(ftq_options_get_int(opts, "int8_group_size", &cfg->group_size));
  cfg->scheme = strcmp(scheme, "asymmetric") == 0 ? FTQ_QSCHEME_INT8_ASYM : FTQ_QSCHEME_INT8_SYM;
  cfg->granularity = strcmp(gran, "tensor") == 0    ? FTQ_QGRAN_TENSOR
                     : strcmp(gran, "group") == 0   ? FTQ_QGRAN_GROUP
                                                    : FTQ_QGRAN_CHANNEL;
  return FTQ_OK;
}

static ftq_status read_both(const ftq_options *opts, int *in4, int *in8) {
  FTQ_TRY(ftq_options_get_bool(opts, "load_in_4bit", in4));
  FTQ_TRY(ftq_options_get_bool(opts, "load_in_8bit", in8));
  if (*in4 && *in8)
    return ftq_error(FTQ_ERR_OPTION_RANGE, "options load_in_4bit and load_in_8bit are both true; set one of them");
  return FTQ_OK;
}

ftq_status ftq_qconfig_from_options(const ftq_options *opts, ftq_qconfig *cfg) {
  memset(cfg, 0, sizeof *cfg);
  int in4, in8;
  FTQ_TRY(read_both(opts, &in4, &in8));
  return in8 ? read_8bit(opts, cfg) : read_4bit(opts, cfg);
}

ftq_status ftq_qconfig_for_load(const ftq_options *opts, ftq_qconfig *cfg) {
  memset(cfg, 0, sizeof *cfg);
  int in4, in8;
  FTQ_TRY(read_both(opts, &in4, &in8));
  if (in4) return read_4bit(opts, cfg);
  if (in8) return read_8bit(opts, cfg);
  cfg->scheme = FTQ_QSCHEME_NONE;
  return FTQ_OK;
}
