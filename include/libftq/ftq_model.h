/**
 * @file ftq_model.h
 * @brief The model: a Llama-family architecture and its frozen base weights.
 *
 * An ::ftq_model holds a configuration (the fields of Hugging Face's
 * config.json) and the base weights on a context's device: token embedding,
 * per layer the two RMSNorm weights and the seven linear projections
 * (q/k/v/o, gate/up/down; optionally attention biases), the final norm and
 * the LM head (absent when tied to the embedding).
 *
 * Models come from files (ftq_model_load(): a Hugging Face folder with
 * config.json and safetensors, or a GGUF file) or from a configuration alone
 * with random weights (ftq_model_init_random(), for tests and benchmarks of
 * any size without a download). Architectures accepted: LlamaForCausalLM,
 * MistralForCausalLM and Qwen2ForCausalLM from config.json; "llama" and
 * "qwen2" GGUF files. docs/formats.md describes the files, the checks made on
 * them and the mapping of GGUF tensors to the Hugging Face layout.
 *
 * Options read (group "model"): `torch_dtype` ("auto", "float32", "float16",
 * "bfloat16"): the precision weights are kept in. "auto" keeps each tensor's
 * stored precision (quantized GGUF tensors become float32); for
 * ftq_model_init_random() it takes config.json's torch_dtype. (Quantizing
 * the base linear weights as they load comes with the quantizer; until then
 * they keep the precision above.)
 */
#ifndef LIBFTQ_FTQ_MODEL_H
#define LIBFTQ_FTQ_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_context.h"
#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A model: configuration and base weights on one context (opaque). */
typedef struct ftq_model ftq_model;

/** Groups of parameters for counts and sizes. Values are pinned. */
typedef enum ftq_param_kind {
  FTQ_PARAMS_ALL = 0,       /**< Every parameter (a tied LM head counted once, as transformers' num_parameters()). */
  FTQ_PARAMS_LINEAR = 1,    /**< The seven projections of every layer (the weights QLoRA quantizes). */
  FTQ_PARAMS_EMBEDDING = 2, /**< The token embedding. */
  FTQ_PARAMS_LM_HEAD = 3,   /**< The LM head (0 when tied to the embedding). */
  FTQ_PARAMS_NORM = 4,      /**< RMSNorm weights (two per layer and the final norm). */
  FTQ_PARAMS_BIAS = 5       /**< Attention biases (0 unless the architecture has them). */
} ftq_param_kind;

/**
 * Loads a model from files, streaming tensor by tensor from a memory map so
 * that host memory never holds the whole unquantized model. Every file is
 * checked before use; what was loaded (architecture, shapes, dtypes, bytes)
 * is logged through the context's log callback.
 *
 * @param ctx the context whose device receives the weights
 * @param path a Hugging Face model folder (config.json plus model.safetensors
 *        or a sharded model.safetensors.index.json), or a .gguf file
 * @param opts options (group "model", and the quantization options), or NULL
 * @param out receives the model; destroy it with ftq_model_destroy()
 * @return FTQ_OK; FTQ_ERR_IO if a file cannot be read; FTQ_ERR_FORMAT for a
 *         malformed file; FTQ_ERR_UNSUPPORTED for an architecture, dtype,
 *         GGML type or config value libftq does not support (the message
 *         names the field and value); FTQ_ERR_SHAPE when a tensor's shape
 *         disagrees with the configuration; FTQ_ERR_NOT_FOUND for a missing
 *         file or tensor; FTQ_ERR_DEVICE_OUT_OF_MEMORY / FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_model_load(ftq_context *ctx, const char *path, const ftq_options *opts, ftq_model **out);

/**
 * Builds a model with random weights from a configuration alone, in any
 * shape (e.g. Llama-2-7B or 70B for benchmarks). Weights are initialised as
 * transformers' _init_weights does: linear and embedding weights from a
 * normal distribution with std = initializer_range (default 0.02), the
 * embedding row of pad_token_id zeroed, norms one, biases zero. The numbers
 * come from libftq's Philox generator and depend only on @p seed (not on the
 * device or the thread count).
 *
 * @param ctx the context whose device receives the weights
 * @param config_json a config.json text, e.g. `{"hidden_size": 4096,
 *        "intermediate_size": 11008, "num_hidden_layers": 32,
 *        "num_attention_heads": 32, "vocab_size": 32000}`; without
 *        "architectures" or "model_type" it is taken as LlamaForCausalLM
 * @param seed the random seed
 * @param opts options as for ftq_model_load(), or NULL
 * @param out receives the model; destroy it with ftq_model_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT for NULL arguments;
 *         FTQ_ERR_FORMAT / FTQ_ERR_UNSUPPORTED for a bad configuration (the
 *         message names the field); FTQ_ERR_DEVICE_OUT_OF_MEMORY /
 *         FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_model_init_random(ftq_context *ctx, const char *config_json, uint64_t seed,
                                         const ftq_options *opts, ftq_model **out);

/** Destroys a model and frees its weights. Destroy models before their context.
 *  @param model the model; NULL is a no-op */
