/**
 * @file ftq.h
 * @brief libftq: QLoRA fine-tuning of Llama-family models in C — umbrella header.
 *
 * Include this one header. Conventions that hold for every call:
 * - Names are `ftq_<object>_<verb>`; macros start with `FTQ_`.
 * - Fallible calls return ::ftq_status (0 = FTQ_OK, negative = error) and on
 *   error leave a message for the calling thread in ftq_last_error().
 * - Constructors return handles through out-parameters; every
 *   `ftq_*_destroy(NULL)` is a no-op.
 * - No public struct is passed by value; settings are options by name
 *   (ftq_options.h).
 * - The library never exits, aborts or prints on its own.
 */
#ifndef LIBFTQ_FTQ_H
#define LIBFTQ_FTQ_H

#include "ftq_export.h"
#include "ftq_version.h"
#include "ftq_status.h"
#include "ftq_options.h"
#include "ftq_comm.h"
#include "ftq_context.h"
#include "ftq_model.h"
#include "ftq_quantizer.h"
#include "ftq_tokenizer.h"
#include "ftq_dataset.h"
#include "ftq_lora.h"
#include "ftq_generate.h"
#include "ftq_trainer.h"

#endif /* LIBFTQ_FTQ_H */
