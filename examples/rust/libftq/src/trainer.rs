//! Training (ftq_trainer.h) at three levels: the whole loop
//! (Trainer::train), one optimizer step (Trainer::step), or
//! Model::forward_backward plus Optimizer::step.
use std::cell::RefCell;
use std::marker::PhantomData;
use std::os::raw::{c_char, c_double, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::comm::Comm;
use crate::dataset::{Batch, Dataset};
use crate::error::{check, guarded, record_panic, Error, Result, Status};
use crate::lora::Lora;
use crate::model::Model;
use crate::options::{opt_ptr, Options};
use crate::util::{cpath, take_text, text};
use libftq_sys as sys;

impl Model<'_> {
    /// Forward and backward on a batch with labels, adding to the active
    /// adapter's gradients; the loss is the batch's token losses divided by
    /// `num_items` (the labelled tokens of the whole accumulated batch; <= 0:
    /// this batch's own). Returns (loss, labelled tokens of this batch).
    pub fn forward_backward(&self, batch: &Batch, opts: Option<&Options>, seed: u64, micro_step: u64,
                            num_items: f64) -> Result<(f64, i64)> {
        let (mut loss, mut n) = (0.0, 0i64);
        // SAFETY: valid handles and out-pointers.
        guarded(|| {
            check(unsafe {
                sys::ftq_model_forward_backward(self.as_ptr(), batch.as_ptr(), opt_ptr(opts), seed, micro_step,
                                                num_items, &mut loss, &mut n)
            })
        })?;
        Ok((loss, n))
    }

    /// (sum of token losses, labelled tokens) of a batch, without gradients or dropout.
    pub fn eval_batch(&self, batch: &Batch) -> Result<(f64, i64)> {
        let (mut loss, mut n) = (0.0, 0i64);
        // SAFETY: valid handles and out-pointers.
        guarded(|| check(unsafe { sys::ftq_model_eval_batch(self.as_ptr(), batch.as_ptr(), &mut loss, &mut n) }))?;
        Ok((loss, n))
    }
}

/// What one optimizer update did.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimizerStep {
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate the update used.
    pub learning_rate: f64,
    /// True if the update was skipped for non-finite gradients.
    pub skipped: bool,
}

/// AdamW over an adapter's parameters with clipping and the schedule
/// (options of group "optim"); borrows the adapter.
pub struct Optimizer<'l> {
    ptr: NonNull<sys::ftq_optimizer>,
    owned: bool,
    _lora: PhantomData<&'l ()>,
}

impl<'l> Optimizer<'l> {
    /// An optimizer spanning `total_steps` updates.
    pub fn new(lora: &'l Lora<'_>, total_steps: i64, opts: Option<&Options>) -> Result<Optimizer<'l>> {
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles and out-pointer.
            check(unsafe { sys::ftq_optimizer_create(lora.as_ptr(), opt_ptr(opts), total_steps, &mut out) })?;
            Ok(Optimizer { ptr: NonNull::new(out).expect("ftq_optimizer_create returned NULL"), owned: true,
                           _lora: PhantomData })
        })
    }

    /// One update from the accumulated gradients.
    pub fn step(&self) -> Result<OptimizerStep> {
        let (mut g, mut lr, mut sk) = (0.0, 0.0, 0 as c_int);
        // SAFETY: valid handle and out-pointers.
        guarded(|| check(unsafe { sys::ftq_optimizer_step(self.ptr.as_ptr(), &mut g, &mut lr, &mut sk) }))?;
        Ok(OptimizerStep { grad_norm: g, learning_rate: lr, skipped: sk != 0 })
    }

    /// Updates done so far.
    pub fn steps_done(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_optimizer_steps_done(self.ptr.as_ptr()) }
    }

    /// The learning rate of the next update.
    pub fn learning_rate(&self) -> f64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_optimizer_learning_rate(self.ptr.as_ptr()) }
    }
}

impl Drop for Optimizer<'_> {
    fn drop(&mut self) {
        if self.owned {
            // SAFETY: owned handle, destroyed once.
            unsafe { sys::ftq_optimizer_destroy(self.ptr.as_ptr()) }
        }
    }
}

/// Progress after one optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Progress {
    /// Optimizer steps done.
    pub step: i64,
    /// Steps the run takes.
    pub total_steps: i64,
    /// This step's loss.
    pub loss: f64,
    /// The learning rate the step used.
    pub learning_rate: f64,
    /// Training throughput since the start.
    pub tokens_per_second: f64,
}

/// The result of Trainer::step().
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Step {
    /// The step's loss.
    pub loss: f64,
    /// A callback asked to stop (the step itself was done).
    pub stop_requested: bool,
}