FTQ_API void ftq_model_destroy(ftq_model *model);

/**
 * Reads an integer configuration value by its config.json name:
 * hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 * num_key_value_heads, head_dim, vocab_size, max_position_embeddings,
 * tie_word_embeddings (0/1), attention_bias (0/1), bos_token_id,
 * eos_token_id (the first one), pad_token_id (-1 when absent),
 * sliding_window (0 when none), rope_scaling.original_max_position_embeddings.
 * @param model the model
 * @param name the field name
 * @param value receives the value
 * @return FTQ_OK; FTQ_ERR_NOT_FOUND for an unknown name;
 *         FTQ_ERR_INVALID_ARGUMENT for NULL arguments or a name that is not
 *         an integer field
 */
FTQ_API ftq_status ftq_model_config_int(const ftq_model *model, const char *name, int64_t *value);

/**
 * Reads a floating-point configuration value by its config.json name:
 * rms_norm_eps, rope_theta, initializer_range, rope_scaling.factor,
 * rope_scaling.low_freq_factor, rope_scaling.high_freq_factor.
 * @param model the model
 * @param name the field name
 * @param value receives the value
 * @return as ftq_model_config_int()
 */
FTQ_API ftq_status ftq_model_config_float(const ftq_model *model, const char *name, double *value);

/**
 * Reads a text configuration value: architectures (the one architecture,
 * e.g. "LlamaForCausalLM"), model_type ("llama", "mistral", "qwen2"),
 * torch_dtype ("float32", "float16", "bfloat16": the precision of the
 * checkpoint), rope_scaling.rope_type ("default", "linear", "llama3").
 * @param model the model
 * @param name the field name
 * @param value receives the text, valid while the model lives
 * @return as ftq_model_config_int()
 */
FTQ_API ftq_status ftq_model_config_string(const ftq_model *model, const char *name, const char **value);

/**
 * Reports the end-of-sequence token ids (config.json's eos_token_id may be a
 * list, e.g. Llama 3).
 * @param model the model
 * @param ids receives up to @p capacity ids (may be NULL when @p capacity is 0)
 * @param capacity the size of @p ids
 * @param count receives the number of ids the model has
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_model_eos_token_ids(const ftq_model *model, int64_t *ids, size_t capacity, size_t *count);

/**
 * Writes the configuration as a config.json text (keys sorted, two-space
 * indent), which ftq_model_init_random() accepts.
 * @param model the model
 * @param out receives a NUL-terminated text; free it with ftq_free()
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_model_config_json(const ftq_model *model, char **out);

/**
 * Counts parameters (elements, whatever their precision or quantization).
 * @param model the model
 * @param kind which parameters, an ::ftq_param_kind
 * @param count receives the number
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_model_parameter_count(const ftq_model *model, ftq_param_kind kind, int64_t *count);

/**
 * Reports the device bytes the model's weights of one kind occupy
 * (quantized weights count with their scales).
 * @param model the model
 * @param kind which parameters, an ::ftq_param_kind
 * @param bytes receives the size
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_model_parameter_bytes(const ftq_model *model, ftq_param_kind kind, size_t *bytes);

/**
 * Reports the device bytes the model holds in one memory category (its
 * weights are accounted as FTQ_MEM_WEIGHTS; ftq_context_memory() gives the
 * context's totals over every object).
 * @param model the model
 * @param category an ::ftq_memory_category; FTQ_MEM_ALL for the total
 * @param bytes receives the size
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_model_memory(const ftq_model *model, ftq_memory_category category, size_t *bytes);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_MODEL_H */
