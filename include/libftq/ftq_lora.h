/**
 * @file ftq_lora.h
 * @brief LoRA adapters on a model: creation, activation, parameters and gradients.
 *
 * An ::ftq_lora adds to chosen linear projections of every decoder layer a
 * low-rank update, exactly as PEFT's LoRA does:
 * `y = base(x) + scaling * B(A(dropout(x)))`, with A `[r, in_features]` and
 * B `[out_features, r]` held in fp32 (master parameters) together with their
 * fp32 gradients, and `scaling = lora_alpha / r` (or `lora_alpha / sqrt(r)`
 * with `use_rslora`). The base weights stay frozen.
 *
 * Options read (group "lora", PEFT's LoraConfig names): `r`, `lora_alpha`,
 * `lora_dropout`, `target_modules`, `use_rslora`, `init_lora_weights`,
 * `bias`; and `qat` (with, for an unquantized base, the quantization
 * options `bnb_4bit_quant_type`, `quant_blocksize`,
 * `bnb_4bit_use_double_quant`, `load_in_8bit`).
 *
 * Several adapters may exist for one model; at most one is active, and the
 * model's forward pass, training and generation use the active one.
 * Adapters must be destroyed before their model.
 *
 * With the option `qat` (quantization-aware training) an adapter makes
 * every adapted projection run fake_quant(dequant(W) + scaling * B A) with
 * the base weight's quantization, so the model computes exactly what the
 * merged and re-quantized model will; gradients pass straight through the
 * fake quantization to A and B, and LoRA dropout is not applied
 * (docs/adapters.md). CPU contexts only so far.
 *
 * Adapters are saved and loaded in PEFT's format (ftq_lora_save(),
 * ftq_lora_load()) and merged into the base weights, optionally
 * re-quantized (ftq_model_save_merged()).
 *
 * Tensors are named as PEFT saves them, e.g.
 * `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`, and
 * indexed in PEFT's parameter order (layer by layer; q, k, v, o, gate, up,
 * down; A before B).
 */
#ifndef LIBFTQ_FTQ_LORA_H
#define LIBFTQ_FTQ_LORA_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A model: base weights and configuration (opaque; see ftq_model.h). */
typedef struct ftq_model ftq_model;

/** A LoRA adapter attached to a model (opaque). */
typedef struct ftq_lora ftq_lora;

/**
 * Creates an adapter on @p model and initialises it as PEFT does for
 * `init_lora_weights`: "true" (default) draws A from kaiming-uniform
 * (a = sqrt(5), i.e. U(-1/sqrt(in), 1/sqrt(in))) and sets B to zero, so the
 * adapter starts as a no-op; "gaussian" draws A from N(0, (1/r)^2) and sets B
 * to zero; "false" keeps PEFT's nn.Linear defaults: A as for "true" and B
 * from U(-1/sqrt(r), 1/sqrt(r)) (not a no-op; for tests). Random numbers
 * come from the counter-based generator keyed by @p seed, so the same seed
 * gives the same adapter on every device. The new adapter is not active.
 *
 * @param model the model the adapter belongs to
 * @param adapter_name PEFT's adapter name; NULL means "default"
 * @param opts options (group "lora"), or NULL for PEFT's defaults
 *        (r 8, lora_alpha 8, target_modules q_proj,v_proj)
 * @param seed seed of the initial values
 * @param out receives the adapter; destroy it with ftq_lora_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; an option error naming the
 *         option; FTQ_ERR_UNSUPPORTED for settings libftq does not implement
 *         (bias other than "none"; `qat` on a device other than the CPU);
 *         FTQ_ERR_OUT_OF_MEMORY /
 *         FTQ_ERR_DEVICE_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_lora_create(ftq_model *model, const char *adapter_name, const ftq_options *opts,
                                   uint64_t seed, ftq_lora **out);

/** Destroys an adapter (deactivating it first if it is active).
 *  @param lora the adapter; NULL is a no-op */
FTQ_API void ftq_lora_destroy(ftq_lora *lora);

/**
 * Makes the adapter the model's active one (deactivating any other), or
 * deactivates it, so that the model runs on its base weights alone.
 * @param lora the adapter
 * @param active non-zero to activate, 0 to deactivate
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_lora_set_active(ftq_lora *lora, int active);

/** @param lora the adapter
 *  @return 1 if it is its model's active adapter, 0 if not or NULL */
FTQ_API int ftq_lora_is_active(const ftq_lora *lora);

/** @param lora the adapter
 *  @return its name (valid while it lives), or "" for NULL */
FTQ_API const char *ftq_lora_name(const ftq_lora *lora);

