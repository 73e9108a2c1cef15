"""Tokenizer and chat templates (ftq_tokenizer.h), data sets and batches (ftq_dataset.h)."""
import ctypes
import enum
import math
import json
from collections import namedtuple

from . import _buffers
from ._core import Handle, check, construct, out_value
from ._lib import lib
from .options import options_arg


class SpecialToken(enum.IntEnum):
    """ftq_special_token."""
    BOS = 0
    EOS = 1
    PAD = 2
    UNK = 3


class EncodeFlag(enum.IntFlag):
    """ftq_encode_flag."""
    NONE = 0
    ADD_SPECIAL = 1
    ADD_BOS = 2
    ADD_EOS = 4
    SPECIAL_AS_TEXT = 8


class DecodeFlag(enum.IntFlag):
    """ftq_decode_flag."""
    NONE = 0
    SKIP_SPECIAL = 1


class Split(enum.IntEnum):
    """ftq_split."""
    TRAIN = 0
    EVAL = 1


class DatasetStat(enum.IntEnum):
    """ftq_dataset_stat_id."""
    ROWS = 0
    SKIPPED = 1
    TRUNCATED = 2
    TOKENS = 3
    LOSS_TOKENS = 4
    NO_COMPLETION = 5
    EMPTY = 6


IGNORE_INDEX = -100

Example = namedtuple("Example", "ids loss_mask line")
Example.__doc__ = "One stored example: token ids (list), loss mask (list of 0/1) and its JSONL line."


def _split(s):
    return Split[s.upper()] if isinstance(s, str) else Split(s)


def _utf8(text):
    return text.encode("utf-8") if isinstance(text, str) else bytes(text)


def _take_text(ptr, n=None):
    """Copies a libftq-allocated text and frees it."""
    try:
        return (ctypes.string_at(ptr.value, n) if n is not None else ctypes.string_at(ptr.value)).decode(
            "utf-8", "replace")
    finally:
        lib().ftq_free(ptr)


