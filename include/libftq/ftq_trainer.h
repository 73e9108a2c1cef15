/**
 * @file ftq_trainer.h
 * @brief Training: the whole loop, one optimizer step, or forward/backward
 * plus an optimizer step — three levels a host application may drive.
 *
 * - ftq_trainer_train() runs transformers' Trainer loop: epochs or
 *   `max_steps`, gradient accumulation, clipping, AdamW, the schedule,
 *   logging every `logging_steps`, evaluation every `eval_steps`,
 *   checkpoints every `save_steps` (keeping `save_total_limit`), and stops
 *   cleanly when a callback asks.
 * - ftq_trainer_step() runs one optimizer step (all its micro-batches).
 * - ftq_model_forward_backward() + ftq_optimizer_step() are the parts a
 *   custom loop composes.
 *
 * Options read (group "train" and the groups named at each function):
 * `num_train_epochs`, `max_steps`, `logging_steps`, `eval_steps`,
 * `save_steps`, `save_total_limit`, `output_dir`, `gradient_checkpointing`,
 * `max_consecutive_nonfinite`; from group "data": `per_device_train_batch_size`,
 * `gradient_accumulation_steps`, `seed`; the optimizer's in group "optim".
 */
#ifndef LIBFTQ_FTQ_TRAINER_H
#define LIBFTQ_FTQ_TRAINER_H

#include <stddef.h>
#include <stdint.h>

#include "ftq_comm.h"
#include "ftq_dataset.h"
#include "ftq_export.h"
#include "ftq_lora.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/* ---------------------------------------------------------------------- */
/** @name Forward and backward on one batch                                 */
/** @{ */

/**
 * Runs the model forward and backward on a batch with labels, adding the
 * gradients of the active adapter's parameters (+=) to its gradient
 * tensors (clear them with ftq_lora_zero_grad()). LoRA dropout is on.
 *
 * The loss is normalised as transformers >= 4.46 does under gradient
 * accumulation: the sum of token losses of this batch divided by
 * @p num_items, the labelled tokens of the whole accumulated batch (the sum
 * of ftq_batch_num_loss_tokens() over its micro-batches); the losses of the
 * micro-batches of one step then add up to the step's loss.
 *
 * @param model the model (its active adapter is trained)
 * @param batch a batch from ftq_dataset_get_batch()
 * @param opts options (`gradient_checkpointing`), or NULL
 * @param seed seed of the dropout masks
 * @param micro_step micro-batch counter (< 2^40): keys the dropout masks so
 *        that each micro-batch gets new ones and a rerun gets the same ones
 * @param num_items the normaliser; <= 0 means this batch's own count
 * @param loss receives the normalised loss (may be NULL)
 * @param n_items receives this batch's labelled tokens (may be NULL)
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; FTQ_ERR_UNSUPPORTED when the
 *         device lacks an operation; device or memory errors
 */
FTQ_API ftq_status ftq_model_forward_backward(ftq_model *model, const ftq_batch *batch, const ftq_options *opts,
                                              uint64_t seed, uint64_t micro_step, double num_items, double *loss,
                                              int64_t *n_items);

/**
 * Evaluates the loss of a batch without gradients and without dropout.
 * @param model the model (with its active adapter, if any)
 * @param batch a batch with labels
 * @param loss_sum receives the sum of the token losses
 * @param n_items receives the number of labelled tokens
 * @return FTQ_OK or an error as ftq_model_forward_backward()
 */
FTQ_API ftq_status ftq_model_eval_batch(ftq_model *model, const ftq_batch *batch, double *loss_sum, int64_t *n_items);

/** @} */

/* ---------------------------------------------------------------------- */
/** @name Optimizer                                                         */
/** @{ */

/** AdamW over an adapter's parameters, with clipping and the learning-rate
 *  schedule (opaque). */
typedef struct ftq_optimizer ftq_optimizer;