/**
 * Counts the adapter's trainable parameters (elements of every A and B).
 * @param lora the adapter
 * @param count receives the number
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_lora_num_parameters(const ftq_lora *lora, int64_t *count);

/**
 * Reports the factor the low-rank update is multiplied by.
 * @param lora the adapter
 * @param scaling receives lora_alpha / r (or lora_alpha / sqrt(r) with use_rslora)
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_lora_scaling(const ftq_lora *lora, double *scaling);

/** @param lora the adapter
 *  @return the number of its tensors (two per adapted projection), 0 for NULL */
FTQ_API size_t ftq_lora_tensor_count(const ftq_lora *lora);

/**
 * Describes tensor @p index.
 * @param lora the adapter
 * @param index 0 .. ftq_lora_tensor_count() - 1
 * @param name receives the PEFT name, NUL-terminated (may be NULL)
 * @param name_len size of @p name in bytes (128 always suffices)
 * @param shape receives the two dimensions, outermost first (may be NULL)
 * @return FTQ_OK; FTQ_ERR_NOT_FOUND for a bad index; FTQ_ERR_INVALID_ARGUMENT
 *         when @p name_len is too small for the name
 */
FTQ_API ftq_status ftq_lora_tensor_info(const ftq_lora *lora, size_t index, char *name, size_t name_len,
                                        int64_t *shape);

/**
 * Finds a tensor by PEFT name. The adapter name may be present or not
 * (`...q_proj.lora_A.default.weight` and `...q_proj.lora_A.weight` both
 * match).
 * @param lora the adapter
 * @param name the tensor's name
 * @param index receives its index
 * @return FTQ_OK or FTQ_ERR_NOT_FOUND naming the tensor
 */
FTQ_API ftq_status ftq_lora_find_tensor(const ftq_lora *lora, const char *name, size_t *index);

/**
 * Copies a tensor's values (fp32, row-major) to host memory.
 * @param lora the adapter
 * @param index the tensor
 * @param dst receives @p count floats
 * @param count must equal the tensor's number of elements
 * @return FTQ_OK, FTQ_ERR_NOT_FOUND or FTQ_ERR_SHAPE
 */
FTQ_API ftq_status ftq_lora_get_tensor(const ftq_lora *lora, size_t index, float *dst, size_t count);

/**
 * Overwrites a tensor's values from host memory (fp32, row-major).
 * @param lora the adapter
 * @param index the tensor
 * @param src @p count floats
 * @param count must equal the tensor's number of elements
 * @return FTQ_OK, FTQ_ERR_NOT_FOUND or FTQ_ERR_SHAPE
 */
FTQ_API ftq_status ftq_lora_set_tensor(ftq_lora *lora, size_t index, const float *src, size_t count);

/**
 * Copies a tensor's accumulated gradient (fp32) to host memory.
 * @param lora the adapter
 * @param index the tensor
 * @param dst receives @p count floats
 * @param count must equal the tensor's number of elements
 * @return FTQ_OK, FTQ_ERR_NOT_FOUND or FTQ_ERR_SHAPE
 */
FTQ_API ftq_status ftq_lora_get_grad(const ftq_lora *lora, size_t index, float *dst, size_t count);

/**
 * Sets every gradient of the adapter to zero (backward passes add to them).
 * @param lora the adapter
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_lora_zero_grad(ftq_lora *lora);

/** @name PEFT adapter folders
 *  What `PeftModel.save_pretrained()` writes and `PeftModel.from_pretrained()`
 *  reads (docs/adapters.md).
 *  @{ */

/**
 * Saves the adapter as PEFT does, so that `PeftModel.from_pretrained(model,
 * dir)` loads it:
 * - `dir/adapter_model.safetensors`: every A and B in fp32 under PEFT's names
 *   without the adapter name (e.g.
 *   `base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight`), laid
 *   out byte for byte as the `safetensors` package writes them;
 * - `dir/adapter_config.json`: the keys peft 0.21 writes, sorted, two-space
 *   indent: r, lora_alpha, lora_dropout, target_modules, use_rslora,
 *   init_lora_weights, bias "none", peft_type "LORA", task_type
 *   "CAUSAL_LM", inference_mode true, base_model_name_or_path, and the
 *   defaults of the LoRA variants libftq does not implement.
 *
 * The folder is created if missing (its parent must exist); each file is
 * written atomically (temporary file, fsync, rename). A QAT adapter (option
 * `qat`) is saved as a plain LoRA adapter: its update belongs in a merged and
 * re-quantized model (ftq_model_save_merged()).
 *
 * Options read (group "lora"): `base_model_name_or_path` (empty: the path the
 * model was loaded from, or null for a model made in memory).
 *
 * @param lora the adapter
 * @param dir the output folder
 * @param opts options, or NULL
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_IO naming the file;
 *         FTQ_ERR_OUT_OF_MEMORY
 */
FTQ_API ftq_status ftq_lora_save(const ftq_lora *lora, const char *dir, const ftq_options *opts);

