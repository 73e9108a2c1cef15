//! Models (ftq_model.h) and generation (ftq_generate.h).
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::context::{Context, MemoryCategory};
use crate::error::{check, guarded, record_panic, Error, Result, Status};
use crate::options::{opt_ptr, Options};
use crate::util::{cpath, cstring, take_text, text};
use libftq_sys as sys;

/// Groups of parameters for counts and sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    /// Every parameter (a tied head counted once).
    All = 0,
    /// The seven projections of every layer.
    Linear = 1,
    /// The token embedding.
    Embedding = 2,
    /// The LM head (0 when tied).
    LmHead = 3,
    /// RMSNorm weights.
    Norm = 4,
    /// Attention biases.
    Bias = 5,
}

/// Why generation stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FinishReason {
    /// max_new_tokens were generated.
    Length,
    /// An end-of-sequence id was generated.
    Eos,
    /// A stop sequence was reached.
    StopSequence,
    /// The token callback asked to stop.
    Callback,
}

impl FinishReason {
    fn from_c(v: c_int) -> FinishReason {
        match v {
            sys::FTQ_FINISH_EOS => FinishReason::Eos,
            sys::FTQ_FINISH_STOP_SEQUENCE => FinishReason::StopSequence,
            sys::FTQ_FINISH_CALLBACK => FinishReason::Callback,
            _ => FinishReason::Length,
        }
    }
}

/// The result of Model::generate().
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Generation {
    /// The generated ids (without the prompt).
    pub tokens: Vec<i32>,
    /// Why it stopped.
    pub finish_reason: FinishReason,
}

/// How to generate: options (group "generate": max_new_tokens, do_sample,
/// temperature, top_k, top_p, repetition_penalty), seed, stop sequences and
/// a streaming callback that returns `true` to stop.
#[derive(Default)]
pub struct Generate<'a> {
    options: Option<&'a Options>,
    seed: u64,
    stop: Vec<i32>,
    on_token: Option<&'a mut dyn FnMut(i32, usize) -> bool>,
}

impl<'a> Generate<'a> {
    /// Greedy, 20 new tokens, no stop sequences, no callback.
    pub fn new() -> Self {
        Self::default()
    }
    /// Generation options.
    pub fn options(mut self, o: &'a Options) -> Self {
        self.options = Some(o);
        self
    }
    /// Seed of the sampling generator.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }
    /// Adds a stop sequence (token ids, not empty).
    pub fn stop_sequence(mut self, ids: &[i32]) -> Self {
        self.stop.extend_from_slice(ids);
        self.stop.push(-1);
        self
    }
    /// Sees every new token (id, index); returning true stops generation.
    /// A panic inside it stops generation and is resumed by generate().
    pub fn on_token(mut self, f: &'a mut dyn FnMut(i32, usize) -> bool) -> Self {
        self.on_token = Some(f);
        self
    }
}

type TokenFn<'a> = &'a mut dyn FnMut(i32, usize) -> bool;

unsafe extern "C" fn token_trampoline(user: *mut c_void, token: i32, index: usize) -> c_int {
    // SAFETY: user points at the caller's callback for the duration of the call.
    let f = &mut *(user as *mut TokenFn);
    match catch_unwind(AssertUnwindSafe(|| f(token, index))) {
        Ok(stop) => stop as c_int,
        Err(payload) => {
            record_panic(payload);
            1
        }
    }
}