/**
 * Creates the optimizer for every tensor of an adapter (states zeroed).
 * Options (group "optim", transformers' names): `optim` (adamw_torch,
 * adamw_torch_fused, adamw_32bit, paged_adamw_32bit), `learning_rate`,
 * `adam_beta1`, `adam_beta2`, `adam_epsilon`, `weight_decay` (applied to
 * every LoRA weight), `max_grad_norm`, `lr_scheduler_type`, `warmup_ratio`,
 * `warmup_steps`.
 * @param lora the adapter whose parameters are updated (must outlive the optimizer)
 * @param opts options, or NULL for transformers' defaults
 * @param total_steps optimizer steps the schedule spans (>= 1)
 * @param out receives the optimizer; destroy it with ftq_optimizer_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT; option errors; memory errors
 */
FTQ_API ftq_status ftq_optimizer_create(ftq_lora *lora, const ftq_options *opts, int64_t total_steps,
                                        ftq_optimizer **out);

/** Destroys an optimizer and frees its states.
 *  @param opt the optimizer; NULL is a no-op */
FTQ_API void ftq_optimizer_destroy(ftq_optimizer *opt);

/**
 * One optimizer step from the adapter's accumulated gradients: global
 * gradient norm; if it is not finite the update is skipped (and does not
 * count); else clipping to `max_grad_norm`, AdamW at the scheduled learning
 * rate, schedule advanced. The gradients are left as they are.
 * @param opt the optimizer
 * @param grad_norm receives the norm before clipping (may be NULL)
 * @param learning_rate receives the learning rate the update used (may be NULL)
 * @param skipped receives 1 if the update was skipped for non-finite
 *        gradients, else 0 (may be NULL)
 * @return FTQ_OK or a device error
 */
FTQ_API ftq_status ftq_optimizer_step(ftq_optimizer *opt, double *grad_norm, double *learning_rate, int *skipped);

/** @param opt the optimizer
 *  @return updates done so far (-1 for NULL) */
FTQ_API int64_t ftq_optimizer_steps_done(const ftq_optimizer *opt);

/** @param opt the optimizer
 *  @return the learning rate the next update will use (0 for NULL) */
FTQ_API double ftq_optimizer_learning_rate(const ftq_optimizer *opt);

/** @} */

/* ---------------------------------------------------------------------- */
/** @name Trainer                                                            */
/** @{ */

/** The training loop (opaque). */
typedef struct ftq_trainer ftq_trainer;

/**
 * Receives each log record as one JSON object text, e.g.
 * `{"step": 25, "epoch": 0.1, "loss": 1.2345, "learning_rate": 0.00019757,
 * "grad_norm": 0.87, "tokens_per_second": 3512.4, ...}` (training),
 * `{"step": 50, "eval_loss": ...}` (evaluation), `{"event": "skipped_step",
 * ...}` (a non-finite step) or the final summary (`"train_loss"`).
 * @param user the pointer given with the callback
 * @param record the JSON text (valid during the call)
 * @return 0 to go on, non-zero to stop training after this step
 */
typedef int (*ftq_trainer_log_callback)(void *user, const char *record);

/**
 * Called after every optimizer step.
 * @param user the pointer given with the callback
 * @param step optimizer steps done
 * @param total_steps steps the run will take
 * @param loss this step's loss
 * @param learning_rate the learning rate the step used
 * @param tokens_per_second training throughput since the start
 * @return 0 to go on, non-zero to stop training
 */
typedef int (*ftq_trainer_progress_callback)(void *user, int64_t step, int64_t total_steps, double loss,
                                             double learning_rate, double tokens_per_second);

/**
 * Called at each evaluation (every `eval_steps`) after the eval loss, for a
 * metric of the host's own, typically generation exact-match on held-out
 * prompts (the callback may call ftq_model_generate(); the adapter is
 * active and dropout is off during generation).
 * @param user the pointer given with the callback
 * @param trainer the trainer
 * @param step optimizer steps done
 * @param metric receives the metric, logged as "eval_metric"
 * @return 0 to go on, non-zero to stop training
 */