/**
 * Loads a PEFT LoRA adapter folder (`adapter_config.json` and
 * `adapter_model.safetensors`, as peft 0.4 to 0.21 write them) onto @p model
 * as a new, inactive adapter.
 *
 * The settings (r, lora_alpha, lora_dropout, use_rslora, init_lora_weights,
 * bias) come from adapter_config.json; the adapted projections come from the
 * tensors present, which must cover the same projections in every layer (so
 * `target_modules` may be a list, a pattern or "all-linear"). Every tensor's
 * shape is checked against the model and the rank; F16 / BF16 tensors are
 * widened to fp32. Settings that change the adapter in ways libftq does not
 * implement (use_dora, rank_pattern / alpha_pattern, modules_to_save,
 * fan_in_fan_out, lora_bias, ...) are refused, naming the key.
 *
 * @param model the model the adapter was trained on
 * @param dir the adapter folder
 * @param adapter_name the new adapter's name; NULL means "default"
 * @param opts options that do not come from the file (e.g. `qat` and the
 *        quantization settings QAT uses), or NULL
 * @param out receives the adapter; destroy it with ftq_lora_destroy()
 * @return FTQ_OK; FTQ_ERR_NOT_FOUND for a missing folder or file;
 *         FTQ_ERR_FORMAT for malformed files; FTQ_ERR_SHAPE when a tensor does
 *         not fit the model; FTQ_ERR_UNSUPPORTED for a setting or tensor
 *         libftq does not implement (and for pickle `adapter_model.bin`
 *         files); option errors naming the setting; memory errors
 */
FTQ_API ftq_status ftq_lora_load(ftq_model *model, const char *dir, const char *adapter_name,
                                 const ftq_options *opts, ftq_lora **out);

/** @} */

/** @name Merging
 *  W' = dequant(W) + scaling * B A for every adapted projection, as PEFT's
 *  `merge_and_unload()` computes it (docs/adapters.md).
 *  @{ */

/**
 * Computes one merged linear weight, W' = dequant(W) + scaling * B A in
 * fp32 (just dequant(W) when @p lora is NULL or does not adapt this
 * projection), e.g. to inspect or re-quantize a model's weights.
 *
 * @param model the model
 * @param lora an adapter of @p model, or NULL for the base weight alone
 * @param name the weight's Hugging Face name, e.g.
 *        "model.layers.0.self_attn.q_proj.weight" (linear projections only)
 * @param dst receives the [out_features, in_features] values row-major (host
 *        memory), or NULL to ask only for the shape
 * @param count elements @p dst holds; must equal out_features * in_features
 *        when @p dst is given
 * @param shape receives {out_features, in_features} (may be NULL)
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT (also for an adapter of another
 *         model); FTQ_ERR_NOT_FOUND for a name that is not a linear
 *         projection of the model; FTQ_ERR_SHAPE for a wrong @p count;
 *         memory errors
 */
FTQ_API ftq_status ftq_model_merged_weight(const ftq_model *model, const ftq_lora *lora, const char *name,
                                           float *dst, size_t count, int64_t *shape);

/**
 * Writes the model, with @p lora merged into its linear weights, as a
 * Hugging Face model folder that transformers' `from_pretrained()` loads:
 * `config.json`, `model.safetensors` (or shards of at most `max_shard_size`
 * with `model.safetensors.index.json`), and, when the model was loaded from a
 * Hugging Face folder, its tokenizer and generation files copied
 * (tokenizer.json, tokenizer_config.json, special_tokens_map.json,
 * tokenizer.model, vocab.json, merges.txt, added_tokens.json,
 * chat_template.jinja, generation_config.json). A GGUF base gives
 * config.json and the weights only.
 *
 * Weights are written in `torch_dtype` ("auto": the checkpoint's precision).
 * With `load_in_4bit` the merged linear weights are quantized again
 * (`bnb_4bit_quant_type`, `quant_blocksize`, `bnb_4bit_use_double_quant`)
 * and written in bitsandbytes' 4-bit checkpoint layout with a
 * `quantization_config`, so transformers loads the folder as a
 * bitsandbytes model; a projection the adapter does not touch keeps its
 * codes when the base already has that quantization. The model stays as it
 * is; host memory holds one weight at a time (all re-quantized weights when
 * quantizing).
 *
 * Options read: `torch_dtype`, `load_in_4bit` / `load_in_8bit` (8-bit
 * output is not supported), the `bnb_4bit_*` and `quant_blocksize`
 * options, `max_shard_size`.
 *
 * @param model the model
 * @param lora an adapter of @p model, or NULL to write the base model
 * @param dir the output folder (created if missing; its parent must exist)
 * @param opts options, or NULL
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_UNSUPPORTED for 8-bit
 *         output; option errors naming the option; FTQ_ERR_IO naming the
 *         file; memory errors
 */
FTQ_API ftq_status ftq_model_save_merged(ftq_model *model, const ftq_lora *lora, const char *dir,
                                         const ftq_options *opts);

/** @} */

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_LORA_H */