class Tokenizer(Handle):
    """A tokenizer from a model folder, a tokenizer.json(.gz) file or a GGUF
    file (options of group "tokenizer" as keywords: bos_token, eos_token,
    pad_token, unk_token, chat_template). Immutable: safe to share between
    threads."""

    _destroy_name = "ftq_tokenizer_destroy"

    def __init__(self, path, options=None, **kwargs):
        out = ctypes.c_void_p()
        with options_arg(options, kwargs) as o:
            check(lib().ftq_tokenizer_load(str(path).encode(), o, ctypes.byref(out)))
        self._init_handle(out.value)

    @classmethod
    def from_json(cls, text, options=None, **kwargs):
        """A tokenizer from tokenizer.json text (str or bytes)."""
        data = _utf8(text)
        out = ctypes.c_void_p()
        with options_arg(options, kwargs) as o:
            check(lib().ftq_tokenizer_load_json(data, len(data), o, ctypes.byref(out)))
        self = cls.__new__(cls)
        self._init_handle(out.value)
        return self

    def encode(self, text, flags=EncodeFlag.NONE, *, add_special_tokens=None):
        """Token ids (a list) of @p text (str or UTF-8 bytes).
        add_special_tokens=True is flags EncodeFlag.ADD_SPECIAL."""
        if add_special_tokens:
            flags |= EncodeFlag.ADD_SPECIAL
        data = _utf8(text)
        ids, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_encode(self, data, len(data), int(flags), ctypes.byref(ids), ctypes.byref(n)))
        try:
            return _buffers.int32_list(ids.value, n.value)
        finally:
            lib().ftq_free(ids)

    def encode_offsets(self, text, flags=EncodeFlag.NONE):
        """(ids, byte offsets of each token in the UTF-8 text)."""
        data = _utf8(text)
        ids, offs, n = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_encode_offsets(self, data, len(data), int(flags), ctypes.byref(ids),
                                                 ctypes.byref(offs), ctypes.byref(n)))
        try:
            return _buffers.int32_list(ids.value, n.value), _buffers.int32_list(offs.value, n.value)
        finally:
            lib().ftq_free(ids)
            lib().ftq_free(offs)

    def decode(self, ids, flags=DecodeFlag.NONE, *, skip_special_tokens=False):
        """Text of token ids (list, NumPy array or int32 buffer)."""
        if skip_special_tokens:
            flags |= DecodeFlag.SKIP_SPECIAL
        arr = _buffers.ids_input(ids)
        text, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_decode(self, arr.pointer, arr.n, int(flags), ctypes.byref(text), ctypes.byref(n)))
        return _take_text(text, n.value)

    def token_to_piece(self, token_id):
        """The bytes one token stands for in text (for streaming output)."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_token_to_piece(self, int(token_id), ctypes.byref(p), ctypes.byref(n)))
        return ctypes.string_at(p.value, n.value) if n.value else b""

    def id_to_token(self, token_id):
        """The vocabulary entry of a token as written in the file ("Ġthe")."""
        p, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_id_to_token(self, int(token_id), ctypes.byref(p), ctypes.byref(n)))
        return ctypes.string_at(p.value, n.value).decode("utf-8", "replace")

    def token_to_id(self, token):
        """The id of a vocabulary entry ("<|im_end|>")."""
        data = _utf8(token)
        return out_value(ctypes.c_int32, lib().ftq_tokenizer_token_to_id, self, data, len(data))

    @property
    def vocab_size(self):
        """One more than the largest token id."""
        return lib().ftq_tokenizer_vocab_size(self)

    def special_id(self, which):
        """Id of a SpecialToken ("bos", "eos", "pad", "unk"), or None if absent."""
        if isinstance(which, str):
            which = SpecialToken[which.upper()]
        v = lib().ftq_tokenizer_special_id(self, int(which))
        return None if v < 0 else v

    bos_id = property(lambda self: self.special_id(SpecialToken.BOS), doc="BOS id or None.")
    eos_id = property(lambda self: self.special_id(SpecialToken.EOS), doc="EOS id or None.")
    pad_id = property(lambda self: self.special_id(SpecialToken.PAD), doc="Padding id or None.")
    unk_id = property(lambda self: self.special_id(SpecialToken.UNK), doc="Unknown-token id or None.")

    def is_special(self, token_id):
        """True for special tokens (left out with skip_special_tokens)."""
        return bool(lib().ftq_tokenizer_is_special(self, int(token_id)))

    @property
    def chat_template(self):
        """"llama-2", "chatml", "llama-3", or None."""
        v = lib().ftq_tokenizer_chat_template(self)
        return v.decode() if v else None

    def apply_chat_template(self, messages, add_generation_prompt=False):
        """Renders a conversation (a list of {"role", "content"} dicts, or its
        JSON text) with the chat template, as transformers'
        apply_chat_template(tokenize=False). Encode the result with flags 0."""
        if not isinstance(messages, (str, bytes)):
            messages = json.dumps(list(messages))
        text, n = ctypes.c_void_p(), ctypes.c_size_t()
        check(lib().ftq_tokenizer_apply_chat_template(self, _utf8(messages), 1 if add_generation_prompt else 0,
                                                      ctypes.byref(text), ctypes.byref(n)))
        return _take_text(text, n.value)


class Batch(Handle):
    """A batch of token arrays [rows, seq_len], refilled by Dataset calls.
    The array properties return NumPy copies."""

    _destroy_name = "ftq_batch_destroy"

    def __init__(self):
        out = ctypes.c_void_p()
        check(lib().ftq_batch_create(ctypes.byref(out)))
        self._init_handle(out.value)

    @property
    def rows(self):
        """Number of rows (1 when padding-free)."""
        return lib().ftq_batch_rows(self)

    @property
    def seq_len(self):
        """Padded length of every row."""
        return lib().ftq_batch_seq_len(self)

    def _array(self, fn, dtype="int32", shape=None):
        np = _buffers.require_numpy("Batch arrays")
        if shape is None:
            shape = (self.rows, self.seq_len)
        n = math.prod(shape)
        ptr = fn(self)
        if not ptr or n <= 0:
            return np.zeros(shape, dtype=dtype)
        ctype = ctypes.c_int64 if dtype == "int64" else ctypes.c_int32
        return np.ctypeslib.as_array((ctype * n).from_address(ptr)).reshape(shape).copy()

    input_ids = property(lambda self: self._array(lib().ftq_batch_input_ids), doc="Token ids (pad on padding).")
    labels = property(lambda self: self._array(lib().ftq_batch_labels), doc="Labels (IGNORE_INDEX where untrained).")
    position_ids = property(lambda self: self._array(lib().ftq_batch_position_ids), doc="Position ids.")
    sequence_ids = property(lambda self: self._array(lib().ftq_batch_sequence_ids),
                            doc="Sequence index of each token within its row (-1 on padding).")
    attention_mask = property(lambda self: self._array(lib().ftq_batch_attention_mask),
                              doc="1 on tokens, 0 on padding.")

    def sequences(self):
        """(starts, lengths) of the sequences in the flattened [rows * seq_len] arrays, as lists."""
        n = ctypes.c_int64()
        starts, lengths = ctypes.c_void_p(), ctypes.c_void_p()
        check(lib().ftq_batch_sequences(self, ctypes.byref(n), ctypes.byref(starts), ctypes.byref(lengths)))
        return _buffers.int32_list(starts.value, n.value), _buffers.int32_list(lengths.value, n.value)

    @property
    def num_tokens(self):
        """Non-padding tokens."""
        return lib().ftq_batch_num_tokens(self)

    @property
    def num_loss_tokens(self):
        """Tokens the shifted loss counts (transformers' num_items_in_batch)."""
        return lib().ftq_batch_num_loss_tokens(self)

    @property
    def num_examples(self):
        """Examples in the batch."""
        return lib().ftq_batch_num_examples(self)

    @property
    def example_indices(self):
        """Indices into the split of the batch's examples, in row order (a list)."""
        n = self.num_examples
        ptr = lib().ftq_batch_example_indices(self)
        return list((ctypes.c_int64 * n).from_address(ptr)) if ptr and n > 0 else []

    @property
    def position(self):
        """(epoch, index) the batch was drawn from."""
        e, i = ctypes.c_int64(), ctypes.c_int64()
        check(lib().ftq_batch_position(self, ctypes.byref(e), ctypes.byref(i)))
        return e.value, i.value


class Dataset(Handle):
    """A JSONL(.gz) data set tokenized as TRL's SFTTrainer does (options of
    group "data" as keywords: max_seq_length, packing, test_size,
    per_device_train_batch_size, group_by_length, ...). @p ctx (may be None)
    parallelizes tokenization and receives the log."""

    _destroy_name = "ftq_dataset_destroy"

    def __init__(self, ctx, tokenizer, path, options=None, **kwargs):
        self.context = ctx
        with options_arg(options, kwargs) as o:
            construct(self, ctx, lib().ftq_dataset_load, ctx, tokenizer, str(path).encode(), o)

    def num_examples(self, split=Split.TRAIN):
        """Examples in a split."""
        return lib().ftq_dataset_num_examples(self, int(_split(split)))

    def __len__(self):
        return self.num_examples(Split.TRAIN)

    def stat(self, which):
        """A DatasetStat counter (or its name, e.g. "rows")."""
        if isinstance(which, str):
            which = DatasetStat[which.upper()]
        return lib().ftq_dataset_stat(self, int(which))

    @property
    def stats(self):
        """Every counter as a dict."""
        return {s.name.lower(): self.stat(s) for s in DatasetStat}

    def example(self, index, split=Split.TRAIN):
        """Example @p index of a split: Example(ids, loss_mask, line)."""
        ids, mask = ctypes.c_void_p(), ctypes.c_void_p()
        length, line = ctypes.c_int64(), ctypes.c_int64()
        check(lib().ftq_dataset_example(self, int(_split(split)), int(index), ctypes.byref(ids), ctypes.byref(mask),
                                        ctypes.byref(length), ctypes.byref(line)))
        n = length.value
        m = list((ctypes.c_uint8 * n).from_address(mask.value)) if n and mask.value else []
        return Example(_buffers.int32_list(ids.value, n), m, line.value)

    def num_batches(self, split=Split.TRAIN):
        """Batches per epoch of a split."""
        return lib().ftq_dataset_num_batches(self, int(_split(split)))

    def get_batch(self, index, epoch=0, split=Split.TRAIN, batch=None):
        """Batch @p index of epoch @p epoch, filled into @p batch (a new Batch if None)."""
        batch = batch if batch is not None else Batch()
        check(lib().ftq_dataset_get_batch(self, int(_split(split)), int(epoch), int(index), batch))
        return batch

    def next_batch(self, batch=None):
        """The training batch at the cursor; advances the cursor."""
        batch = batch if batch is not None else Batch()
        check(lib().ftq_dataset_next_batch(self, batch))
        return batch

    @property
    def cursor(self):
        """(epoch, index) of the batch next_batch() returns next."""
        e, i = ctypes.c_int64(), ctypes.c_int64()
        check(lib().ftq_dataset_cursor(self, ctypes.byref(e), ctypes.byref(i)))
        return e.value, i.value

    def seek(self, epoch, index):
        """Moves the training cursor."""
        check(lib().ftq_dataset_seek(self, int(epoch), int(index)))

    @property
    def fingerprint(self):
        """64-bit hash of everything that decides the batches."""
        return lib().ftq_dataset_fingerprint(self)


def exact_match(prediction, reference):
    """The example evaluator's comparison: equal after stripping ASCII white space."""
    p, r = _utf8(prediction), _utf8(reference)
    return bool(lib().ftq_dataset_exact_match(p, len(p), r, len(r)))