typedef int (*ftq_trainer_eval_callback)(void *user, ftq_trainer *trainer, int64_t step, double *metric);

/**
 * Creates a trainer for an adapter of a model on a data set's train split
 * (and its eval split when `eval_steps` > 0). Makes the adapter active and
 * creates the optimizer; the run's length is `max_steps` if > 0, else
 * ceil(`num_train_epochs` x updates per epoch), as transformers computes it.
 * @param model the model
 * @param lora the adapter to train (of @p model)
 * @param data the data set
 * @param opts options (groups "train", "data", "optim"), or NULL for defaults
 * @param out receives the trainer; destroy it with ftq_trainer_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT (e.g. an adapter of another model,
 *         an empty train split); option errors; memory errors
 */
FTQ_API ftq_status ftq_trainer_create(ftq_model *model, ftq_lora *lora, ftq_dataset *data, const ftq_options *opts,
                                      ftq_trainer **out);

/** Destroys a trainer (not the model, adapter or data set).
 *  @param trainer the trainer; NULL is a no-op */
FTQ_API void ftq_trainer_destroy(ftq_trainer *trainer);

/**
 * Sets the log callback.
 * @param trainer the trainer
 * @param callback the function (NULL removes it)
 * @param user passed back unchanged
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_trainer_set_log_callback(ftq_trainer *trainer, ftq_trainer_log_callback callback, void *user);

/**
 * Sets the progress callback.
 * @param trainer the trainer
 * @param callback the function (NULL removes it)
 * @param user passed back unchanged
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_trainer_set_progress_callback(ftq_trainer *trainer, ftq_trainer_progress_callback callback,
                                                     void *user);

/**
 * Sets the evaluation callback.
 * @param trainer the trainer
 * @param callback the function (NULL removes it)
 * @param user passed back unchanged
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_trainer_set_eval_callback(ftq_trainer *trainer, ftq_trainer_eval_callback callback, void *user);

/**
 * The memory plan of the run: device bytes per category (weights, adapter,
 * gradients, optimizer states, activations + workspace for the largest
 * batch) as a JSON object, with the device's free memory, before any step.
 * @param trainer the trainer
 * @param json receives the plan (free it with ftq_free()); may be NULL
 * @return FTQ_OK; FTQ_ERR_DEVICE_OUT_OF_MEMORY (out of host memory on a CPU
 *         context) naming the categories when the run cannot fit
 */
FTQ_API ftq_status ftq_trainer_plan(ftq_trainer *trainer, char **json);

/**
 * Trains until the planned number of steps is done, checking the plan
 * first. A run loaded from a checkpoint continues where it stopped.
 * @param trainer the trainer
 * @return FTQ_OK; FTQ_ERR_CANCELLED when a callback stopped it (the state is
 *         consistent: saving and continuing later works); FTQ_ERR_NUMERIC
 *         after `max_consecutive_nonfinite` non-finite steps in a row;
 *         device, memory or I/O errors
 */
FTQ_API ftq_status ftq_trainer_train(ftq_trainer *trainer);

/**
 * Runs one optimizer step: `gradient_accumulation_steps` micro-batches
 * forward/backward, then the optimizer step (skipped, logged and counted if
 * the loss or the gradients are not finite), logging/evaluation/saving when
 * due.
 * @param trainer the trainer
 * @param loss receives the step's loss (may be NULL)
 * @return FTQ_OK; FTQ_ERR_STATE when the run is already complete;
 *         FTQ_ERR_CANCELLED when a callback asked to stop; errors as
 *         ftq_trainer_train()
 */
FTQ_API ftq_status ftq_trainer_step(ftq_trainer *trainer, double *loss);

/**
 * Computes the loss over the whole eval split (token-weighted mean),
 * without dropout.
 * @param trainer the trainer
 * @param eval_loss receives the loss
 * @return FTQ_OK; FTQ_ERR_STATE when the data set has no eval split
 */
FTQ_API ftq_status ftq_trainer_evaluate(ftq_trainer *trainer, double *eval_loss);

