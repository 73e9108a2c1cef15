//! Stand-alone quantization (ftq_quantizer.h), like bitsandbytes.functional.
use std::marker::PhantomData;
use std::os::raw::{c_int, c_void};
use std::ptr::{self, NonNull};

use crate::context::Context;
use crate::error::{check, guarded, Error, Result, Status};
use crate::options::{opt_ptr, Options};
use libftq_sys as sys;

/// Quantization schemes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum QScheme {
    None = 0,
    Nf4 = 1,
    Fp4 = 2,
    Int8Sym = 3,
    Int8Asym = 4,
}

impl QScheme {
    fn from_c(v: c_int) -> QScheme {
        match v {
            1 => QScheme::Nf4,
            2 => QScheme::Fp4,
            3 => QScheme::Int8Sym,
            4 => QScheme::Int8Asym,
            _ => QScheme::None,
        }
    }
}

/// Host data in one of the three float formats (fp16 and bf16 as their bits).
#[derive(Clone, Copy, Debug)]
pub enum Floats<'a> {
    /// IEEE binary32.
    F32(&'a [f32]),
    /// IEEE binary16 bit patterns.
    F16(&'a [u16]),
    /// bfloat16 bit patterns.
    Bf16(&'a [u16]),
}

/// A writable host buffer in one of the three float formats.
#[derive(Debug)]
pub enum FloatsMut<'a> {
    /// IEEE binary32.
    F32(&'a mut [f32]),
    /// IEEE binary16 bit patterns.
    F16(&'a mut [u16]),
    /// bfloat16 bit patterns.
    Bf16(&'a mut [u16]),
}

impl<'a> From<&'a [f32]> for Floats<'a> {
    fn from(v: &'a [f32]) -> Self { Floats::F32(v) }
}
impl<'a> From<&'a Vec<f32>> for Floats<'a> {
    fn from(v: &'a Vec<f32>) -> Self { Floats::F32(v) }
}
impl<'a> From<&'a mut [f32]> for FloatsMut<'a> {
    fn from(v: &'a mut [f32]) -> Self { FloatsMut::F32(v) }
}
impl<'a> From<&'a mut Vec<f32>> for FloatsMut<'a> {
    fn from(v: &'a mut Vec<f32>) -> Self { FloatsMut::F32(v) }
}

impl Floats<'_> {
    fn parts(&self) -> (*const c_void, c_int, usize) {
        match self {
            Floats::F32(v) => (v.as_ptr() as *const c_void, sys::FTQ_FLOAT32, v.len()),
            Floats::F16(v) => (v.as_ptr() as *const c_void, sys::FTQ_FLOAT16, v.len()),
            Floats::Bf16(v) => (v.as_ptr() as *const c_void, sys::FTQ_BFLOAT16, v.len()),
        }
    }
}

impl FloatsMut<'_> {
    fn parts(&mut self) -> (*mut c_void, c_int, usize) {
        match self {
            FloatsMut::F32(v) => (v.as_mut_ptr() as *mut c_void, sys::FTQ_FLOAT32, v.len()),
            FloatsMut::F16(v) => (v.as_mut_ptr() as *mut c_void, sys::FTQ_FLOAT16, v.len()),
            FloatsMut::Bf16(v) => (v.as_mut_ptr() as *mut c_void, sys::FTQ_BFLOAT16, v.len()),
        }
    }
}

/// Error statistics of a quantization (ftq_qstat).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct QStats {
    /// Mean of (x - x')^2.
    pub mse: f64,
    /// 10 log10(sum x^2 / sum (x - x')^2).
    pub sqnr_db: f64,
    /// Largest |x - x'|.
    pub max_abs_error: f64,
    /// Of the non-zero x, the fraction whose x' is 0.
    pub zeroed_fraction: f64,
    /// Of the distinct x, the fraction whose x' equals another's.
    pub collapsed_fraction: f64,
    /// Fraction of elements clipped (INT8).
    pub clipped_fraction: f64,
}

fn check_shape(shape: &[i64], n: usize) -> Result<()> {
    let numel: i64 = shape.iter().product();
    if shape.is_empty() || numel < 0 || numel as usize != n {
        return Err(Error::new(Status::SHAPE, format!("shape {shape:?} does not hold the {n} values given")));
    }
    Ok(())
}

/// A quantization scheme on a context; options of group "quant"
/// (bnb_4bit_quant_type, bnb_4bit_use_double_quant, quant_blocksize,
/// load_in_8bit, int8_scheme, int8_granularity, int8_group_size, observer, ...).
pub struct Quantizer<'c> {
    ptr: NonNull<sys::ftq_quantizer>,
    _ctx: PhantomData<&'c Context>,
}

