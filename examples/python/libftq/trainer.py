"""Training (ftq_trainer.h) at three levels: the whole loop (Trainer.train),
one optimizer step (Trainer.step), or forward/backward plus an optimizer
step (Model.forward_backward + Optimizer.step)."""
import ctypes
import json
import math

from ._core import CancelledError, Handle, Status, call, check, construct, error, record_callback_exception
from ._lib import TRAINER_EVAL_CALLBACK, TRAINER_LOG_CALLBACK, TRAINER_PROGRESS_CALLBACK, lib
from .options import options_arg


class StopTraining(Exception):
    """Raise inside a trainer callback to stop training cleanly (like returning True)."""


def forward_backward(model, batch, *, seed=0, micro_step=0, num_items=0, options=None, **kwargs):
    """Forward and backward of @p model (its active adapter) on a Batch with
    labels, adding to the adapter's gradients. The loss is the batch's token
    losses summed and divided by @p num_items (the labelled tokens of the
    whole accumulated batch; <= 0: this batch's own). Options: gradient_checkpointing.
    Returns (loss, labelled tokens of this batch)."""
    loss, n = ctypes.c_double(), ctypes.c_int64()
    with options_arg(options, kwargs) as o:
        call(lib().ftq_model_forward_backward, model, batch, o, int(seed), int(micro_step), float(num_items),
             ctypes.byref(loss), ctypes.byref(n))
    return loss.value, n.value


def eval_batch(model, batch):
    """(sum of token losses, labelled tokens) of a Batch, without gradients or dropout."""
    loss, n = ctypes.c_double(), ctypes.c_int64()
    call(lib().ftq_model_eval_batch, model, batch, ctypes.byref(loss), ctypes.byref(n))
    return loss.value, n.value


class Optimizer(Handle):
    """AdamW over an adapter's parameters with clipping and the learning-rate
    schedule (options of group "optim": optim, learning_rate, adam_beta1,
    adam_beta2, adam_epsilon, weight_decay, max_grad_norm, lr_scheduler_type,
    warmup_ratio, warmup_steps), spanning @p total_steps updates."""

    _destroy_name = "ftq_optimizer_destroy"

    def __init__(self, lora, total_steps, options=None, **kwargs):
        self.lora = lora
        with options_arg(options, kwargs) as o:
            construct(self, lora, lib().ftq_optimizer_create, lora, o, int(total_steps))

    @classmethod
    def _view(cls, ptr, trainer):
        self = cls.__new__(cls)
        self.lora = trainer.lora
        self._init_handle(ptr, trainer, owned=False)
        return self

    def step(self):
        """One update from the accumulated gradients: (grad_norm before
        clipping, learning rate used, skipped for non-finite gradients)."""
        norm, lr, skipped = ctypes.c_double(), ctypes.c_double(), ctypes.c_int()
        call(lib().ftq_optimizer_step, self, ctypes.byref(norm), ctypes.byref(lr), ctypes.byref(skipped))
        return norm.value, lr.value, bool(skipped.value)

    @property
    def steps_done(self):
        """Updates done so far."""
        return lib().ftq_optimizer_steps_done(self)

    @property
    def learning_rate(self):
        """The learning rate of the next update."""
        return lib().ftq_optimizer_learning_rate(self)


def _stop(result):
    return 1 if result else 0


