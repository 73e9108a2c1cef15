//! Raw declarations of libftq's C API (include/libftq/*.h), one to one.
//!
//! Everything here is `unsafe` to call and follows the C rules: handles are
//! opaque pointers created through out-parameters and destroyed with their
//! `*_destroy` function; every fallible call returns an [`ftq_status`] and
//! leaves a message in [`ftq_last_error`]. The safe crate `libftq` wraps
//! them. [`all_functions`] lists every function with its address, so a test
//! fails to link when the library lacks one.
#![allow(non_camel_case_types)]

use std::os::raw::{c_char, c_double, c_float, c_int, c_uint, c_void};

macro_rules! opaque {
    ($($(#[$m:meta])* $name:ident;)*) => {$(
        $(#[$m])*
        #[repr(C)]
        pub struct $name {
            _private: [u8; 0],
            _not_send_sync: core::marker::PhantomData<*mut u8>,
        }
    )*};
}

opaque! {
    /// A set of option values.
    ftq_options;
    /// A compute context.
    ftq_context;
    /// A model: configuration and base weights.
    ftq_model;
    /// A quantization scheme.
    ftq_quantizer;
    /// A quantized tensor.
    ftq_qtensor;
    /// A LoRA adapter.
    ftq_lora;
    /// A tokenizer.
    ftq_tokenizer;
    /// A tokenized data set.
    ftq_dataset;
    /// A batch of token arrays.
    ftq_batch;
    /// AdamW over an adapter's parameters.
    ftq_optimizer;
    /// The training loop.
    ftq_trainer;
    /// A communicator (data-parallel training).
    ftq_comm;
}

macro_rules! c_enums {
    ($($(#[$m:meta])* $ty:ident { $($name:ident = $val:expr,)* })*) => {
        $(
            $(#[$m])*
            pub type $ty = c_int;
            $(#[allow(missing_docs)] pub const $name: $ty = $val;)*
        )*

        /// Every enum constant of the C API by name (checked against the headers).
        pub fn all_constants() -> Vec<(&'static str, c_int)> {
            vec![$($((stringify!($name), $name)),*),*]
        }
    };
}

c_enums! {
    /// Result of a libftq call (ftq_status.h); values are pinned.
    ftq_status {
        FTQ_OK = 0, FTQ_ERR_INVALID_ARGUMENT = -1, FTQ_ERR_OUT_OF_MEMORY = -2, FTQ_ERR_DEVICE_OUT_OF_MEMORY = -3,
        FTQ_ERR_IO = -4, FTQ_ERR_FORMAT = -5, FTQ_ERR_UNSUPPORTED = -6, FTQ_ERR_UNKNOWN_OPTION = -7,
        FTQ_ERR_OPTION_TYPE = -8, FTQ_ERR_OPTION_RANGE = -9, FTQ_ERR_NO_DEVICE = -10, FTQ_ERR_CUDA = -11,
        FTQ_ERR_CUBLAS = -12, FTQ_ERR_NCCL = -13, FTQ_ERR_STATE = -14, FTQ_ERR_NOT_FOUND = -15,
        FTQ_ERR_SHAPE = -16, FTQ_ERR_NUMERIC = -17, FTQ_ERR_CANCELLED = -18, FTQ_ERR_TIMEOUT = -19,
        FTQ_ERR_INTERNAL = -20, FTQ_ERR_COMM = -21,
    }
    /// Type of an option's value.
    ftq_option_type { FTQ_OPTION_INT = 0, FTQ_OPTION_FLOAT = 1, FTQ_OPTION_BOOL = 2, FTQ_OPTION_STRING = 3, }
    /// Kind of device behind a context.
    ftq_device_type { FTQ_DEVICE_CPU = 0, FTQ_DEVICE_CUDA = 1, }
    /// Severity of a log message.
    ftq_log_level { FTQ_LOG_ERROR = 0, FTQ_LOG_WARN = 1, FTQ_LOG_INFO = 2, FTQ_LOG_DEBUG = 3, }
    /// Categories of memory a context accounts for.
    ftq_memory_category {
        FTQ_MEM_ALL = 0, FTQ_MEM_WEIGHTS = 1, FTQ_MEM_ADAPTER = 2, FTQ_MEM_GRADIENTS = 3, FTQ_MEM_OPTIMIZER = 4,
        FTQ_MEM_ACTIVATIONS = 5, FTQ_MEM_WORKSPACE = 6, FTQ_MEM_OTHER = 7,
    }
    /// Groups of model parameters.
    ftq_param_kind {
        FTQ_PARAMS_ALL = 0, FTQ_PARAMS_LINEAR = 1, FTQ_PARAMS_EMBEDDING = 2, FTQ_PARAMS_LM_HEAD = 3,
        FTQ_PARAMS_NORM = 4, FTQ_PARAMS_BIAS = 5,
    }
    /// Quantization schemes.
    ftq_qscheme {
        FTQ_QSCHEME_NONE = 0, FTQ_QSCHEME_NF4 = 1, FTQ_QSCHEME_FP4 = 2, FTQ_QSCHEME_INT8_SYM = 3,
        FTQ_QSCHEME_INT8_ASYM = 4,
    }
    /// Which elements share an INT8 scale.
    ftq_qgranularity { FTQ_QGRAN_TENSOR = 0, FTQ_QGRAN_CHANNEL = 1, FTQ_QGRAN_GROUP = 2, }
    /// Element type of a caller's buffer.
    ftq_float_type { FTQ_FLOAT32 = 0, FTQ_FLOAT16 = 1, FTQ_BFLOAT16 = 2, }
    /// Where a caller's buffer lives.
    ftq_memory_location { FTQ_HOST = 0, FTQ_DEVICE = 1, }
    /// Indices of ftq_quantizer_error_stats()'s statistics.
    ftq_qstat {
        FTQ_QSTAT_MSE = 0, FTQ_QSTAT_SQNR_DB = 1, FTQ_QSTAT_MAX_ABS_ERROR = 2, FTQ_QSTAT_ZEROED_FRACTION = 3,
        FTQ_QSTAT_COLLAPSED_FRACTION = 4, FTQ_QSTAT_CLIPPED_FRACTION = 5,
    }
    /// Why generation stopped.
    ftq_finish_reason {
        FTQ_FINISH_LENGTH = 0, FTQ_FINISH_EOS = 1, FTQ_FINISH_STOP_SEQUENCE = 2, FTQ_FINISH_CALLBACK = 3,
    }
    /// Special tokens a tokenizer may name.
    ftq_special_token { FTQ_TOKEN_BOS = 0, FTQ_TOKEN_EOS = 1, FTQ_TOKEN_PAD = 2, FTQ_TOKEN_UNK = 3, }
    /// Flags of ftq_tokenizer_encode().
    ftq_encode_flag {
        FTQ_ENCODE_ADD_SPECIAL = 1, FTQ_ENCODE_ADD_BOS = 2, FTQ_ENCODE_ADD_EOS = 4, FTQ_ENCODE_SPECIAL_AS_TEXT = 8,
    }
    /// Flags of ftq_tokenizer_decode().
    ftq_decode_flag { FTQ_DECODE_SKIP_SPECIAL = 1, }
    /// The two parts of a data set.
    ftq_split { FTQ_SPLIT_TRAIN = 0, FTQ_SPLIT_EVAL = 1, }
    /// Counters of ftq_dataset_stat().
    ftq_dataset_stat_id {
        FTQ_DATA_ROWS = 0, FTQ_DATA_SKIPPED = 1, FTQ_DATA_TRUNCATED = 2, FTQ_DATA_TOKENS = 3,
        FTQ_DATA_LOSS_TOKENS = 4, FTQ_DATA_NO_COMPLETION = 5, FTQ_DATA_EMPTY = 6,
    }
    /// Reductions of ftq_comm_allreduce().
    ftq_comm_reduce { FTQ_COMM_SUM = 0, FTQ_COMM_MAX = 1, FTQ_COMM_MIN = 2, }
}

/// FTQ_COMM_ID_SIZE: bytes of a communicator id.
pub const FTQ_COMM_ID_SIZE: usize = 160;
/// FTQ_COMM_ID_STRING_SIZE: bytes a printable id takes, with its NUL.
pub const FTQ_COMM_ID_STRING_SIZE: usize = 336;

/// FTQ_IGNORE_INDEX: the label of positions outside the loss.
pub const FTQ_IGNORE_INDEX: i32 = -100;

/// Receives log messages (ftq_context_set_log_callback()).
pub type ftq_log_callback = Option<unsafe extern "C" fn(user: *mut c_void, level: ftq_log_level, message: *const c_char)>;
/// Receives each generated token; non-zero stops generation.
pub type ftq_token_callback = Option<unsafe extern "C" fn(user: *mut c_void, token: i32, index: usize) -> c_int>;

/// Receives each trainer log record (JSON text); non-zero stops training.
pub type ftq_trainer_log_callback = Option<unsafe extern "C" fn(user: *mut c_void, record: *const c_char) -> c_int>;
/// Called after every optimizer step; non-zero stops training.
pub type ftq_trainer_progress_callback = Option<
    unsafe extern "C" fn(user: *mut c_void, step: i64, total_steps: i64, loss: c_double, learning_rate: c_double,
                         tokens_per_second: c_double) -> c_int,
>;
/// Called at each evaluation for a host metric; non-zero stops training.
pub type ftq_trainer_eval_callback =
    Option<unsafe extern "C" fn(user: *mut c_void, trainer: *mut ftq_trainer, step: i64, metric: *mut c_double) -> c_int>;

macro_rules! ftq_functions {
    ($( fn $name:ident ( $($arg:ident : $ty:ty),* $(,)? ) $(-> $ret:ty)? ; )*) => {
        extern "C" {
            $( pub fn $name($($arg: $ty),*) $(-> $ret)?; )*
        }

        /// Every function of the C API by name, with its address. Referencing
        /// them all makes linking fail when the library lacks one.
        pub fn all_functions() -> Vec<(&'static str, *const ())> {
            vec![$( (stringify!($name), $name as *const ()) ),*]
        }
    };
}

ftq_functions! {
    // ftq_version.h
    fn ftq_version_number() -> c_int;
    fn ftq_version_string() -> *const c_char;
    fn ftq_version(major: *mut c_int, minor: *mut c_int, patch: *mut c_int);
    fn ftq_build_info() -> *const c_char;
    // ftq_status.h
    fn ftq_status_string(status: ftq_status) -> *const c_char;
    fn ftq_last_error() -> *const c_char;
    fn ftq_last_error_status() -> ftq_status;
    fn ftq_clear_error();
    fn ftq_free(ptr: *mut c_void);
    // ftq_options.h
    fn ftq_option_count() -> usize;
    fn ftq_option_find(name: *const c_char, index: *mut usize) -> ftq_status;
    fn ftq_option_name(index: usize) -> *const c_char;
    fn ftq_option_type_of(index: usize) -> c_int;
    fn ftq_option_group(index: usize) -> *const c_char;
    fn ftq_option_doc(index: usize) -> *const c_char;
    fn ftq_option_default(index: usize) -> *const c_char;
    fn ftq_option_range(index: usize, min: *mut c_double, max: *mut c_double) -> ftq_status;
    fn ftq_option_choices(index: usize) -> *const c_char;
    fn ftq_option_is_list(index: usize) -> c_int;
    fn ftq_options_create(out: *mut *mut ftq_options) -> ftq_status;
    fn ftq_options_destroy(opts: *mut ftq_options);
    fn ftq_options_copy(src: *const ftq_options, out: *mut *mut ftq_options) -> ftq_status;
    fn ftq_options_set_int(opts: *mut ftq_options, name: *const c_char, value: i64) -> ftq_status;
    fn ftq_options_set_float(opts: *mut ftq_options, name: *const c_char, value: c_double) -> ftq_status;
    fn ftq_options_set_bool(opts: *mut ftq_options, name: *const c_char, value: c_int) -> ftq_status;
    fn ftq_options_set_string(opts: *mut ftq_options, name: *const c_char, value: *const c_char) -> ftq_status;
    fn ftq_options_set_parse(opts: *mut ftq_options, name: *const c_char, text: *const c_char) -> ftq_status;
    fn ftq_options_unset(opts: *mut ftq_options, name: *const c_char) -> ftq_status;
    fn ftq_options_is_set(opts: *const ftq_options, name: *const c_char, is_set: *mut c_int) -> ftq_status;
    fn ftq_options_get_int(opts: *const ftq_options, name: *const c_char, value: *mut i64) -> ftq_status;
    fn ftq_options_get_float(opts: *const ftq_options, name: *const c_char, value: *mut c_double) -> ftq_status;
    fn ftq_options_get_bool(opts: *const ftq_options, name: *const c_char, value: *mut c_int) -> ftq_status;
    fn ftq_options_get_string(opts: *const ftq_options, name: *const c_char, value: *mut *const c_char) -> ftq_status;
    fn ftq_options_load_json(opts: *mut ftq_options, json_text: *const c_char) -> ftq_status;
    fn ftq_options_load_json_file(opts: *mut ftq_options, path: *const c_char) -> ftq_status;
    fn ftq_options_to_json(opts: *const ftq_options, include_defaults: c_int, out: *mut *mut c_char) -> ftq_status;
    // ftq_context.h
    fn ftq_context_create(device: *const c_char, opts: *const ftq_options, out: *mut *mut ftq_context) -> ftq_status;
    fn ftq_context_destroy(ctx: *mut ftq_context);
    fn ftq_context_set_log_callback(ctx: *mut ftq_context, callback: ftq_log_callback, user: *mut c_void) -> ftq_status;
    fn ftq_context_set_log_level(ctx: *mut ftq_context, level: ftq_log_level) -> ftq_status;
    fn ftq_context_device_type(ctx: *const ftq_context) -> c_int;
    fn ftq_context_device_name(ctx: *const ftq_context) -> *const c_char;
    fn ftq_context_num_threads(ctx: *const ftq_context) -> c_int;
    fn ftq_context_memory(ctx: *const ftq_context, category: ftq_memory_category, current: *mut usize,
                          peak: *mut usize) -> ftq_status;
    fn ftq_context_device_memory(ctx: *const ftq_context, free_bytes: *mut usize, total_bytes: *mut usize) -> ftq_status;
    fn ftq_context_synchronize(ctx: *mut ftq_context) -> ftq_status;
    fn ftq_cuda_device_count(count: *mut c_int) -> ftq_status;
    // ftq_model.h
    fn ftq_model_load(ctx: *mut ftq_context, path: *const c_char, opts: *const ftq_options,
                      out: *mut *mut ftq_model) -> ftq_status;
    fn ftq_model_init_random(ctx: *mut ftq_context, config_json: *const c_char, seed: u64, opts: *const ftq_options,
                             out: *mut *mut ftq_model) -> ftq_status;
    fn ftq_model_destroy(model: *mut ftq_model);
    fn ftq_model_config_int(model: *const ftq_model, name: *const c_char, value: *mut i64) -> ftq_status;
    fn ftq_model_config_float(model: *const ftq_model, name: *const c_char, value: *mut c_double) -> ftq_status;
    fn ftq_model_config_string(model: *const ftq_model, name: *const c_char, value: *mut *const c_char) -> ftq_status;
    fn ftq_model_eos_token_ids(model: *const ftq_model, ids: *mut i64, capacity: usize, count: *mut usize) -> ftq_status;
    fn ftq_model_config_json(model: *const ftq_model, out: *mut *mut c_char) -> ftq_status;
    fn ftq_model_parameter_count(model: *const ftq_model, kind: ftq_param_kind, count: *mut i64) -> ftq_status;
    fn ftq_model_parameter_bytes(model: *const ftq_model, kind: ftq_param_kind, bytes: *mut usize) -> ftq_status;
    fn ftq_model_memory(model: *const ftq_model, category: ftq_memory_category, bytes: *mut usize) -> ftq_status;
    // ftq_generate.h
    fn ftq_model_generate(model: *mut ftq_model, prompt: *const i32, n_prompt: usize, opts: *const ftq_options,
                          seed: u64, stop_sequences: *const i32, stop_len: usize, callback: ftq_token_callback,
                          user: *mut c_void, out: *mut i32, out_capacity: usize, n_out: *mut usize,
                          finish_reason: *mut c_int) -> ftq_status;
    // ftq_quantizer.h
    fn ftq_quantizer_create(ctx: *mut ftq_context, opts: *const ftq_options, out: *mut *mut ftq_quantizer) -> ftq_status;
    fn ftq_quantizer_destroy(q: *mut ftq_quantizer);
    fn ftq_quantizer_scheme(q: *const ftq_quantizer) -> c_int;
    fn ftq_quantizer_quantized_bytes(q: *const ftq_quantizer, ndim: c_int, shape: *const i64, bytes: *mut usize)
                                     -> ftq_status;
    fn ftq_quantizer_quantize(q: *mut ftq_quantizer, src: *const c_void, type_: ftq_float_type,
                              where_: ftq_memory_location, ndim: c_int, shape: *const i64,
                              out: *mut *mut ftq_qtensor) -> ftq_status;
    fn ftq_quantizer_fake_quantize(q: *mut ftq_quantizer, src: *const c_void, dst: *mut c_void, type_: ftq_float_type,
                                   where_: ftq_memory_location, ndim: c_int, shape: *const i64) -> ftq_status;
    fn ftq_quantizer_fake_quantize_backward(q: *mut ftq_quantizer, src: *const c_void, grad_out: *const c_void,
                                            grad_in: *mut c_void, type_: ftq_float_type, where_: ftq_memory_location,
                                            ndim: c_int, shape: *const i64) -> ftq_status;
    fn ftq_quantizer_error_stats(q: *mut ftq_quantizer, src: *const c_void, type_: ftq_float_type,
                                 where_: ftq_memory_location, ndim: c_int, shape: *const i64, stats: *mut c_double,
                                 n_stats: usize) -> ftq_status;
    fn ftq_quantizer_observe(q: *mut ftq_quantizer, src: *const c_void, type_: ftq_float_type,
                             where_: ftq_memory_location, count: usize) -> ftq_status;
    fn ftq_quantizer_calibration(q: *const ftq_quantizer, scale: *mut c_float, zero_point: *mut i32) -> ftq_status;
    fn ftq_quantizer_reset_calibration(q: *mut ftq_quantizer);
    fn ftq_qtensor_destroy(t: *mut ftq_qtensor);
    fn ftq_qtensor_scheme(t: *const ftq_qtensor) -> c_int;
    fn ftq_qtensor_shape(t: *const ftq_qtensor, shape: *mut i64, max_dims: c_int) -> c_int;
    fn ftq_qtensor_bytes(t: *const ftq_qtensor) -> usize;
    fn ftq_qtensor_clipped(t: *const ftq_qtensor) -> i64;
    fn ftq_qtensor_dequantize_into(t: *const ftq_qtensor, dst: *mut c_void, type_: ftq_float_type,
                                   where_: ftq_memory_location, count: usize) -> ftq_status;
    // ftq_lora.h
    fn ftq_lora_create(model: *mut ftq_model, adapter_name: *const c_char, opts: *const ftq_options, seed: u64,
                       out: *mut *mut ftq_lora) -> ftq_status;
    fn ftq_lora_destroy(lora: *mut ftq_lora);
    fn ftq_lora_set_active(lora: *mut ftq_lora, active: c_int) -> ftq_status;
    fn ftq_lora_is_active(lora: *const ftq_lora) -> c_int;
    fn ftq_lora_name(lora: *const ftq_lora) -> *const c_char;
    fn ftq_lora_num_parameters(lora: *const ftq_lora, count: *mut i64) -> ftq_status;
    fn ftq_lora_scaling(lora: *const ftq_lora, scaling: *mut c_double) -> ftq_status;
    fn ftq_lora_tensor_count(lora: *const ftq_lora) -> usize;
    fn ftq_lora_tensor_info(lora: *const ftq_lora, index: usize, name: *mut c_char, name_len: usize,
                            shape: *mut i64) -> ftq_status;
    fn ftq_lora_find_tensor(lora: *const ftq_lora, name: *const c_char, index: *mut usize) -> ftq_status;
    fn ftq_lora_get_tensor(lora: *const ftq_lora, index: usize, dst: *mut c_float, count: usize) -> ftq_status;
    fn ftq_lora_set_tensor(lora: *mut ftq_lora, index: usize, src: *const c_float, count: usize) -> ftq_status;
    fn ftq_lora_get_grad(lora: *const ftq_lora, index: usize, dst: *mut c_float, count: usize) -> ftq_status;
    fn ftq_lora_zero_grad(lora: *mut ftq_lora) -> ftq_status;
    fn ftq_lora_save(lora: *const ftq_lora, dir: *const c_char, opts: *const ftq_options) -> ftq_status;
    fn ftq_lora_load(model: *mut ftq_model, dir: *const c_char, adapter_name: *const c_char, opts: *const ftq_options,
                     out: *mut *mut ftq_lora) -> ftq_status;
    fn ftq_model_merged_weight(model: *const ftq_model, lora: *const ftq_lora, name: *const c_char, dst: *mut c_float,
                               count: usize, shape: *mut i64) -> ftq_status;
    fn ftq_model_save_merged(model: *mut ftq_model, lora: *const ftq_lora, dir: *const c_char,
                             opts: *const ftq_options) -> ftq_status;
    // ftq_tokenizer.h
    fn ftq_tokenizer_load(path: *const c_char, opts: *const ftq_options, out: *mut *mut ftq_tokenizer) -> ftq_status;
    fn ftq_tokenizer_load_json(json: *const c_char, len: usize, opts: *const ftq_options,
                               out: *mut *mut ftq_tokenizer) -> ftq_status;
    fn ftq_tokenizer_destroy(tok: *mut ftq_tokenizer);
    fn ftq_tokenizer_encode(tok: *const ftq_tokenizer, text: *const c_char, len: usize, flags: c_uint,
                            ids: *mut *mut i32, n_ids: *mut usize) -> ftq_status;
    fn ftq_tokenizer_encode_offsets(tok: *const ftq_tokenizer, text: *const c_char, len: usize, flags: c_uint,
                                    ids: *mut *mut i32, offsets: *mut *mut i32, n_ids: *mut usize) -> ftq_status;
    fn ftq_tokenizer_decode(tok: *const ftq_tokenizer, ids: *const i32, n: usize, flags: c_uint,
                            text: *mut *mut c_char, len: *mut usize) -> ftq_status;
    fn ftq_tokenizer_token_to_piece(tok: *const ftq_tokenizer, id: i32, piece: *mut *const c_char,
                                    len: *mut usize) -> ftq_status;
    fn ftq_tokenizer_id_to_token(tok: *const ftq_tokenizer, id: i32, token: *mut *const c_char,
                                 len: *mut usize) -> ftq_status;
    fn ftq_tokenizer_token_to_id(tok: *const ftq_tokenizer, token: *const c_char, len: usize, id: *mut i32)
                                 -> ftq_status;
    fn ftq_tokenizer_vocab_size(tok: *const ftq_tokenizer) -> i64;
    fn ftq_tokenizer_special_id(tok: *const ftq_tokenizer, which: ftq_special_token) -> i32;
    fn ftq_tokenizer_is_special(tok: *const ftq_tokenizer, id: i32) -> c_int;
    fn ftq_tokenizer_chat_template(tok: *const ftq_tokenizer) -> *const c_char;
    fn ftq_tokenizer_apply_chat_template(tok: *const ftq_tokenizer, messages_json: *const c_char,
                                         add_generation_prompt: c_int, text: *mut *mut c_char, len: *mut usize)
                                         -> ftq_status;
    // ftq_dataset.h
    fn ftq_dataset_load(ctx: *mut ftq_context, tok: *const ftq_tokenizer, path: *const c_char,
                        opts: *const ftq_options, out: *mut *mut ftq_dataset) -> ftq_status;
    fn ftq_dataset_destroy(ds: *mut ftq_dataset);
    fn ftq_dataset_num_examples(ds: *const ftq_dataset, split: ftq_split) -> i64;
    fn ftq_dataset_stat(ds: *const ftq_dataset, which: ftq_dataset_stat_id) -> i64;
    fn ftq_dataset_example(ds: *const ftq_dataset, split: ftq_split, index: i64, ids: *mut *const i32,
                           loss_mask: *mut *const u8, length: *mut i64, line: *mut i64) -> ftq_status;
    fn ftq_dataset_num_batches(ds: *const ftq_dataset, split: ftq_split) -> i64;
    fn ftq_dataset_get_batch(ds: *mut ftq_dataset, split: ftq_split, epoch: i64, index: i64,
                             batch: *mut ftq_batch) -> ftq_status;
    fn ftq_dataset_next_batch(ds: *mut ftq_dataset, batch: *mut ftq_batch) -> ftq_status;
    fn ftq_dataset_cursor(ds: *const ftq_dataset, epoch: *mut i64, index: *mut i64) -> ftq_status;
    fn ftq_dataset_seek(ds: *mut ftq_dataset, epoch: i64, index: i64) -> ftq_status;
    fn ftq_dataset_fingerprint(ds: *const ftq_dataset) -> u64;
    fn ftq_dataset_exact_match(prediction: *const c_char, prediction_len: usize, reference: *const c_char,
                               reference_len: usize) -> c_int;
    fn ftq_batch_create(out: *mut *mut ftq_batch) -> ftq_status;
    fn ftq_batch_destroy(batch: *mut ftq_batch);
    fn ftq_batch_rows(batch: *const ftq_batch) -> i64;
    fn ftq_batch_seq_len(batch: *const ftq_batch) -> i64;
    fn ftq_batch_input_ids(batch: *const ftq_batch) -> *const i32;
    fn ftq_batch_labels(batch: *const ftq_batch) -> *const i32;
    fn ftq_batch_position_ids(batch: *const ftq_batch) -> *const i32;
    fn ftq_batch_sequence_ids(batch: *const ftq_batch) -> *const i32;
    fn ftq_batch_attention_mask(batch: *const ftq_batch) -> *const i32;
    fn ftq_batch_sequences(batch: *const ftq_batch, n: *mut i64, starts: *mut *const i32,
                           lengths: *mut *const i32) -> ftq_status;
    fn ftq_batch_num_tokens(batch: *const ftq_batch) -> i64;
    fn ftq_batch_num_loss_tokens(batch: *const ftq_batch) -> i64;
    fn ftq_batch_example_indices(batch: *const ftq_batch) -> *const i64;
    fn ftq_batch_num_examples(batch: *const ftq_batch) -> i64;
    fn ftq_batch_position(batch: *const ftq_batch, epoch: *mut i64, index: *mut i64) -> ftq_status;
    // ftq_trainer.h
    fn ftq_model_forward_backward(model: *mut ftq_model, batch: *const ftq_batch, opts: *const ftq_options, seed: u64,
                                  micro_step: u64, num_items: c_double, loss: *mut c_double, n_items: *mut i64)
                                  -> ftq_status;
    fn ftq_model_eval_batch(model: *mut ftq_model, batch: *const ftq_batch, loss_sum: *mut c_double,
                            n_items: *mut i64) -> ftq_status;
    fn ftq_optimizer_create(lora: *mut ftq_lora, opts: *const ftq_options, total_steps: i64,
                            out: *mut *mut ftq_optimizer) -> ftq_status;
    fn ftq_optimizer_destroy(opt: *mut ftq_optimizer);
    fn ftq_optimizer_step(opt: *mut ftq_optimizer, grad_norm: *mut c_double, learning_rate: *mut c_double,
                          skipped: *mut c_int) -> ftq_status;
    fn ftq_optimizer_steps_done(opt: *const ftq_optimizer) -> i64;
    fn ftq_optimizer_learning_rate(opt: *const ftq_optimizer) -> c_double;
    fn ftq_trainer_create(model: *mut ftq_model, lora: *mut ftq_lora, data: *mut ftq_dataset, opts: *const ftq_options,
                          out: *mut *mut ftq_trainer) -> ftq_status;
    fn ftq_trainer_destroy(trainer: *mut ftq_trainer);
    fn ftq_trainer_set_log_callback(trainer: *mut ftq_trainer, callback: ftq_trainer_log_callback,
                                    user: *mut c_void) -> ftq_status;
    fn ftq_trainer_set_progress_callback(trainer: *mut ftq_trainer, callback: ftq_trainer_progress_callback,
                                         user: *mut c_void) -> ftq_status;
    fn ftq_trainer_set_eval_callback(trainer: *mut ftq_trainer, callback: ftq_trainer_eval_callback,
                                     user: *mut c_void) -> ftq_status;
    fn ftq_trainer_plan(trainer: *mut ftq_trainer, json: *mut *mut c_char) -> ftq_status;
    fn ftq_trainer_train(trainer: *mut ftq_trainer) -> ftq_status;
    fn ftq_trainer_step(trainer: *mut ftq_trainer, loss: *mut c_double) -> ftq_status;
    fn ftq_trainer_evaluate(trainer: *mut ftq_trainer, eval_loss: *mut c_double) -> ftq_status;
    fn ftq_trainer_save_checkpoint(trainer: *mut ftq_trainer, dir: *const c_char) -> ftq_status;
    fn ftq_trainer_load_checkpoint(trainer: *mut ftq_trainer, dir: *const c_char) -> ftq_status;
    fn ftq_trainer_global_step(trainer: *const ftq_trainer) -> i64;
    fn ftq_trainer_total_steps(trainer: *const ftq_trainer) -> i64;
    fn ftq_trainer_nonfinite_steps(trainer: *const ftq_trainer) -> i64;
    fn ftq_trainer_optimizer(trainer: *mut ftq_trainer) -> *mut ftq_optimizer;
    fn ftq_trainer_set_comm(trainer: *mut ftq_trainer, comm: *mut ftq_comm) -> ftq_status;
    // ftq_comm.h
    fn ftq_comm_id_create(device: ftq_device_type, id: *mut u8) -> ftq_status;
    fn ftq_comm_id_to_string(id: *const u8, buf: *mut c_char, size: usize) -> ftq_status;
    fn ftq_comm_id_from_string(text: *const c_char, id: *mut u8) -> ftq_status;
    fn ftq_comm_create(ctx: *mut ftq_context, id: *const u8, rank: c_int, world_size: c_int,
                       opts: *const ftq_options, out: *mut *mut ftq_comm) -> ftq_status;
    fn ftq_comm_create_from_env(ctx: *mut ftq_context, opts: *const ftq_options, out: *mut *mut ftq_comm)
                                -> ftq_status;
    fn ftq_comm_destroy(comm: *mut ftq_comm);
    fn ftq_comm_rank(comm: *const ftq_comm) -> c_int;
    fn ftq_comm_size(comm: *const ftq_comm) -> c_int;
    fn ftq_comm_check(comm: *mut ftq_comm) -> ftq_status;
    fn ftq_comm_abort(comm: *mut ftq_comm) -> ftq_status;
    fn ftq_comm_barrier(comm: *mut ftq_comm) -> ftq_status;
    fn ftq_comm_allreduce(comm: *mut ftq_comm, values: *mut c_double, n: usize, op: ftq_comm_reduce) -> ftq_status;
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    /// Function names declared FTQ_API in the public headers.
    fn declared() -> BTreeSet<String> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../include/libftq");
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).expect("include/libftq") {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let code = strip_comments(&text);
            for decl in code.split("FTQ_API").skip(1) {
                let head = &decl[..decl.find('(').unwrap_or(0)];
                if head.contains(';') || head.contains('#') {
                    continue; // the macro's own definition, not a declaration
                }
                let mut words = head.split(|c: char| !(c.is_alphanumeric() || c == '_'));
                if let Some(name) = words.rfind(|w| !w.is_empty()) {
                    if name.starts_with("ftq_") {
                        out.insert(name.to_string());
                    }
                }
            }
        }
        out
    }

    fn strip_comments(s: &str) -> String {
        let mut out = String::new();
        let mut rest = s;
        while let Some(i) = rest.find("/*") {
            out.push_str(&rest[..i]);
            rest = match rest[i..].find("*/") { Some(j) => &rest[i + j + 2..], None => "" };
        }
        out.push_str(rest);
        out
    }

    #[test]
    fn every_function_links() {
        for (name, addr) in super::all_functions() {
            assert!(!addr.is_null(), "{name}");
        }
    }

    #[test]
    fn declarations_match_the_headers() {
        let mine: BTreeSet<String> = super::all_functions().iter().map(|(n, _)| n.to_string()).collect();
        let headers = declared();
        assert!(headers.len() > 100);
        let unbound: Vec<_> = headers.difference(&mine).collect();
        assert!(unbound.is_empty(), "declared in the headers, missing in libftq-sys: {unbound:?}");
        let stale: Vec<_> = mine.difference(&headers).collect();
        assert!(stale.is_empty(), "in libftq-sys, not in the headers: {stale:?}");
    }

    /// `FTQ_X = N` pairs inside the headers' typedef enums.
    fn header_constants() -> BTreeSet<(String, i32)> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../include/libftq");
        let mut out = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let code = strip_comments(&std::fs::read_to_string(entry.unwrap().path()).unwrap());
            for part in code.split("typedef enum").skip(1) {
                let body = &part[part.find('{').unwrap() + 1..part.find('}').unwrap()];
                for item in body.split(',') {
                    if let Some((k, v)) = item.split_once('=') {
                        out.insert((k.trim().to_string(), v.trim().parse().unwrap()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn constants_match_the_headers() {
        let mine: BTreeSet<(String, i32)> =
            super::all_constants().iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let headers = header_constants();
        assert!(headers.len() > 60);
        assert_eq!(mine, headers);
    }

    #[test]
    fn version_is_abi_0() {
        let mut major = -1;
        unsafe { super::ftq_version(&mut major, std::ptr::null_mut(), std::ptr::null_mut()) };
        assert_eq!(major, 0);
    }
}