impl<'c> Quantizer<'c> {
    /// Creates a quantizer (defaults: FP4, block size 64, as bitsandbytes).
    pub fn new(ctx: &'c Context, opts: Option<&Options>) -> Result<Quantizer<'c>> {
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles and out-pointer.
            check(unsafe { sys::ftq_quantizer_create(ctx.as_ptr(), opt_ptr(opts), &mut out) })?;
            Ok(Quantizer { ptr: NonNull::new(out).expect("ftq_quantizer_create returned NULL"), _ctx: PhantomData })
        })
    }

    fn as_ptr(&self) -> *mut sys::ftq_quantizer {
        self.ptr.as_ptr()
    }

    /// The scheme.
    pub fn scheme(&self) -> QScheme {
        // SAFETY: valid handle.
        QScheme::from_c(unsafe { sys::ftq_quantizer_scheme(self.as_ptr()) })
    }

    /// Device bytes a tensor of this shape takes once quantized.
    pub fn quantized_bytes(&self, shape: &[i64]) -> Result<usize> {
        let mut v = 0;
        // SAFETY: shape holds shape.len() sizes.
        check(unsafe { sys::ftq_quantizer_quantized_bytes(self.as_ptr(), shape.len() as c_int, shape.as_ptr(), &mut v) })?;
        Ok(v)
    }

    /// Quantizes host data of the given shape (outermost first).
    pub fn quantize<'a>(&self, src: impl Into<Floats<'a>>, shape: &[i64]) -> Result<QTensor<'c>> {
        let (p, ty, n) = src.into().parts();
        check_shape(shape, n)?;
        let mut out = ptr::null_mut();
        // SAFETY: p holds n elements of type ty, which the shape covers.
        check(unsafe {
            sys::ftq_quantizer_quantize(self.as_ptr(), p, ty, sys::FTQ_HOST, shape.len() as c_int, shape.as_ptr(), &mut out)
        })?;
        Ok(QTensor { ptr: NonNull::new(out).expect("ftq_quantizer_quantize returned NULL"), _ctx: PhantomData })
    }

    /// dequantize(quantize(src)) into `dst` (same format and length).
    pub fn fake_quantize<'a, 'b>(&self, src: impl Into<Floats<'a>>, dst: impl Into<FloatsMut<'b>>, shape: &[i64])
                                 -> Result<()> {
        let (p, ty, n) = src.into().parts();
        let mut dst = dst.into();
        let (d, dty, dn) = dst.parts();
        check_shape(shape, n)?;
        if dty != ty || dn != n {
            return Err(Error::new(Status::SHAPE, "fake_quantize: dst must have src's format and length"));
        }
        // SAFETY: both buffers hold n elements of type ty.
        check(unsafe {
            sys::ftq_quantizer_fake_quantize(self.as_ptr(), p, d, ty, sys::FTQ_HOST, shape.len() as c_int, shape.as_ptr())
        })
    }

    /// Straight-through gradient of fake_quantize(): grad_out where src was
    /// not clipped, 0 where it was, written to `grad_in`.
    pub fn fake_quantize_backward<'a, 'b, 'g>(&self, src: impl Into<Floats<'a>>, grad_out: impl Into<Floats<'g>>,
                                              grad_in: impl Into<FloatsMut<'b>>, shape: &[i64]) -> Result<()> {
        let (p, ty, n) = src.into().parts();
        let (g, gty, gn) = grad_out.into().parts();
        let mut gi = grad_in.into();
        let (d, dty, dn) = gi.parts();
        check_shape(shape, n)?;
        if gty != ty || dty != ty || gn != n || dn != n {
            return Err(Error::new(Status::SHAPE, "fake_quantize_backward: buffers must share src's format and length"));
        }
        // SAFETY: all three buffers hold n elements of type ty.
        check(unsafe {
            sys::ftq_quantizer_fake_quantize_backward(self.as_ptr(), p, g, d, ty, sys::FTQ_HOST, shape.len() as c_int,
                                                      shape.as_ptr())
        })
    }

    /// Quantizes and measures what quantization did.
    pub fn error_stats<'a>(&self, src: impl Into<Floats<'a>>, shape: &[i64]) -> Result<QStats> {
        let (p, ty, n) = src.into().parts();
        check_shape(shape, n)?;
        let mut s = [0f64; 6];
        // SAFETY: p holds n elements; s holds 6 statistics.
        check(unsafe {
            sys::ftq_quantizer_error_stats(self.as_ptr(), p, ty, sys::FTQ_HOST, shape.len() as c_int, shape.as_ptr(),
                                           s.as_mut_ptr(), s.len())
        })?;
        Ok(QStats { mse: s[0], sqnr_db: s[1], max_abs_error: s[2], zeroed_fraction: s[3], collapsed_fraction: s[4],
                    clipped_fraction: s[5] })
    }

    /// Adds a batch of activations to the calibration observer.
    pub fn observe<'a>(&self, src: impl Into<Floats<'a>>) -> Result<()> {
        let (p, ty, n) = src.into().parts();
        // SAFETY: p holds n elements.
        check(unsafe { sys::ftq_quantizer_observe(self.as_ptr(), p, ty, sys::FTQ_HOST, n) })
    }

    /// (scale, zero point) of what was observed.
    pub fn calibration(&self) -> Result<(f32, i32)> {
        let (mut s, mut z) = (0f32, 0i32);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::ftq_quantizer_calibration(self.as_ptr(), &mut s, &mut z) })?;
        Ok((s, z))
    }

    /// Forgets everything observed.
    pub fn reset_calibration(&self) {
        // SAFETY: valid handle.
        unsafe { sys::ftq_quantizer_reset_calibration(self.as_ptr()) }
    }
}