/**
 * Writes a training checkpoint to folder @p dir (created; replaced if it
 * exists): the adapter's tensors, optimizer states, step counters, random
 * generator state and data cursor, in a file with CRC32 checksums; the
 * folder is written under a temporary name and renamed into place.
 * @param trainer the trainer
 * @param dir the checkpoint folder
 * @return FTQ_OK or FTQ_ERR_IO naming the path
 */
FTQ_API ftq_status ftq_trainer_save_checkpoint(ftq_trainer *trainer, const char *dir);

/**
 * Restores a checkpoint written by ftq_trainer_save_checkpoint() for the
 * same model shape, adapter configuration and data set; training then
 * continues with exactly the losses an uninterrupted run would have.
 * @param trainer the trainer
 * @param dir the checkpoint folder
 * @return FTQ_OK; FTQ_ERR_IO / FTQ_ERR_FORMAT for a missing or damaged
 *         checkpoint; FTQ_ERR_SHAPE when it belongs to another adapter
 *         configuration or data set
 */
FTQ_API ftq_status ftq_trainer_load_checkpoint(ftq_trainer *trainer, const char *dir);

/** @param trainer the trainer
 *  @return optimizer steps done (-1 for NULL) */
FTQ_API int64_t ftq_trainer_global_step(const ftq_trainer *trainer);

/** @param trainer the trainer
 *  @return the steps the run takes (-1 for NULL) */
FTQ_API int64_t ftq_trainer_total_steps(const ftq_trainer *trainer);

/** @param trainer the trainer
 *  @return steps skipped for non-finite loss or gradients (-1 for NULL) */
FTQ_API int64_t ftq_trainer_nonfinite_steps(const ftq_trainer *trainer);

/**
 * Makes the trainer one rank of a data-parallel run (ftq_comm.h). Call it
 * on every rank after ftq_trainer_create() and before ftq_trainer_plan(),
 * the first step and ftq_trainer_load_checkpoint(); every rank must have
 * the same model, adapter initialisation, data set and options.
 *
 * The global batch is then per-device batch x world size x
 * gradient_accumulation_steps. Each optimizer step takes the next world x
 * accumulation micro-batches of the single-device order (group_by_length
 * included) and gives rank r the r-th run of `accumulation` of them, so the
 * run follows a single-device run with gradient_accumulation_steps = world
 * x accumulation up to the order of floating-point sums: the same batches,
 * the same dropout masks, the same loss normalisation. Steps per epoch and
 * the schedule are recomputed for the global batch.
 *
 * Adapter gradients are all-reduced in buckets while the backward pass is
 * still running (option ddp_overlap); loss, token counts and the gradient
 * norm are reduced, so every rank logs the same values; evaluation shards
 * the eval batches. With zero_stage = 1 each rank keeps the optimizer
 * states of its share of the parameters only and the updated parameters are
 * broadcast from their owners. Checkpoints hold the adapter and trainer
 * state once (written by rank 0) and one optimizer file per rank; resume
 * with the same world size.
 *
 * A failed collective (a peer lost, a timeout) makes the step fail on every
 * surviving rank within comm_timeout_s.
 * @param trainer the trainer
 * @param comm the communicator (it must outlive the trainer); NULL detaches
 *        (only before the first step)
 * @return FTQ_OK; FTQ_ERR_STATE after the first step or a checkpoint load;
 *         FTQ_ERR_INVALID_ARGUMENT for a communicator of another context;
 *         FTQ_ERR_STATE when the ranks' settings differ (data set size,
 *         steps, adapter size), naming the first difference
 */
FTQ_API ftq_status ftq_trainer_set_comm(ftq_trainer *trainer, ftq_comm *comm);

/** @param trainer the trainer
 *  @return the trainer's optimizer (owned by the trainer), NULL for NULL */
FTQ_API ftq_optimizer *ftq_trainer_optimizer(ftq_trainer *trainer);

/** @} */

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_TRAINER_H */
