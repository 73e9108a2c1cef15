/**
 * @file ftq_context.h
 * @brief The compute context: one device, its memory and its log.
 *
 * An ::ftq_context owns a compute device (the CPU, or CUDA device N) and
 * everything tied to it: streams, the cuBLASLt handle and workspace, memory
 * accounting, the CPU thread pool and the log callback. Every other libftq
 * object is created on a context and must be destroyed before it.
 *
 * A context is not thread-safe: use it from one thread at a time. Different
 * contexts may be used from different threads concurrently.
 *
 * CUDA support lives in a module (libftq-cuda.so) that libftq loads when the
 * first "cuda" context is created, so one libftq serves hosts with and
 * without CUDA. It is searched for in this order: the file named by the
 * environment variable FTQ_CUDA_MODULE; the folder holding libftq itself; the
 * installed library folder; the dynamic loader's search path.
 */
#ifndef LIBFTQ_FTQ_CONTEXT_H
#define LIBFTQ_FTQ_CONTEXT_H

#include <stddef.h>

#include "ftq_export.h"
#include "ftq_options.h"
#include "ftq_status.h"

FTQ_EXTERN_C_BEGIN

/** A compute context (opaque). */
typedef struct ftq_context ftq_context;

/** Kind of device behind a context. Values are pinned. */
typedef enum ftq_device_type {
  FTQ_DEVICE_CPU = 0,  /**< The plain-C fp32 reference backend. */
  FTQ_DEVICE_CUDA = 1  /**< An NVIDIA GPU through the CUDA module. */
} ftq_device_type;

/** Severity of a log message. Values are pinned. */
typedef enum ftq_log_level {
  FTQ_LOG_ERROR = 0, /**< Something failed. */
  FTQ_LOG_WARN = 1,  /**< Something looks wrong but work goes on. */
  FTQ_LOG_INFO = 2,  /**< What was loaded, planned, measured. */
  FTQ_LOG_DEBUG = 3  /**< Details for developers. */
} ftq_log_level;

/**
 * Receives log messages. libftq never prints by itself: without a callback,
 * messages are dropped.
 * @param user the pointer given to ftq_context_set_log_callback()
 * @param level the message's severity
 * @param message one line of text without a trailing newline
 */
typedef void (*ftq_log_callback)(void *user, ftq_log_level level, const char *message);

/** Categories of memory a context accounts for. Values are pinned. */
typedef enum ftq_memory_category {
  FTQ_MEM_ALL = 0,         /**< The sum over every category. */
  FTQ_MEM_WEIGHTS = 1,     /**< Base model weights (quantized or not). */
  FTQ_MEM_ADAPTER = 2,     /**< LoRA parameters. */
  FTQ_MEM_GRADIENTS = 3,   /**< Gradients of trainable parameters. */
  FTQ_MEM_OPTIMIZER = 4,   /**< Optimizer states. */
  FTQ_MEM_ACTIVATIONS = 5, /**< Activations kept for the backward pass. */
  FTQ_MEM_WORKSPACE = 6,   /**< Scratch: GEMM workspace, temporaries. */
  FTQ_MEM_OTHER = 7        /**< Anything else. */
} ftq_memory_category;

/**
 * Creates a context on a device.
 *
 * Options read (group "context"): `num_threads` (CPU worker threads; 0 means
 * one per online core), `log_level`, `cuda_workspace_mb`.
 *
 * @param device "cpu", "cuda" (device 0) or "cuda:N"
 * @param opts options, or NULL for defaults
 * @param out receives the context; destroy it with ftq_context_destroy()
 * @return FTQ_OK; FTQ_ERR_INVALID_ARGUMENT for an unrecognised device
 *         string; FTQ_ERR_NO_DEVICE when CUDA support is not built or its
 *         module cannot be loaded, no CUDA device exists, or N is out of
 *         range; FTQ_ERR_CUDA / FTQ_ERR_CUBLAS if the device fails to start
 */
FTQ_API ftq_status ftq_context_create(const char *device, const ftq_options *opts, ftq_context **out);

/** Destroys a context and frees everything it holds.
 *  @param ctx the context; NULL is a no-op */
FTQ_API void ftq_context_destroy(ftq_context *ctx);

/**
 * Installs (or, with @p callback NULL, removes) the log callback.
 * @param ctx the context
 * @param callback the function that receives messages
 * @param user passed back to @p callback unchanged
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_context_set_log_callback(ftq_context *ctx, ftq_log_callback callback, void *user);

/**
 * Sets the most verbose level passed to the log callback (the default comes
 * from the `log_level` option, "info").
 * @param ctx the context
 * @param level the most verbose ::ftq_log_level to pass on
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_context_set_log_level(ftq_context *ctx, ftq_log_level level);

/** @param ctx the context
 *  @return the context's ::ftq_device_type, or -1 if @p ctx is NULL */
FTQ_API int ftq_context_device_type(const ftq_context *ctx);

/** @param ctx the context
 *  @return a description of the device, e.g. "cpu (2 threads, openblas)" or
 *          "cuda:0 NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"; valid while the
 *          context lives ("" for NULL) */
FTQ_API const char *ftq_context_device_name(const ftq_context *ctx);

/** @param ctx the context
 *  @return the number of CPU worker threads the context uses (>= 1), or -1
 *          if @p ctx is NULL */
FTQ_API int ftq_context_num_threads(const ftq_context *ctx);

/**
 * Reports memory that libftq objects on this context hold on its device
 * (host memory for a CPU context).
 * @param ctx the context
 * @param category one ::ftq_memory_category, FTQ_MEM_ALL for the total
 * @param current receives the bytes held now (may be NULL)
 * @param peak receives the most bytes held at once since creation (may be NULL)
 * @return FTQ_OK or FTQ_ERR_INVALID_ARGUMENT
 */
FTQ_API ftq_status ftq_context_memory(const ftq_context *ctx, ftq_memory_category category,
                                      size_t *current, size_t *peak);

/**
 * Reports the device's memory as the driver sees it (all processes).
 * For a CPU context: physical memory and available memory of the host.
 * @param ctx the context
 * @param free_bytes receives the bytes free now (may be NULL)
 * @param total_bytes receives the device's capacity (may be NULL)
 * @return FTQ_OK, FTQ_ERR_INVALID_ARGUMENT or FTQ_ERR_CUDA
 */
FTQ_API ftq_status ftq_context_device_memory(const ftq_context *ctx, size_t *free_bytes, size_t *total_bytes);

/**
 * Waits until all work queued on the context's device has finished.
 * @param ctx the context
 * @return FTQ_OK, or FTQ_ERR_CUDA with the text of an asynchronous device error
 */
FTQ_API ftq_status ftq_context_synchronize(ftq_context *ctx);

/**
 * Counts the CUDA devices libftq can use. Loads the CUDA module if needed.
 * @param count receives the number; 0 when CUDA is unavailable, in which
 *        case ftq_last_error() says why and the call still returns FTQ_OK
 * @return FTQ_OK, or FTQ_ERR_INVALID_ARGUMENT if @p count is NULL
 */
FTQ_API ftq_status ftq_cuda_device_count(int *count);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_CONTEXT_H */