impl Drop for Quantizer<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        unsafe { sys::ftq_quantizer_destroy(self.ptr.as_ptr()) }
    }
}

/// A quantized tensor on a context's device.
pub struct QTensor<'c> {
    ptr: NonNull<sys::ftq_qtensor>,
    _ctx: PhantomData<&'c Context>,
}

impl QTensor<'_> {
    fn as_ptr(&self) -> *mut sys::ftq_qtensor {
        self.ptr.as_ptr()
    }

    /// The scheme it was quantized with.
    pub fn scheme(&self) -> QScheme {
        // SAFETY: valid handle.
        QScheme::from_c(unsafe { sys::ftq_qtensor_scheme(self.as_ptr()) })
    }

    /// The logical (unquantized) shape.
    pub fn shape(&self) -> Vec<i64> {
        let mut s = [0i64; 4];
        // SAFETY: s holds 4 sizes.
        let n = unsafe { sys::ftq_qtensor_shape(self.as_ptr(), s.as_mut_ptr(), 4) };
        s[..n.clamp(0, 4) as usize].to_vec()
    }

    /// Number of logical elements.
    pub fn len(&self) -> usize {
        self.shape().iter().product::<i64>() as usize
    }

    /// Whether it holds no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Device bytes held.
    pub fn nbytes(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_qtensor_bytes(self.as_ptr()) }
    }

    /// Values clipped when quantized (0 for NF4 / FP4).
    pub fn clipped(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_qtensor_clipped(self.as_ptr()) }
    }

    /// The values as fp32.
    pub fn dequantize(&self) -> Result<Vec<f32>> {
        let mut v = vec![0f32; self.len()];
        self.dequantize_into(&mut v)?;
        Ok(v)
    }

    /// Writes the values into `dst` (at least len() elements, any format).
    pub fn dequantize_into<'a>(&self, dst: impl Into<FloatsMut<'a>>) -> Result<()> {
        let mut dst = dst.into();
        let (d, ty, n) = dst.parts();
        // SAFETY: d holds n elements of type ty; the library checks n.
        check(unsafe { sys::ftq_qtensor_dequantize_into(self.as_ptr(), d, ty, sys::FTQ_HOST, n) })
    }
}

impl Drop for QTensor<'_> {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        unsafe { sys::ftq_qtensor_destroy(self.ptr.as_ptr()) }
    }
}
