//! The compute context (ftq_context.h): a device, its memory accounting and its log.
use std::cell::RefCell;
use std::os::raw::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{self, NonNull};

use crate::error::{check, guarded, record_panic, Error, Result, Status};
use crate::options::{opt_ptr, Options};
use crate::util::{cstring, text};
use libftq_sys as sys;

/// Severity of a log message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Something failed.
    Error = 0,
    /// Something looks wrong but work goes on.
    Warn = 1,
    /// What was loaded, planned, measured.
    Info = 2,
    /// Details for developers.
    Debug = 3,
}

impl LogLevel {
    fn from_c(v: c_int) -> LogLevel {
        match v {
            0 => LogLevel::Error,
            1 => LogLevel::Warn,
            2 => LogLevel::Info,
            _ => LogLevel::Debug,
        }
    }
}

/// Kind of device behind a context.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceType {
    /// The plain-C fp32 reference backend.
    Cpu = 0,
    /// An NVIDIA GPU through the CUDA module.
    Cuda = 1,
}

/// Categories of memory a context accounts for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum MemoryCategory {
    All = 0,
    Weights = 1,
    Adapter = 2,
    Gradients = 3,
    Optimizer = 4,
    Activations = 5,
    Workspace = 6,
    Other = 7,
}

type LogFn = Box<dyn FnMut(LogLevel, &str)>;

unsafe extern "C" fn log_trampoline(user: *mut c_void, level: c_int, message: *const c_char) {
    // SAFETY: user is the context's boxed RefCell, alive while the context is.
    let cell = &*(user as *const RefCell<Option<LogFn>>);
    let msg = text(message);
    if let Ok(mut slot) = cell.try_borrow_mut() {
        if let Some(f) = slot.as_mut() {
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| f(LogLevel::from_c(level), &msg))) {
                record_panic(payload);
            }
        }
    }
}

/// A compute device ("cpu", "cuda", "cuda:N") and everything tied to it.
/// Objects made on a context borrow it, so it outlives them.
pub struct Context {
    ptr: NonNull<sys::ftq_context>,
    log: Box<RefCell<Option<LogFn>>>,
}

impl Context {
    /// Creates a context; options of group "context" (num_threads, log_level,
    /// cuda_workspace_mb).
    pub fn new(device: &str, opts: Option<&Options>) -> Result<Context> {
        let d = cstring(device, "device")?;
        let mut out = ptr::null_mut();
        // SAFETY: valid C string, optional options and out-pointer.
        check(unsafe { sys::ftq_context_create(d.as_ptr(), opt_ptr(opts), &mut out) })?;
        Ok(Context { ptr: NonNull::new(out).expect("ftq_context_create returned NULL"), log: Box::new(RefCell::new(None)) })
    }

    /// A CPU context with default options.
    pub fn cpu() -> Result<Context> {
        Context::new("cpu", None)
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_context {
        self.ptr.as_ptr()
    }

    /// Installs the log receiver. A panic inside it is resumed by the call that logged.
    pub fn set_log_callback(&self, f: impl FnMut(LogLevel, &str) + 'static) -> Result<()> {
        let mut slot = self.log.try_borrow_mut().map_err(|_| {
            Error::new(Status::STATE, "set_log_callback: called from inside the log callback")
        })?;
        *slot = Some(Box::new(f));
        let user = &*self.log as *const RefCell<Option<LogFn>> as *mut c_void;
        // SAFETY: the trampoline's user pointer lives as long as the context.
        check(unsafe { sys::ftq_context_set_log_callback(self.as_ptr(), Some(log_trampoline), user) })
    }

    /// Removes the log receiver.
    pub fn clear_log_callback(&self) -> Result<()> {
        let mut slot = self.log.try_borrow_mut().map_err(|_| {
            Error::new(Status::STATE, "clear_log_callback: called from inside the log callback")
        })?;
        // SAFETY: valid handle; NULL removes the callback.
        check(unsafe { sys::ftq_context_set_log_callback(self.as_ptr(), None, ptr::null_mut()) })?;
        *slot = None;
        Ok(())
    }

    /// Sets the most verbose level passed to the log callback.
    pub fn set_log_level(&self, level: LogLevel) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_context_set_log_level(self.as_ptr(), level as c_int) })
    }

    /// The kind of device.
    pub fn device_type(&self) -> DeviceType {
        // SAFETY: valid handle.
        if unsafe { sys::ftq_context_device_type(self.as_ptr()) } == sys::FTQ_DEVICE_CUDA {
            DeviceType::Cuda
        } else {
            DeviceType::Cpu
        }
    }

    /// A description of the device, e.g. "cpu (2 threads, openblas)".
    pub fn device_name(&self) -> String {
        // SAFETY: valid handle; the text lives with the context and is copied.
        text(unsafe { sys::ftq_context_device_name(self.as_ptr()) })
    }

    /// CPU worker threads the context uses.
    pub fn num_threads(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_context_num_threads(self.as_ptr()) }.max(0) as usize
    }

    /// (current, peak) bytes libftq objects on this context hold in a category.
    pub fn memory(&self, category: MemoryCategory) -> Result<(usize, usize)> {
        let (mut cur, mut peak) = (0, 0);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::ftq_context_memory(self.as_ptr(), category as c_int, &mut cur, &mut peak) })?;
        Ok((cur, peak))
    }

    /// (free, total) bytes of the device as the driver (or the OS) sees it.
    pub fn device_memory(&self) -> Result<(usize, usize)> {
        let (mut free, mut total) = (0, 0);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::ftq_context_device_memory(self.as_ptr(), &mut free, &mut total) })?;
        Ok((free, total))
    }

    /// Waits for all work queued on the device.
    pub fn synchronize(&self) -> Result<()> {
        // SAFETY: valid handle.
        guarded(|| check(unsafe { sys::ftq_context_synchronize(self.as_ptr()) }))
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once; borrowers are gone (lifetimes).
        unsafe { sys::ftq_context_destroy(self.ptr.as_ptr()) }
    }
}

/// Number of CUDA devices libftq can use (0 when CUDA is unavailable).
pub fn cuda_device_count() -> Result<usize> {
    let mut n = 0;
    // SAFETY: valid out-pointer.
    check(unsafe { sys::ftq_cuda_device_count(&mut n) })?;
    Ok(n.max(0) as usize)
}