type LogFn<'a> = Box<dyn FnMut(&str) -> bool + 'a>;
type ProgressFn<'a> = Box<dyn FnMut(&Progress) -> bool + 'a>;
type EvalFn<'a> = Box<dyn FnMut(i64) -> Option<f64> + 'a>;

#[derive(Default)]
struct Callbacks<'a> {
    log: RefCell<Option<LogFn<'a>>>,
    progress: RefCell<Option<ProgressFn<'a>>>,
    eval: RefCell<Option<EvalFn<'a>>>,
}

fn protect(f: impl FnOnce() -> bool) -> c_int {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(stop) => stop as c_int,
        Err(payload) => {
            record_panic(payload);
            1
        }
    }
}

unsafe extern "C" fn log_tramp(user: *mut c_void, record: *const c_char) -> c_int {
    // SAFETY: user is the trainer's boxed callbacks, alive while the trainer is.
    let cb = &*(user as *const Callbacks);
    let rec = text(record);
    let slot = &cb.log;
    protect(|| slot.try_borrow_mut().ok().and_then(|mut f| f.as_mut().map(|f| f(&rec))).unwrap_or(false))
}

unsafe extern "C" fn progress_tramp(user: *mut c_void, step: i64, total: i64, loss: c_double, lr: c_double,
                                    tps: c_double) -> c_int {
    // SAFETY: as log_tramp.
    let cb = &*(user as *const Callbacks);
    let p = Progress { step, total_steps: total, loss, learning_rate: lr, tokens_per_second: tps };
    protect(|| cb.progress.try_borrow_mut().ok().and_then(|mut f| f.as_mut().map(|f| f(&p))).unwrap_or(false))
}

unsafe extern "C" fn eval_tramp(user: *mut c_void, _t: *mut sys::ftq_trainer, step: i64, metric: *mut c_double)
                                -> c_int {
    // SAFETY: as log_tramp; metric is valid during the call.
    let cb = &*(user as *const Callbacks);
    protect(|| {
        if let Ok(mut f) = cb.eval.try_borrow_mut() {
            if let Some(m) = f.as_mut().and_then(|f| f(step)) {
                *metric = m;
            }
        }
        false
    })
}

/// transformers' Trainer loop for an adapter of a model on a data set
/// (options of groups "train", "data", "optim"). Borrows all three; makes
/// the adapter active.
pub struct Trainer<'a> {
    ptr: NonNull<sys::ftq_trainer>,
    callbacks: Box<Callbacks<'a>>,
}