/// A Llama-family model on a context (which it borrows).
pub struct Model<'c> {
    ptr: NonNull<sys::ftq_model>,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> Model<'c> {
    fn adopt(out: *mut sys::ftq_model) -> Model<'c> {
        Model { ptr: NonNull::new(out).expect("libftq returned a NULL model"), _ctx: PhantomData }
    }

    /// Loads a Hugging Face model folder or a GGUF file; options of group
    /// "model" and the quantization options (load_in_4bit, bnb_4bit_quant_type, ...).
    pub fn load(ctx: &'c Context, path: impl AsRef<Path>, opts: Option<&Options>) -> Result<Model<'c>> {
        let p = cpath(path.as_ref())?;
        // The handle is owned before a callback's panic resumes, so unwinding destroys it.
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles, C string and out-pointer.
            check(unsafe { sys::ftq_model_load(ctx.as_ptr(), p.as_ptr(), opt_ptr(opts), &mut out) })?;
            Ok(Model::adopt(out))
        })
    }

    /// A model with random weights from a config.json text.
    pub fn init_random(ctx: &'c Context, config_json: &str, seed: u64, opts: Option<&Options>) -> Result<Model<'c>> {
        let c = cstring(config_json, "config")?;
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles, C string and out-pointer.
            check(unsafe { sys::ftq_model_init_random(ctx.as_ptr(), c.as_ptr(), seed, opt_ptr(opts), &mut out) })?;
            Ok(Model::adopt(out))
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_model {
        self.ptr.as_ptr()
    }

    /// An integer config.json field (hidden_size, vocab_size, ...).
    pub fn config_int(&self, name: &str) -> Result<i64> {
        let n = cstring(name, "field")?;
        let mut v = 0;
        // SAFETY: valid handle, C string, out-pointer.
        check(unsafe { sys::ftq_model_config_int(self.as_ptr(), n.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// A floating-point config.json field (rms_norm_eps, rope_theta, ...).
    pub fn config_float(&self, name: &str) -> Result<f64> {
        let n = cstring(name, "field")?;
        let mut v = 0.0;
        // SAFETY: valid handle, C string, out-pointer.
        check(unsafe { sys::ftq_model_config_float(self.as_ptr(), n.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// A text config.json field (architectures, model_type, torch_dtype, ...).
    pub fn config_string(&self, name: &str) -> Result<String> {
        let n = cstring(name, "field")?;
        let mut v = ptr::null();
        // SAFETY: valid handle, C string, out-pointer; the text is copied.
        check(unsafe { sys::ftq_model_config_string(self.as_ptr(), n.as_ptr(), &mut v) })?;
        Ok(text(v))
    }

    /// The configuration as config.json text.
    pub fn config_json(&self) -> Result<String> {
        let mut out = ptr::null_mut();
        // SAFETY: valid handle and out-pointer; the text is ours to free.
        check(unsafe { sys::ftq_model_config_json(self.as_ptr(), &mut out) })?;
        Ok(take_text(out, None))
    }

    /// The end-of-sequence ids.
    pub fn eos_token_ids(&self) -> Result<Vec<i64>> {
        let mut n = 0usize;
        // SAFETY: valid handle; capacity 0 with NULL only counts.
        check(unsafe { sys::ftq_model_eos_token_ids(self.as_ptr(), ptr::null_mut(), 0, &mut n) })?;
        let mut ids = vec![0i64; n];
        // SAFETY: ids holds n entries.
        check(unsafe { sys::ftq_model_eos_token_ids(self.as_ptr(), ids.as_mut_ptr(), n, &mut n) })?;
        ids.truncate(n);
        Ok(ids)
    }

    /// Number of parameters of one kind.
    pub fn parameter_count(&self, kind: ParamKind) -> Result<i64> {
        let mut v = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_model_parameter_count(self.as_ptr(), kind as c_int, &mut v) })?;
        Ok(v)
    }

    /// Device bytes of the parameters of one kind.
    pub fn parameter_bytes(&self, kind: ParamKind) -> Result<usize> {
        let mut v = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_model_parameter_bytes(self.as_ptr(), kind as c_int, &mut v) })?;
        Ok(v)
    }

    /// Device bytes the model holds in one category.
    pub fn memory(&self, category: MemoryCategory) -> Result<usize> {
        let mut v = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_model_memory(self.as_ptr(), category as c_int, &mut v) })?;
        Ok(v)
    }

    /// Continues `prompt` with the active adapter, if any.
    pub fn generate(&self, prompt: &[i32], how: Generate<'_>) -> Result<Generation> {
        let max_new = match how.options {
            Some(o) => o.get_int("max_new_tokens")?,
            None => Options::new()?.get_int("max_new_tokens")?,
        };
        let cap = usize::try_from(max_new)
            .map_err(|_| Error::new(Status::OPTION_RANGE, "max_new_tokens is negative"))?
            .max(1);
        let mut out = vec![0i32; cap];
        let (mut n_out, mut reason) = (0usize, 0 as c_int);
        let mut cb: Option<TokenFn> = how.on_token;
        let (callback, user): (sys::ftq_token_callback, *mut c_void) = match cb.as_mut() {
            Some(f) => (Some(token_trampoline), f as *mut TokenFn as *mut c_void),
            None => (None, ptr::null_mut()),
        };
        let stop = if how.stop.is_empty() { ptr::null() } else { how.stop.as_ptr() };
        // SAFETY: every buffer outlives the call; the callback pointer is valid during it.
        guarded(|| {
            check(unsafe {
                sys::ftq_model_generate(self.as_ptr(), prompt.as_ptr(), prompt.len(), opt_ptr(how.options), how.seed,
                                        stop, how.stop.len(), callback, user, out.as_mut_ptr(), cap, &mut n_out,
                                        &mut reason)
            })
        })?;
        out.truncate(n_out);
        Ok(Generation { tokens: out, finish_reason: FinishReason::from_c(reason) })
    }
}

impl Drop for Model<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once; adapters borrowing it are gone.
        unsafe { sys::ftq_model_destroy(self.ptr.as_ptr()) }
    }
}