class Trainer(Handle):
    """transformers' Trainer loop for an adapter of a model on a Dataset
    (options of groups "train", "data" and "optim" as keywords:
    max_steps, num_train_epochs, learning_rate, lr_scheduler_type,
    logging_steps, eval_steps, save_steps, output_dir, ...). Makes the
    adapter active.

    Callbacks (each may stop training by returning True or raising
    StopTraining; any other exception stops training and is re-raised by
    train() / step()):
    - on_log(record: dict): every log record (loss, learning_rate, grad_norm,
      eval_loss, the final summary, ...);
    - on_progress(step, total_steps, loss, learning_rate, tokens_per_second): after every step;
    - on_eval(trainer, step) -> metric or None: at each evaluation, logged as eval_metric.
    """

    _destroy_name = "ftq_trainer_destroy"

    def __init__(self, model, lora, dataset, options=None, *, on_log=None, on_progress=None, on_eval=None,
                 **kwargs):
        self.model, self.lora, self.dataset = model, lora, dataset
        self._callbacks = {}
        self.stop_requested = False
        with options_arg(options, kwargs) as o:
            construct(self, [model, lora, dataset], lib().ftq_trainer_create, model, lora, dataset, o)
        if on_log is not None:
            self.set_log_callback(on_log)
        if on_progress is not None:
            self.set_progress_callback(on_progress)
        if on_eval is not None:
            self.set_eval_callback(on_eval)

    def _guard(self, fn, stop_value):
        """Wraps a user callback: StopTraining or True stops; other exceptions are kept and stop."""
        def run(*args):
            try:
                return _stop(fn(*args))
            except StopTraining:
                return 1
            except BaseException as e:  # noqa: B902 - must not unwind into C
                record_callback_exception(e)
                return stop_value
        return run

    def set_log_callback(self, fn):
        """on_log(record: dict) -> stop?; None removes it."""
        if fn is None:
            check(lib().ftq_trainer_set_log_callback(self, TRAINER_LOG_CALLBACK(), None))
            self._callbacks.pop("log", None)
            return
        run = self._guard(lambda raw: fn(json.loads(raw.decode("utf-8"))), 1)
        tramp = TRAINER_LOG_CALLBACK(lambda user, raw: run(raw))
        check(lib().ftq_trainer_set_log_callback(self, tramp, None))
        self._callbacks["log"] = tramp

    def set_progress_callback(self, fn):
        """on_progress(step, total_steps, loss, learning_rate, tokens_per_second) -> stop?; None removes it."""
        if fn is None:
            check(lib().ftq_trainer_set_progress_callback(self, TRAINER_PROGRESS_CALLBACK(), None))
            self._callbacks.pop("progress", None)
            return
        run = self._guard(fn, 1)
        tramp = TRAINER_PROGRESS_CALLBACK(lambda user, step, total, loss, lr, tps: run(step, total, loss, lr, tps))
        check(lib().ftq_trainer_set_progress_callback(self, tramp, None))
        self._callbacks["progress"] = tramp

    def set_eval_callback(self, fn):
        """on_eval(trainer, step) -> metric (a number) or None; None removes it.
        To stop training from it, raise StopTraining."""
        if fn is None:
            check(lib().ftq_trainer_set_eval_callback(self, TRAINER_EVAL_CALLBACK(), None))
            self._callbacks.pop("eval", None)
            return

        def body(step, metric_ptr):
            m = fn(self, step)
            if m is not None:
                metric_ptr[0] = float(m)
            return False

        run = self._guard(body, 1)
        tramp = TRAINER_EVAL_CALLBACK(lambda user, trainer, step, metric: run(step, metric))
        check(lib().ftq_trainer_set_eval_callback(self, tramp, None))
        self._callbacks["eval"] = tramp

    def set_comm(self, comm):
        """Makes this trainer one rank of a data-parallel run over @p comm (a
        Comm; None detaches). Call it on every rank before plan(), the first
        step and load_checkpoint(). The global batch is then
        per_device_train_batch_size x world size x gradient_accumulation_steps;
        loss and counts are reduced, so every rank logs the same values.
        Closing the communicator closes this trainer first."""
        call(lib().ftq_trainer_set_comm, self, comm)
        old = getattr(self, "comm", None)
        if old is not None and not old.closed:
            old._cell.children.discard(self._cell)
            self._cell.parents.remove(old._cell)
        if comm is not None:
            # the communicator must outlive the trainer: make it a parent
            self._cell.parents.append(comm._cell)
            comm._cell.children.add(self._cell)
        self.comm = comm

    def plan(self):
        """The memory plan as a dict (OutOfMemoryError naming the sizes when the run cannot fit)."""
        out = ctypes.c_void_p()
        check(lib().ftq_trainer_plan(self, ctypes.byref(out)))
        try:
            return json.loads(ctypes.string_at(out.value).decode("utf-8"))
        finally:
            lib().ftq_free(out)

    def _run(self, fn, *args):
        """A call that runs callbacks: a stop request is not an error."""
        try:
            call(fn, self, *args)
            return True
        except CancelledError:
            self.stop_requested = True
            return False

    def train(self):
        """Trains until the planned steps are done. Returns True when the run
        completed, False when a callback stopped it (the state stays
        consistent: save_checkpoint() and train() again continue it)."""
        self.stop_requested = False
        return self._run(lib().ftq_trainer_train)

    def step(self):
        """One optimizer step; returns its loss. A callback's stop request sets
        `stop_requested` (the step itself was done). StateError once the run is complete."""
        self.stop_requested = False
        loss = ctypes.c_double(math.nan)
        self._run(lib().ftq_trainer_step, ctypes.byref(loss))
        return loss.value

    def evaluate(self):
        """Token-weighted mean loss over the eval split (StateError without one)."""
        v = ctypes.c_double()
        call(lib().ftq_trainer_evaluate, self, ctypes.byref(v))
        return v.value

    def save_checkpoint(self, path):
        """Writes a training checkpoint folder (atomically)."""
        call(lib().ftq_trainer_save_checkpoint, self, str(path).encode())

    def load_checkpoint(self, path):
        """Restores a checkpoint; training then continues bit for bit."""
        call(lib().ftq_trainer_load_checkpoint, self, str(path).encode())

    @property
    def global_step(self):
        """Optimizer steps done."""
        return lib().ftq_trainer_global_step(self)

    @property
    def total_steps(self):
        """Steps the run takes."""
        return lib().ftq_trainer_total_steps(self)

    @property
    def nonfinite_steps(self):
        """Steps skipped for non-finite loss or gradients."""
        return lib().ftq_trainer_nonfinite_steps(self)

    @property
    def optimizer(self):
        """The trainer's Optimizer (owned by the trainer)."""
        ptr = lib().ftq_trainer_optimizer(self)
        if not ptr:
            raise error(int(Status.INVALID_ARGUMENT))
        return Optimizer._view(ptr, self)
