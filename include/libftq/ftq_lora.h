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
 * `bias`.
 *
 * Several adapters may exist for one model; at most one is active, and the
 * model's forward pass, training and generation use the active one.
 * Adapters must be destroyed before their model.
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
 *         (bias other than "none"); FTQ_ERR_OUT_OF_MEMORY /
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

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_LORA_H */
