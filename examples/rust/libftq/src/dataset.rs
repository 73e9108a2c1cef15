//! Data sets and batches (ftq_dataset.h).
use std::os::raw::c_char;
use std::path::Path;
use std::ptr::{self, NonNull};

use crate::context::Context;
use crate::error::{check, guarded, Result};
use crate::options::{opt_ptr, Options};
use crate::tokenizer::Tokenizer;
use crate::util::{cpath, slice};
use libftq_sys as sys;

/// The label of positions outside the loss.
pub const IGNORE_INDEX: i32 = sys::FTQ_IGNORE_INDEX;

/// The two parts of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Split {
    /// Training examples.
    Train = 0,
    /// Held-out examples (`test_size`).
    Eval = 1,
}

/// Counters of a data set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum DatasetStat {
    Rows = 0,
    Skipped = 1,
    Truncated = 2,
    Tokens = 3,
    LossTokens = 4,
    NoCompletion = 5,
    Empty = 6,
}

/// One stored example, borrowed from its data set.
#[derive(Clone, Copy, Debug)]
pub struct Example<'d> {
    /// Token ids.
    pub ids: &'d [i32],
    /// 1 where the token is trained.
    pub loss_mask: &'d [u8],
    /// JSONL line (1-based) of its (first) row.
    pub line: i64,
}

/// A JSONL(.gz) data set tokenized as TRL's SFTTrainer does; options of
/// group "data" (max_seq_length, packing, test_size,
/// per_device_train_batch_size, group_by_length, ...).
pub struct Dataset {
    ptr: NonNull<sys::ftq_dataset>,
}

// SAFETY: the data set owns its data; it is not shared between threads (no Sync).
unsafe impl Send for Dataset {}

impl Dataset {
    /// Reads and tokenizes `path`. `ctx` (optional) tokenizes in parallel
    /// and receives the log; neither it nor the tokenizer is kept.
    pub fn load(ctx: Option<&Context>, tok: &Tokenizer, path: impl AsRef<Path>, opts: Option<&Options>)
                -> Result<Dataset> {
        let p = cpath(path.as_ref())?;
        let c = ctx.map_or(ptr::null_mut(), |c| c.as_ptr());
        guarded(|| {
            let mut out = ptr::null_mut();
            // SAFETY: valid handles, C string and out-pointer.
            check(unsafe { sys::ftq_dataset_load(c, tok.as_ptr(), p.as_ptr(), opt_ptr(opts), &mut out) })?;
            Ok(Dataset { ptr: NonNull::new(out).expect("ftq_dataset_load returned NULL") })
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_dataset {
        self.ptr.as_ptr()
    }

    /// Examples in a split.
    pub fn num_examples(&self, split: Split) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_dataset_num_examples(self.as_ptr(), split as i32) }.max(0) as usize
    }

    /// A counter.
    pub fn stat(&self, which: DatasetStat) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_dataset_stat(self.as_ptr(), which as i32) }
    }

    /// Example `index` of a split.
    pub fn example(&self, split: Split, index: usize) -> Result<Example<'_>> {
        let (mut ids, mut mask, mut len, mut line) = (ptr::null(), ptr::null(), 0i64, 0i64);
        // SAFETY: valid handle and out-pointers; the arrays live with the data set.
        check(unsafe {
            sys::ftq_dataset_example(self.as_ptr(), split as i32, index as i64, &mut ids, &mut mask, &mut len, &mut line)
        })?;
        let n = len.max(0) as usize;
        Ok(Example { ids: unsafe { slice(ids, n) }, loss_mask: unsafe { slice(mask, n) }, line })
    }

    /// Batches per epoch of a split.
    pub fn num_batches(&self, split: Split) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_dataset_num_batches(self.as_ptr(), split as i32) }.max(0) as usize
    }

    /// Fills `batch` with batch `index` of `epoch` of a split.
    pub fn get_batch(&mut self, split: Split, epoch: usize, index: usize, batch: &mut Batch) -> Result<()> {
        // SAFETY: valid handles.
        check(unsafe { sys::ftq_dataset_get_batch(self.as_ptr(), split as i32, epoch as i64, index as i64, batch.as_ptr()) })
    }

    /// Fills `batch` with the training batch at the cursor and advances it.
    pub fn next_batch(&mut self, batch: &mut Batch) -> Result<()> {
        // SAFETY: valid handles.
        check(unsafe { sys::ftq_dataset_next_batch(self.as_ptr(), batch.as_ptr()) })
    }

    /// (epoch, index) of the batch next_batch() returns next.
    pub fn cursor(&self) -> Result<(usize, usize)> {
        let (mut e, mut i) = (0i64, 0i64);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::ftq_dataset_cursor(self.as_ptr(), &mut e, &mut i) })?;
        Ok((e as usize, i as usize))
    }

    /// Moves the training cursor.
    pub fn seek(&mut self, epoch: usize, index: usize) -> Result<()> {
        // SAFETY: valid handle.
        check(unsafe { sys::ftq_dataset_seek(self.as_ptr(), epoch as i64, index as i64) })
    }

    /// 64-bit hash of everything that decides the batches.
    pub fn fingerprint(&self) -> u64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_dataset_fingerprint(self.as_ptr()) }
    }
}

