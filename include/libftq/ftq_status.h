/**
 * @file ftq_status.h
 * @brief Status codes and the thread-local error message.
 *
 * Every fallible libftq call returns an ::ftq_status. On failure the call
 * also stores a message for the calling thread that names what failed and why
 * (the file, tensor, option or CUDA error involved); read it with
 * ftq_last_error() before the next libftq call on the same thread.
 */
#ifndef LIBFTQ_FTQ_STATUS_H
#define LIBFTQ_FTQ_STATUS_H

#include "ftq_export.h"

FTQ_EXTERN_C_BEGIN

/**
 * Result of a libftq call. Values are pinned forever: codes are only ever
 * added at the end, never renumbered or reused.
 */
typedef enum ftq_status {
  FTQ_OK = 0,                         /**< Success. */
  FTQ_ERR_INVALID_ARGUMENT = -1,      /**< A NULL pointer or an invalid argument value. */
  FTQ_ERR_OUT_OF_MEMORY = -2,         /**< A host memory allocation failed. */
  FTQ_ERR_DEVICE_OUT_OF_MEMORY = -3,  /**< A device memory allocation failed or the plan does not fit. */
  FTQ_ERR_IO = -4,                    /**< A file could not be opened, read, written or renamed. */
  FTQ_ERR_FORMAT = -5,                /**< Malformed input: a file, JSON text, data set or tokenizer. */
  FTQ_ERR_UNSUPPORTED = -6,           /**< Well-formed input that uses a feature libftq does not support. */
  FTQ_ERR_UNKNOWN_OPTION = -7,        /**< An option name that is not in the registry. */
  FTQ_ERR_OPTION_TYPE = -8,           /**< An option set or read with the wrong type. */
  FTQ_ERR_OPTION_RANGE = -9,          /**< An option value outside its allowed range or choices. */
  FTQ_ERR_NO_DEVICE = -10,            /**< The requested device does not exist or CUDA support is not available. */
  FTQ_ERR_CUDA = -11,                 /**< A CUDA runtime or driver call failed. */
  FTQ_ERR_CUBLAS = -12,               /**< A cuBLAS / cuBLASLt call failed. */
  FTQ_ERR_NCCL = -13,                 /**< An NCCL call failed. */
  FTQ_ERR_STATE = -14,                /**< The call is not valid in the object's current state. */
  FTQ_ERR_NOT_FOUND = -15,            /**< A named item (tensor, key, file, option index) was not found. */
  FTQ_ERR_SHAPE = -16,                /**< Tensor shapes or sizes that do not agree. */
  FTQ_ERR_NUMERIC = -17,              /**< Non-finite values where finite ones are required. */
  FTQ_ERR_CANCELLED = -18,            /**< Stopped on request (a callback returned non-zero). */
  FTQ_ERR_TIMEOUT = -19,              /**< An operation did not complete in its time limit. */
  FTQ_ERR_INTERNAL = -20,             /**< A broken internal invariant (a libftq bug). */
  FTQ_ERR_COMM = -21                  /**< A communicator peer failed, left or aborted (ftq_comm.h). */
} ftq_status;

/**
 * @param status any status value
 * @return a short, static, human-readable name for @p status (e.g.
 * "invalid argument"); "unknown status" for values this library does not know.
 */
FTQ_API const char *ftq_status_string(ftq_status status);

/**
 * @return the message of the last error on the calling thread, or "" if the
 * thread has seen none since ftq_clear_error(). The text names what failed and
 * why. The pointer stays valid until the next libftq call on this thread.
 */
FTQ_API const char *ftq_last_error(void);

/** @return the status that went with ftq_last_error() (FTQ_OK if none). */
FTQ_API ftq_status ftq_last_error_status(void);

/** Clears the calling thread's last error message. */
FTQ_API void ftq_clear_error(void);


/**
 * Frees memory that libftq allocated and handed to the caller (for example
 * the text from ftq_options_to_json()). NULL is a no-op.
 * @param ptr the pointer libftq returned
 */
FTQ_API void ftq_free(void *ptr);

FTQ_EXTERN_C_END

#endif /* LIBFTQ_FTQ_STATUS_H */
