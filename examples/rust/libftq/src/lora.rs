//! LoRA adapters (ftq_lora.h).
use std::marker::PhantomData;
use std::os::raw::{c_char, c_int};
use std::ptr::{self, NonNull};

use crate::error::{check, guarded, Result};
use crate::model::Model;
use crate::options::{opt_ptr, Options};
use crate::util::{cstring, text};
use libftq_sys as sys;

/// A LoRA adapter on a model (which it borrows). Options of group "lora"
/// (PEFT's LoraConfig names: r, lora_alpha, lora_dropout, target_modules,
/// use_rslora, init_lora_weights, bias). New adapters are inactive.
pub struct Lora<'m> {
    ptr: NonNull<sys::ftq_lora>,
    _model: PhantomData<&'m ()>,
}

/// Which tensor: by index (PEFT's parameter order) or by PEFT name.
pub trait TensorKey {
    /// The tensor's index in `lora`.
    fn index(&self, lora: &Lora) -> Result<usize>;
}

impl TensorKey for usize {
    fn index(&self, _: &Lora) -> Result<usize> {
        Ok(*self)
    }
}

impl TensorKey for &str {
    fn index(&self, lora: &Lora) -> Result<usize> {
        lora.find_tensor(self)
    }
}

impl<'m> Lora<'m> {
    /// Creates an adapter named `name` ("default" if None) with initial
    /// values drawn from `seed`.
    pub fn new(model: &'m Model<'_>, name: Option<&str>, opts: Option<&Options>, seed: u64) -> Result<Lora<'m>> {
        let n = name.map(|s| cstring(s, "adapter name")).transpose()?;
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles, optional C string, out-pointer.
            check(unsafe {
                sys::ftq_lora_create(model.as_ptr(), n.as_ref().map_or(ptr::null(), |c| c.as_ptr()), opt_ptr(opts),
                                     seed, &mut out)
            })?;
            Ok(Lora { ptr: NonNull::new(out).expect("ftq_lora_create returned NULL"), _model: PhantomData })
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_lora {
        self.ptr.as_ptr()
    }

    /// Makes this the model's active adapter (or deactivates it).
    pub fn set_active(&self, active: bool) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_lora_set_active(self.as_ptr(), active as c_int) })
    }

    /// Whether this is its model's active adapter.
    pub fn is_active(&self) -> bool {
        // SAFETY: valid handle.
        unsafe { sys::ftq_lora_is_active(self.as_ptr()) != 0 }
    }

    /// The adapter's name.
    pub fn name(&self) -> String {
        // SAFETY: valid handle; the text is copied.
        text(unsafe { sys::ftq_lora_name(self.as_ptr()) })
    }

    /// Trainable parameters (elements of every A and B).
    pub fn num_parameters(&self) -> Result<i64> {
        let mut v = 0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_lora_num_parameters(self.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// lora_alpha / r (or / sqrt(r) with use_rslora).
    pub fn scaling(&self) -> Result<f64> {
        let mut v = 0.0;
        // SAFETY: valid handle and out-pointer.
        check(unsafe { sys::ftq_lora_scaling(self.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// Number of tensors (two per adapted projection).
    pub fn tensor_count(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_lora_tensor_count(self.as_ptr()) }
    }

    /// (PEFT name, [rows, cols]) of tensor `index`.
    pub fn tensor_info(&self, index: usize) -> Result<(String, [usize; 2])> {
        let mut name = [0 as c_char; 256];
        let mut shape = [0i64; 2];
        // SAFETY: buffers of the sizes given.
        check(unsafe {
            sys::ftq_lora_tensor_info(self.as_ptr(), index, name.as_mut_ptr(), name.len(), shape.as_mut_ptr())
        })?;
        Ok((text(name.as_ptr()), [shape[0] as usize, shape[1] as usize]))
    }

    /// Every tensor's PEFT name, in index order.
    pub fn tensor_names(&self) -> Result<Vec<String>> {
        (0..self.tensor_count()).map(|i| Ok(self.tensor_info(i)?.0)).collect()
    }

    /// Index of the tensor with this PEFT name.
    pub fn find_tensor(&self, name: &str) -> Result<usize> {
        let n = cstring(name, "tensor name")?;
        let mut v = 0;
        // SAFETY: valid handle, C string, out-pointer.
        check(unsafe { sys::ftq_lora_find_tensor(self.as_ptr(), n.as_ptr(), &mut v) })?;
        Ok(v)
    }

    fn numel(&self, index: usize) -> Result<usize> {
        let [r, c] = self.tensor_info(index)?.1;
        Ok(r * c)
    }

    /// A tensor's values (fp32, row-major).
    pub fn get_tensor(&self, key: impl TensorKey) -> Result<Vec<f32>> {
        let i = key.index(self)?;
        let mut v = vec![0f32; self.numel(i)?];
        // SAFETY: v holds the tensor's elements.
        check(unsafe { sys::ftq_lora_get_tensor(self.as_ptr(), i, v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }

    /// Overwrites a tensor's values (their count must match).
    pub fn set_tensor(&self, key: impl TensorKey, values: &[f32]) -> Result<()> {
        let i = key.index(self)?;
        // SAFETY: values holds values.len() floats; the library checks the count.
        check(unsafe { sys::ftq_lora_set_tensor(self.as_ptr(), i, values.as_ptr(), values.len()) })
    }

    /// A tensor's accumulated gradient.
    pub fn get_grad(&self, key: impl TensorKey) -> Result<Vec<f32>> {
        let i = key.index(self)?;
        let mut v = vec![0f32; self.numel(i)?];
        // SAFETY: v holds the tensor's elements.
        check(unsafe { sys::ftq_lora_get_grad(self.as_ptr(), i, v.as_mut_ptr(), v.len()) })?;
        Ok(v)
    }

    /// Sets every gradient to zero.
    pub fn zero_grad(&self) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_lora_zero_grad(self.as_ptr()) })
    }
}

impl Drop for Lora<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once (before its model: lifetimes).
        unsafe { sys::ftq_lora_destroy(self.ptr.as_ptr()) }
    }
}