impl<'a> Trainer<'a> {
    /// Creates the trainer and its optimizer.
    pub fn new(model: &'a Model<'_>, lora: &'a Lora<'_>, data: &'a Dataset, opts: Option<&Options>)
               -> Result<Trainer<'a>> {
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles and out-pointer.
            check(unsafe {
                sys::ftq_trainer_create(model.as_ptr(), lora.as_ptr(), data.as_ptr(), opt_ptr(opts), &mut out)
            })?;
            Ok(Trainer { ptr: NonNull::new(out).expect("ftq_trainer_create returned NULL"),
                         callbacks: Box::default() })
        })
    }

    fn as_ptr(&self) -> *mut sys::ftq_trainer {
        self.ptr.as_ptr()
    }

    fn user(&self) -> *mut c_void {
        &*self.callbacks as *const Callbacks as *mut c_void
    }

    fn busy() -> Error {
        Error::new(Status::STATE, "a trainer callback cannot be replaced from inside a callback")
    }

    /// Receives every log record as JSON text; returning true stops training.
    pub fn on_log(&self, f: impl FnMut(&str) -> bool + 'a) -> Result<()> {
        *self.callbacks.log.try_borrow_mut().map_err(|_| Self::busy())? = Some(Box::new(f));
        // SAFETY: the user pointer lives as long as the trainer.
        check(unsafe { sys::ftq_trainer_set_log_callback(self.as_ptr(), Some(log_tramp), self.user()) })
    }

    /// Called after every step; returning true stops training.
    pub fn on_progress(&self, f: impl FnMut(&Progress) -> bool + 'a) -> Result<()> {
        *self.callbacks.progress.try_borrow_mut().map_err(|_| Self::busy())? = Some(Box::new(f));
        // SAFETY: as on_log().
        check(unsafe { sys::ftq_trainer_set_progress_callback(self.as_ptr(), Some(progress_tramp), self.user()) })
    }

    /// Called at each evaluation with the step; its metric is logged as eval_metric.
    pub fn on_eval(&self, f: impl FnMut(i64) -> Option<f64> + 'a) -> Result<()> {
        *self.callbacks.eval.try_borrow_mut().map_err(|_| Self::busy())? = Some(Box::new(f));
        // SAFETY: as on_log().
        check(unsafe { sys::ftq_trainer_set_eval_callback(self.as_ptr(), Some(eval_tramp), self.user()) })
    }

    /// Removes every callback.
    pub fn clear_callbacks(&self) -> Result<()> {
        // SAFETY: NULL removes a callback.
        unsafe {
            check(sys::ftq_trainer_set_log_callback(self.as_ptr(), None, ptr::null_mut()))?;
            check(sys::ftq_trainer_set_progress_callback(self.as_ptr(), None, ptr::null_mut()))?;
            check(sys::ftq_trainer_set_eval_callback(self.as_ptr(), None, ptr::null_mut()))?;
        }
        *self.callbacks.log.try_borrow_mut().map_err(|_| Self::busy())? = None;
        *self.callbacks.progress.try_borrow_mut().map_err(|_| Self::busy())? = None;
        *self.callbacks.eval.try_borrow_mut().map_err(|_| Self::busy())? = None;
        Ok(())
    }

    /// Makes this trainer one rank of a data-parallel run over `comm` (None
    /// detaches). Call it on every rank before plan(), the first step and
    /// load_checkpoint(). The global batch is then per-device batch x world
    /// size x gradient_accumulation_steps; losses and counts are reduced, so
    /// every rank logs the same values. The borrow keeps the communicator
    /// alive as long as the trainer.
    pub fn set_comm(&self, comm: Option<&'a Comm<'_>>) -> Result<()> {
        let p = comm.map_or(ptr::null_mut(), |c| c.as_ptr());
        // SAFETY: valid handles; the communicator outlives the trainer ('a).
        guarded(|| check(unsafe { sys::ftq_trainer_set_comm(self.as_ptr(), p) }))
    }

    /// The memory plan as JSON text.
    pub fn plan(&self) -> Result<String> {
        let mut out = ptr::null_mut();
        // SAFETY: valid handle; the text is ours to free.
        check(unsafe { sys::ftq_trainer_plan(self.as_ptr(), &mut out) })?;
        Ok(take_text(out, None))
    }

    /// Trains until the planned steps are done: Ok(true) when complete,
    /// Ok(false) when a callback stopped it (train() again continues).
    pub fn train(&self) -> Result<bool> {
        // SAFETY: valid handle.
        match guarded(|| check(unsafe { sys::ftq_trainer_train(self.as_ptr()) })) {
            Ok(()) => Ok(true),
            Err(e) if e.status == Status::CANCELLED => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// One optimizer step.
    pub fn step(&self) -> Result<Step> {
        let mut loss = f64::NAN;
        // SAFETY: valid handle and out-pointer.
        match guarded(|| check(unsafe { sys::ftq_trainer_step(self.as_ptr(), &mut loss) })) {
            Ok(()) => Ok(Step { loss, stop_requested: false }),
            Err(e) if e.status == Status::CANCELLED => Ok(Step { loss, stop_requested: true }),
            Err(e) => Err(e),
        }
    }

    /// Token-weighted mean loss over the eval split.
    pub fn evaluate(&self) -> Result<f64> {
        let mut v = 0.0;
        // SAFETY: valid handle and out-pointer.
        guarded(|| check(unsafe { sys::ftq_trainer_evaluate(self.as_ptr(), &mut v) }))?;
        Ok(v)
    }

    /// Writes a training checkpoint folder.
    pub fn save_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let p = cpath(dir.as_ref())?;
        // SAFETY: valid handle and C string.
        guarded(|| check(unsafe { sys::ftq_trainer_save_checkpoint(self.as_ptr(), p.as_ptr()) }))
    }

    /// Restores a checkpoint.
    pub fn load_checkpoint(&self, dir: impl AsRef<Path>) -> Result<()> {
        let p = cpath(dir.as_ref())?;
        // SAFETY: valid handle and C string.
        guarded(|| check(unsafe { sys::ftq_trainer_load_checkpoint(self.as_ptr(), p.as_ptr()) }))
    }

    /// Optimizer steps done.
    pub fn global_step(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_trainer_global_step(self.as_ptr()) }
    }

    /// Steps the run takes.
    pub fn total_steps(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_trainer_total_steps(self.as_ptr()) }
    }

    /// Steps skipped for non-finite loss or gradients.
    pub fn nonfinite_steps(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_trainer_nonfinite_steps(self.as_ptr()) }
    }

    /// The trainer's optimizer (owned by the trainer).
    pub fn optimizer(&self) -> Optimizer<'_> {
        // SAFETY: valid handle; the optimizer lives as long as the trainer.
        let p = unsafe { sys::ftq_trainer_optimizer(self.as_ptr()) };
        Optimizer { ptr: NonNull::new(p).expect("trainer without optimizer"), owned: false, _lora: PhantomData }
    }
}

impl Drop for Trainer<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once (callbacks dropped after).
        unsafe { sys::ftq_trainer_destroy(self.ptr.as_ptr()) }
    }
}
