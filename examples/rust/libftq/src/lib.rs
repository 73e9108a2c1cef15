//! libftq from Rust: QLoRA fine-tuning of Llama-family models through the
//! library's C ABI, with owned handles (dropped in the right order, enforced
//! by lifetimes), `Result<T, Error>` for every fallible call (the error
//! carries `ftq_last_error()`'s text) and no `unsafe` for the user.
//!
//! ```no_run
//! use libftq::{Context, Generate, Lora, Model, Options};
//! # fn main() -> libftq::Result<()> {
//! let ctx = Context::new("cpu", Some(&Options::new()?.with("num_threads", 2)?))?;
//! let q4 = Options::new()?.with("load_in_4bit", true)?.with("bnb_4bit_quant_type", "nf4")?;
//! let model = Model::load(&ctx, "SmolLM2-135M-Instruct.Q4_1.gguf", Some(&q4))?;
//! let lora = Lora::new(&model, None, Some(&Options::new()?.with("r", 16)?), 42)?;
//! lora.set_active(true)?;
//! let out = model.generate(&[1, 2, 3], Generate::new())?;
//! # Ok(()) }
//! ```
//!
//! The library is found at build time through FTQ_LIB_DIR, pkg-config or
//! the source tree's build folder (see libftq-sys).
#![warn(missing_docs)]

mod comm;
mod context;
mod dataset;
mod error;
mod lora;
mod model;
mod options;
mod quantizer;
mod tokenizer;
mod trainer;
mod util;

pub use comm::{AbortHandle, Comm, CommId, ReduceOp};
pub use context::{cuda_device_count, Context, DeviceType, LogLevel, MemoryCategory};
pub use dataset::{exact_match, Batch, Dataset, DatasetStat, Example, Split, IGNORE_INDEX};
pub use error::{Error, Result, Status};
pub use lora::{Lora, TensorKey};
pub use model::{FinishReason, Generate, Generation, Model, ParamKind};
pub use options::{list_options, option_info, OptionInfo, OptionType, OptionValue, Options};
pub use quantizer::{Floats, FloatsMut, QScheme, QStats, QTensor, Quantizer};
pub use tokenizer::{decode, encode, json_string, SpecialToken, Tokenizer};
pub use trainer::{Optimizer, OptimizerStep, Progress, Step, Trainer};

/// The raw declarations, for what the safe API does not cover.
pub use libftq_sys as sys;

/// The running library's version string, e.g. "0.1.0".
pub fn version_string() -> String {
    // SAFETY: static storage.
    util::text(unsafe { sys::ftq_version_string() })
}

/// The running library's (major, minor, patch).
pub fn version() -> (i32, i32, i32) {
    let (mut a, mut b, mut c) = (0, 0, 0);
    // SAFETY: valid out-pointers.
    unsafe { sys::ftq_version(&mut a, &mut b, &mut c) };
    (a, b, c)
}

/// The running library's version as major*10000 + minor*100 + patch.
pub fn version_number() -> i32 {
    // SAFETY: no arguments.
    unsafe { sys::ftq_version_number() }
}

/// How the running library was built ("version=0.1.0 cuda=module ...").
pub fn build_info() -> String {
    // SAFETY: static storage.
    util::text(unsafe { sys::ftq_build_info() })
}

/// (status, message) of the calling thread's last libftq error.
pub fn last_error() -> (Status, String) {
    // SAFETY: thread-local text, copied.
    unsafe { (Status(sys::ftq_last_error_status()), util::text(sys::ftq_last_error())) }
}

/// Clears the calling thread's last error.
pub fn clear_error() {
    // SAFETY: no arguments.
    unsafe { sys::ftq_clear_error() }
}