impl Drop for Dataset {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        unsafe { sys::ftq_dataset_destroy(self.ptr.as_ptr()) }
    }
}

/// A batch of token arrays [rows * seq_len], refilled by Dataset calls; the
/// slices it hands out borrow it, so they cannot outlive a refill.
pub struct Batch {
    ptr: NonNull<sys::ftq_batch>,
}

// SAFETY: plain data owned by the handle.
unsafe impl Send for Batch {}

impl Batch {
    /// An empty batch.
    pub fn new() -> Result<Batch> {
        let mut out = ptr::null_mut();
        // SAFETY: valid out-pointer.
        check(unsafe { sys::ftq_batch_create(&mut out) })?;
        Ok(Batch { ptr: NonNull::new(out).expect("ftq_batch_create returned NULL") })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::ftq_batch {
        self.ptr.as_ptr()
    }

    /// Rows (1 when padding-free).
    pub fn rows(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_batch_rows(self.as_ptr()) }.max(0) as usize
    }

    /// Padded length of every row.
    pub fn seq_len(&self) -> usize {
        // SAFETY: valid handle.
        unsafe { sys::ftq_batch_seq_len(self.as_ptr()) }.max(0) as usize
    }

    fn array(&self, f: unsafe extern "C" fn(*const sys::ftq_batch) -> *const i32) -> &[i32] {
        // SAFETY: the arrays hold rows * seq_len values until the batch is refilled (&mut).
        unsafe { slice(f(self.as_ptr()), self.rows() * self.seq_len()) }
    }

    /// Token ids (pad on padding).
    pub fn input_ids(&self) -> &[i32] {
        self.array(sys::ftq_batch_input_ids)
    }
    /// Labels (IGNORE_INDEX where untrained).
    pub fn labels(&self) -> &[i32] {
        self.array(sys::ftq_batch_labels)
    }
    /// Position ids.
    pub fn position_ids(&self) -> &[i32] {
        self.array(sys::ftq_batch_position_ids)
    }
    /// Sequence index of each token within its row (-1 on padding).
    pub fn sequence_ids(&self) -> &[i32] {
        self.array(sys::ftq_batch_sequence_ids)
    }
    /// 1 on tokens, 0 on padding.
    pub fn attention_mask(&self) -> &[i32] {
        self.array(sys::ftq_batch_attention_mask)
    }

    /// (starts, lengths) of the sequences in the flattened arrays.
    pub fn sequences(&self) -> Result<(&[i32], &[i32])> {
        let (mut n, mut s, mut l) = (0i64, ptr::null(), ptr::null());
        // SAFETY: valid handle and out-pointers; arrays live until the refill.
        check(unsafe { sys::ftq_batch_sequences(self.as_ptr(), &mut n, &mut s, &mut l) })?;
        let n = n.max(0) as usize;
        Ok(unsafe { (slice(s, n), slice(l, n)) })
    }

    /// Non-padding tokens.
    pub fn num_tokens(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_batch_num_tokens(self.as_ptr()) }
    }

    /// Tokens the shifted loss counts.
    pub fn num_loss_tokens(&self) -> i64 {
        // SAFETY: valid handle.
        unsafe { sys::ftq_batch_num_loss_tokens(self.as_ptr()) }
    }

    /// Indices into the split of the batch's examples, in row order.
    pub fn example_indices(&self) -> &[i64] {
        // SAFETY: valid handle; the array lives until the refill.
        unsafe {
            let n = sys::ftq_batch_num_examples(self.as_ptr()).max(0) as usize;
            slice(sys::ftq_batch_example_indices(self.as_ptr()), n)
        }
    }

    /// (epoch, index) the batch was drawn from.
    pub fn position(&self) -> Result<(usize, usize)> {
        let (mut e, mut i) = (0i64, 0i64);
        // SAFETY: valid handle and out-pointers.
        check(unsafe { sys::ftq_batch_position(self.as_ptr(), &mut e, &mut i) })?;
        Ok((e as usize, i as usize))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: owned handle, destroyed once.
        unsafe { sys::ftq_batch_destroy(self.ptr.as_ptr()) }
    }
}

/// The example evaluator's comparison: equal after trimming ASCII white space.
pub fn exact_match(prediction: &str, reference: &str) -> bool {
    // SAFETY: both hold their lengths in bytes.
    unsafe {
        sys::ftq_dataset_exact_match(prediction.as_ptr() as *const c_char, prediction.len(),
                                     reference.as_ptr() as *const c_char, reference.len()) != 0
    }
}
