/* ftq_dataset: JSONL(.gz) rows -> formatted text -> token ids and loss
 * masks (as TRL's SFTTrainer prepares them), train/eval split, packing, and
 * the per-epoch order and batches. Lines are read in chunks and each chunk
 * is parsed and tokenized on the context's thread pool; results are kept in
 * file order, so loading is deterministic whatever the thread count. */
#include "train/dataset.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/context.h"
#include "core/error.h"
#include "core/log.h"
#include "core/options.h"
#include "core/threads.h"
#include "io/jsonl.h"
#include "tok/tokenizer.h"
#include "train/sampler.h"

static const ftq_option_def data_option_defs[] = {
    {"dataset_text_field", "data", FTQ_OPTION_STRING, "text", 0, 0, NULL, 0,
     "JSONL field holding already formatted text (TRL SFTConfig.dataset_text_field)"},
    {"max_seq_length", "data", FTQ_OPTION_INT, "1024", 0, 1 << 24, NULL, 0,
     "tokens per example: longer rows are truncated, packed sequences are filled up to it; 0 = no limit (TRL max_length)"},
    {"truncation_mode", "data", FTQ_OPTION_STRING, "keep_start", 0, 0, "keep_start|keep_end", 0,
     "which end of a too long row to keep (without packing; TRL truncation_mode)"},
    {"packing", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "pack several rows into each sequence of max_seq_length tokens, keeping their boundaries (TRL packing)"},
    {"packing_strategy", "data", FTQ_OPTION_STRING, "bfd", 0, 0, "bfd|bfd_split|wrapped", 0,
     "bfd: best-fit decreasing, long rows cut; bfd_split: long rows split; wrapped: concatenate and cut (TRL)"},
    {"padding_free", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "join the examples of a batch into one row without padding (always on with bfd packing, as TRL)"},
    {"completion_only_loss", "data", FTQ_OPTION_BOOL, "true", 0, 0, NULL, 0,
     "train only on completions of prompt/completion and instruction/output rows, and after response_template"},
    {"assistant_only_loss", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "train only on assistant turns (and their end-of-turn token) of messages rows (TRL)"},
    {"response_template", "data", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text rows: train only on what follows this text, e.g. \"[/INST]\" (TRL DataCollatorForCompletionOnlyLM)"},
    {"instruction_template", "data", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text rows with response_template: a trained part ends where this text starts, e.g. \"[INST]\" (multi-turn)"},
    {"add_special_tokens", "data", FTQ_OPTION_BOOL, "true", 0, 0, NULL, 0,
     "text and prompt rows get the tokenizer's default special tokens (BOS), as TRL tokenizes them"},
    {"skip_malformed_rows", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "skip and count malformed JSONL lines instead of failing"},
    {"test_size", "data", FTQ_OPTION_FLOAT, "0", 0, 1, NULL, 0,
     "fraction of rows held out as the eval split, chosen by data_seed (datasets' train_test_split); 1 = all"},
    {"per_device_train_batch_size", "data", FTQ_OPTION_INT, "8", 1, 1 << 20, NULL, 0,
     "examples per training batch (transformers TrainingArguments)"},
    {"per_device_eval_batch_size", "data", FTQ_OPTION_INT, "8", 1, 1 << 20, NULL, 0,
     "examples per evaluation batch (transformers TrainingArguments)"},
    {"gradient_accumulation_steps", "data", FTQ_OPTION_INT, "1", 1, 1 << 20, NULL, 0,
     "micro-batches per optimizer step; group_by_length groups batch size x this (transformers)"},
    {"group_by_length", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "order training examples in megabatches sorted by length, longest batch first (transformers)"},
    {"dataloader_drop_last", "data", FTQ_OPTION_BOOL, "false", 0, 0, NULL, 0,
     "drop the last incomplete batch of an epoch (transformers)"},
    {"pad_to_multiple_of", "data", FTQ_OPTION_INT, "0", 0, 1 << 16, NULL, 0,
     "round the padded sequence length up to a multiple of this; 0 = no rounding (TRL)"},
    {"seed", "data", FTQ_OPTION_INT, "42", 0, 4294967295.0, NULL, 0,
     "random seed of the run (transformers TrainingArguments.seed)"},
    {"data_seed", "data", FTQ_OPTION_INT, "-1", -1, 4294967295.0, NULL, 0,
     "seed of the data order and split; -1 = use seed (transformers)"},
};
FTQ_OPTION_TABLE(data, data_option_defs);

/* ---- example storage ------------------------------------------------------------ */

static int reserve64(int64_t **p, int64_t n) {
  int64_t *q = realloc(*p, (size_t)n * sizeof *q);
  if (!q) return 0;
  *p = q;
  return 1;
}

ftq_status ftq_examples_append(ftq_examples *e, const int32_t *ids, const uint8_t *mask, int64_t len,
                               const int32_t *seg_len, int64_t n_segs, int64_t line) {
  if (e->n + 2 > e->cap) {
    int64_t c = e->cap ? e->cap * 2 : 256;
    if (!reserve64(&e->start, c + 1) || !reserve64(&e->seg_first, c + 1) || !reserve64(&e->line, c))
      return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for data set examples");
    e->cap = c;
    if (e->n == 0) e->start[0] = e->seg_first[0] = 0;
  }
  if (e->n_tokens + len > e->cap_tokens) {
    int64_t c = e->cap_tokens ? e->cap_tokens : 4096;
    while (c < e->n_tokens + len) c *= 2;
    int32_t *ni = realloc(e->ids, (size_t)c * sizeof *ni);
    if (ni) e->ids = ni;
    uint8_t *nm = realloc(e->mask, (size_t)c);
    if (nm) e->mask = nm;
    if (!ni || !nm) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for %lld data set tokens", (long long)c);
    e->cap_tokens = c;
  }
  if (e->n_segs + n_segs > e->cap_segs) {
    int64_t c = e->cap_segs ? e->cap_segs : 256;
    while (c < e->n_segs + n_segs) c *= 2;
    int32_t *ns = realloc(e->seg_len, (size_t)c * sizeof *ns);
    if (!ns) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for data set examples");
    e->seg_len = ns;
    e->cap_segs = c;
  }
  if (len) {
    memcpy(e->ids + e->n_tokens, ids, (size_t)len * sizeof *ids);
    memcpy(e->mask + e->n_tokens, mask, (size_t)len);
  }
  memcpy(e->seg_len + e->n_segs, seg_len, (size_t)n_segs * sizeof *seg_len);
  e->n_tokens += len;
  e->n_segs += n_segs;
  e->line[e->n] = line;
  e->n++;
  e->start[e->n] = e->n_tokens;
  e->seg_first[e->n] = e->n_segs;
  return FTQ_OK;
}

void ftq_examples_free(ftq_examples *e) {
  free(e->ids);
  free(e->mask);
  free(e->start);
  free(e->seg_first);
  free(e->seg_len);
  free(e->line);
  memset(e, 0, sizeof *e);
}

/* ---- row formatting ------------------------------------------------------------ */

typedef struct row_cfg {
  const ftq_tokenizer *tok;
  const char *text_field;
  int completion_only, assistant_only;
  unsigned enc_flags; /* for text and plain prompt rows */
  const char *response_template, *instruction_template;
  const char *bos, *eos; /* token texts ("" if none) */
} row_cfg;

typedef struct row_out {
  int32_t *ids;
  uint8_t *mask;
  size_t n;
  int no_completion;
  ftq_status st;
  char *err; /* message when st != FTQ_OK */
  int blank;
} row_out;

static const char ALPACA_INPUT[] =
    "Below is an instruction that describes a task, paired with an input that provides further context. Write a "
    "response that appropriately completes the request.\n\n### Instruction:\n%s\n\n### Input:\n%s\n\n### Response:\n";
static const char ALPACA_NO_INPUT[] =
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n%s\n\n### Response:\n";

static int ends_with(const char *s, size_t n, const char *suf) {
  size_t k = strlen(suf);
  return k > 0 && n >= k && memcmp(s + n - k, suf, k) == 0;
}

/* s + (eos unless s already ends with it), as TRL's add_eos. */
static char *with_eos(const char *s, size_t n, const char *eos, size_t *out_len) {
  size_t k = ends_with(s, n, eos) ? 0 : strlen(eos);
  char *r = ftq_malloc(n + k + 1, "row text");
  if (!r) return NULL;
  memcpy(r, s, n);
  memcpy(r + n, eos, k);
  r[n + k] = '\0';
  *out_len = n + k;
  return r;
}

/* mask[t] = 1 for tokens starting inside one of the sorted spans */
static void mask_spans(const int32_t *offs, size_t n, size_t (*spans)[2], size_t n_spans, uint8_t *mask) {
  size_t s = 0;
  for (size_t t = 0; t < n; t++) {
    size_t o = (size_t)offs[t];
    while (s < n_spans && spans[s][1] <= o) s++;
    mask[t] = s < n_spans && spans[s][0] <= o;
  }
}

static size_t common_prefix(const int32_t *a, size_t na, const int32_t *b, size_t nb) {
  size_t k = 0;
  while (k < na && k < nb && a[k] == b[k]) k++;
  return k;
}

static ftq_status alloc_mask(row_out *o) {
  o->mask = ftq_malloc(o->n ? o->n : 1, "loss mask");
  return o->mask ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
}

/* Text rows: completion spans after each response_template (to the next
 * instruction_template, or to the end); without instruction_template only
 * the last response_template counts (TRL's DataCollatorForCompletionOnlyLM). */
static ftq_status response_spans(const row_cfg *c, const char *s, size_t n, size_t (**spans)[2], size_t *ns) {
  *spans = NULL;
  *ns = 0;
  size_t rl = strlen(c->response_template), il = strlen(c->instruction_template), cap = 0;
  const char *p = s, *end = s + n;
  while (p < end) {
    const char *r = memmem(p, (size_t)(end - p), c->response_template, rl);
    if (!r) break;
    const char *a = r + rl, *b = end;
    if (il) {
      const char *q = memmem(a, (size_t)(end - a), c->instruction_template, il);
      if (q) b = q;
    }
    if (!il) *ns = 0; /* only the last one */
    if (*ns == cap) {
      cap = cap ? cap * 2 : 4;
      void *np = realloc(*spans, cap * sizeof **spans);
      if (!np) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory");
      *spans = np;
    }
    (*spans)[*ns][0] = (size_t)(a - s);
    (*spans)[(*ns)++][1] = (size_t)(b - s);
    p = b > a ? b : a;
  }
  return FTQ_OK;
}

static ftq_status row_text(const row_cfg *c, const char *text, size_t len, row_out *o) {
  size_t n;
  char *s = with_eos(text, len, c->eos, &n);
  if (!s) return FTQ_ERR_OUT_OF_MEMORY;
  int32_t *offs = NULL;
  ftq_status st = tok_encode(c->tok, s, n, c->enc_flags, &o->ids, &offs, &o->n);
  if (st == FTQ_OK) st = alloc_mask(o);
  if (st == FTQ_OK) {
    if (c->completion_only && c->response_template[0]) {
      size_t(*spans)[2], ns;
      st = response_spans(c, s, n, &spans, &ns);
      if (st == FTQ_OK) mask_spans(offs, o->n, spans, ns, o->mask);
      free(spans);
    } else {
      memset(o->mask, 1, o->n);
    }
  }
  free(offs);
  free(s);
  return st;
}

static ftq_status row_prompt_completion(const row_cfg *c, const char *p, size_t pl, const char *comp, size_t cl,
                                        row_out *o) {
  size_t cn;
  char *cc = with_eos(comp, cl, c->eos, &cn);
  char *full = cc ? ftq_malloc(pl + cn + 1, "row text") : NULL;
  if (!full) {
    free(cc);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  memcpy(full, p, pl);
  memcpy(full + pl, cc, cn);
  full[pl + cn] = '\0';
  int32_t *pids = NULL;
  size_t np = 0;
  ftq_status st = tok_encode(c->tok, p, pl, c->enc_flags, &pids, NULL, &np);
  if (st == FTQ_OK) st = tok_encode(c->tok, full, pl + cn, c->enc_flags, &o->ids, NULL, &o->n);
  if (st == FTQ_OK) st = alloc_mask(o);
  if (st == FTQ_OK) {
    /* as TRL: the completion starts where the two tokenizations diverge */
    size_t k = c->completion_only ? common_prefix(pids, np, o->ids, o->n) : 0;
    for (size_t t = 0; t < o->n; t++) o->mask[t] = t >= k;
  }
  free(pids);
  free(full);
  free(cc);
  return st;
}

/* messages: [{"role", "content"}] or [{"from", "value"}] */
static ftq_status get_messages(json_t *arr, const char *field, ftq_chat_message **msgs, size_t *n) {
  *msgs = NULL;
  *n = 0;
  if (!json_is_array(arr)) return ftq_error(FTQ_ERR_FORMAT, "'%s' is not a list of messages", field);
  size_t k = json_array_size(arr);
  ftq_chat_message *m = ftq_calloc(k ? k : 1, sizeof *m, "messages");
  if (!m) return FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < k; i++) {
    json_t *e = json_array_get(arr, i);
    json_t *r = json_object_get(e, "role"), *t = json_object_get(e, "content");
    if (!r && !t) {
      r = json_object_get(e, "from");
      t = json_object_get(e, "value");
    }
    if (!json_is_string(r) || !json_is_string(t)) {
      free(m);
      return ftq_error(FTQ_ERR_FORMAT, "%s[%zu] needs string \"role\" and \"content\" (or \"from\" and \"value\")",
                       field, i);
    }
    m[i] = (ftq_chat_message){json_string_value(r), json_string_value(t), json_string_length(r), json_string_length(t)};
  }
  *msgs = m;
  *n = k;
  return FTQ_OK;
}

static ftq_status row_messages(const row_cfg *c, ftq_chat_message *m, size_t n, size_t n_prompt, row_out *o) {
  const ftq_tokenizer *t = c->tok;
  ftq_chat_text full = {0};
  int32_t *offs = NULL, *pids = NULL;
  size_t np = 0;
  ftq_status st = ftq_chat_render(&t->chat, c->bos, c->eos, m, n, 0, &full);
  if (st == FTQ_OK) st = tok_encode(t, full.text, full.len, 0, &o->ids, &offs, &o->n);
  if (st == FTQ_OK) st = alloc_mask(o);
  if (st == FTQ_OK) {
    if (c->assistant_only) mask_spans(offs, o->n, full.spans, full.n_spans, o->mask);
    else memset(o->mask, 1, o->n);
  }
  if (st == FTQ_OK && n_prompt && c->completion_only) {
    /* conversational prompt/completion: the prompt rendered with the
     * generation prompt, then the common prefix, as TRL */
    ftq_chat_text pt = {0};
    st = ftq_chat_render(&t->chat, c->bos, c->eos, m, n_prompt, 1, &pt);
    if (st == FTQ_OK) st = tok_encode(t, pt.text, pt.len, 0, &pids, NULL, &np);
    ftq_chat_text_free(&pt);
    if (st == FTQ_OK) {
      size_t k = common_prefix(pids, np, o->ids, o->n);
      for (size_t i = 0; i < k; i++) o->mask[i] = 0;
    }
  }
  free(pids);
  free(offs);
  ftq_chat_text_free(&full);
  return st;
}

static const char *str_field(json_t *row, const char *key, size_t *len) {
  json_t *v = json_object_get(row, key);
  if (!json_is_string(v)) return NULL;
  *len = json_string_length(v);
  return json_string_value(v);
}

static ftq_status format_row(const row_cfg *c, json_t *row, row_out *o) {
  if (!json_is_object(row)) return ftq_error(FTQ_ERR_FORMAT, "the line is not a JSON object");
  size_t len, l2;
  const char *s;
  if ((s = str_field(row, c->text_field, &len))) return row_text(c, s, len, o);
  json_t *msgs = json_object_get(row, "messages");
  if (!msgs) msgs = json_object_get(row, "conversations");
  json_t *prompt = json_object_get(row, "prompt"), *comp = json_object_get(row, "completion");
  if (msgs || (json_is_array(prompt) && json_is_array(comp))) {
    ftq_chat_message *m = NULL, *mp = NULL, *mc = NULL;
    size_t n = 0, np = 0, nc = 0;
    ftq_status st;
    if (msgs) {
      st = get_messages(msgs, json_object_get(row, "messages") ? "messages" : "conversations", &m, &n);
    } else {
      st = get_messages(prompt, "prompt", &mp, &np);
      if (st == FTQ_OK) st = get_messages(comp, "completion", &mc, &nc);
      if (st == FTQ_OK && !(m = ftq_malloc((np + nc + 1) * sizeof *m, "messages"))) st = FTQ_ERR_OUT_OF_MEMORY;
      if (st == FTQ_OK) {
        memcpy(m, mp, np * sizeof *m);
        memcpy(m + np, mc, nc * sizeof *m);
        n = np + nc;
      }
    }
    if (st == FTQ_OK) st = row_messages(c, m, n, msgs ? 0 : np, o);
    free(m);
    free(mp);
    free(mc);
    return st;
  }
  const char *p;
  if ((p = str_field(row, "prompt", &len)) && (s = str_field(row, "completion", &l2)))
    return row_prompt_completion(c, p, len, s, l2, o);
  const char *ins, *out;
  size_t il, ol, inl = 0;
  if ((ins = str_field(row, "instruction", &il)) && (out = str_field(row, "output", &ol))) {
    const char *in = str_field(row, "input", &inl);
    const char *fmt = in && inl ? ALPACA_INPUT : ALPACA_NO_INPUT;
    size_t cap = strlen(fmt) + il + inl + 1;
    char *pr = ftq_malloc(cap, "row text");
    if (!pr) return FTQ_ERR_OUT_OF_MEMORY;
    int pn = in && inl ? snprintf(pr, cap, fmt, ins, in) : snprintf(pr, cap, fmt, ins);
    ftq_status st = row_prompt_completion(c, pr, (size_t)pn, out, ol, o);
    free(pr);
    return st;
  }
  return ftq_error(FTQ_ERR_FORMAT,
                   "no string field '%s' (dataset_text_field), no 'messages', 'prompt'/'completion' or "
                   "'instruction'/'output'", c->text_field);
}

/* ---- loading ----------------------------------------------------------------- */

#define CHUNK_LINES 512

typedef struct chunk {
  const row_cfg *cfg;
  char *text;       /* lines back to back, NUL-separated */
  size_t *off;      /* [n] line starts in text */
  size_t *len;
  int64_t *lineno;
  row_out *out;
  size_t n;
} chunk;

static int blank(const char *s, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r' && s[i] != '\n') return 0;
  return 1;
}

static void work(void *arg, size_t begin, size_t end, int worker) {
  chunk *c = arg;
  for (size_t i = begin; i < end; i++) {
    row_out *o = &c->out[i];
    memset(o, 0, sizeof *o);
    const char *line = c->text + c->off[i];
    if (blank(line, c->len[i])) {
      o->blank = 1;
      continue;
    }
    json_error_t err;
    json_t *row = json_loadb(line, c->len[i], JSON_REJECT_DUPLICATES, &err);
    if (!row) {
      o->st = ftq_error(FTQ_ERR_FORMAT, "invalid JSON at column %d: %s", err.column, err.text);
    } else {
      o->st = format_row(c->cfg, row, o);
      json_decref(row);
    }
    if (o->st != FTQ_OK) {
      o->err = ftq_strdup(ftq_last_error(), "error message");
      free(o->ids);
      free(o->mask);
      o->ids = NULL;
      o->mask = NULL;
    } else {
      o->no_completion = 1;
      for (size_t t = 0; t < o->n; t++)
        if (o->mask[t]) o->no_completion = 0;
    }
  }
}

static ftq_status read_rows(ftq_context *ctx, const char *path, const row_cfg *cfg, int skip, ftq_examples *rows,
                            int64_t *stats) {
  ftq_jsonl *r;
  FTQ_TRY(ftq_jsonl_open(path, &r));
  chunk c = {cfg, NULL, NULL, NULL, NULL, NULL, 0};
  size_t text_cap = 1 << 16, text_len = 0;
  c.text = ftq_malloc(text_cap, "data chunk");
  c.off = ftq_malloc(CHUNK_LINES * sizeof *c.off, "data chunk");
  c.len = ftq_malloc(CHUNK_LINES * sizeof *c.len, "data chunk");
  c.lineno = ftq_malloc(CHUNK_LINES * sizeof *c.lineno, "data chunk");
  c.out = ftq_calloc(CHUNK_LINES, sizeof *c.out, "data chunk");
  ftq_status st = (c.text && c.off && c.len && c.lineno && c.out) ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  int eof = 0, warned = 0;
  while (st == FTQ_OK && !eof) {
    c.n = 0;
    text_len = 0;
    while (c.n < CHUNK_LINES && text_len < (8u << 20)) {
      const char *line;
      size_t len;
      int64_t no;
      st = ftq_jsonl_next(r, &line, &len, &no, &eof);
      if (st != FTQ_OK || eof) break;
      if (text_len + len + 1 > text_cap) {
        while (text_len + len + 1 > text_cap) text_cap *= 2;
        char *nt = ftq_realloc(c.text, text_cap, "data chunk");
        if (!nt) {
          st = FTQ_ERR_OUT_OF_MEMORY;
          break;
        }
        c.text = nt;
      }
      memcpy(c.text + text_len, line, len);
      c.text[text_len + len] = '\0';
      c.off[c.n] = text_len;
      c.len[c.n] = len;
      c.lineno[c.n++] = no;
      text_len += len + 1;
    }
    if (st != FTQ_OK || c.n == 0) break;
    ftq_parallel_for(ctx ? ctx->pool : NULL, c.n, 8, work, &c);
    for (size_t i = 0; i < c.n; i++) {
      row_out *o = &c.out[i];
      if (st == FTQ_OK && !o->blank) {
        if (o->st != FTQ_OK) {
          if (!skip) {
            st = ftq_error(o->st, "%s:%lld: %s", path, (long long)c.lineno[i], o->err ? o->err : "malformed row");
          } else {
            stats[FTQ_DATA_SKIPPED]++;
            if (warned++ < 5)
              FTQ_LOGW(ctx, "%s:%lld: skipped: %s", path, (long long)c.lineno[i], o->err ? o->err : "malformed row");
          }
        } else if (o->n == 0) {
          stats[FTQ_DATA_EMPTY]++;
        } else {
          int32_t seg = (int32_t)o->n;
          if (o->n > INT32_MAX) st = ftq_error(FTQ_ERR_FORMAT, "%s:%lld: row too long", path, (long long)c.lineno[i]);
          else st = ftq_examples_append(rows, o->ids, o->mask, (int64_t)o->n, &seg, 1, c.lineno[i]);
          stats[FTQ_DATA_NO_COMPLETION] += o->no_completion;
        }
      }
      free(o->ids);
      free(o->mask);
      free(o->err);
      memset(o, 0, sizeof *o);
    }
  }
  free(c.text);
  free(c.off);
  free(c.len);
  free(c.lineno);
  free(c.out);
  ftq_jsonl_close(r);
  return st;
}

/* Rows of one split, truncated when asked (keep_end keeps the last tokens). */
static ftq_status take_rows(const ftq_examples *rows, const uint8_t *in_split, int want, int64_t max_len, int keep_end,
                            ftq_examples *out, int64_t *truncated) {
  for (int64_t i = 0; i < rows->n; i++) {
    if (in_split[i] != want) continue;
    int64_t len = ftq_example_len(rows, i), off = 0;
    if (max_len > 0 && len > max_len) {
      (*truncated)++;
      if (keep_end) off = len - max_len;
      len = max_len;
    }
    int32_t seg = (int32_t)len;
    FTQ_TRY(ftq_examples_append(out, rows->ids + rows->start[i] + off, rows->mask + rows->start[i] + off, len, &seg, 1,
                                rows->line[i]));
  }
  return FTQ_OK;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
  const unsigned char *b = p;
  for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001B3ull;
  return h;
}

ftq_status ftq_dataset_load(ftq_context *ctx, const ftq_tokenizer *tok, const char *path, const ftq_options *opts,
                            ftq_dataset **out) {
  FTQ_CHECK_ARG(tok && path && out, "ftq_dataset_load: NULL argument");
  *out = NULL;
  const char *text_field, *trunc, *strategy, *resp, *instr;
  int packing, padding_free, completion_only, assistant_only, add_special, skip, group, drop_last;
  double test_size;
  int64_t max_len, train_bs, eval_bs, ga, pad_mult, seed, data_seed;
  FTQ_TRY(ftq_options_get_string(opts, "dataset_text_field", &text_field));
  FTQ_TRY(ftq_options_get_string(opts, "truncation_mode", &trunc));
  FTQ_TRY(ftq_options_get_string(opts, "packing_strategy", &strategy));
  FTQ_TRY(ftq_options_get_string(opts, "response_template", &resp));
  FTQ_TRY(ftq_options_get_string(opts, "instruction_template", &instr));
  FTQ_TRY(ftq_options_get_bool(opts, "packing", &packing));
  FTQ_TRY(ftq_options_get_bool(opts, "padding_free", &padding_free));
  FTQ_TRY(ftq_options_get_bool(opts, "completion_only_loss", &completion_only));
  FTQ_TRY(ftq_options_get_bool(opts, "assistant_only_loss", &assistant_only));
  FTQ_TRY(ftq_options_get_bool(opts, "add_special_tokens", &add_special));
  FTQ_TRY(ftq_options_get_bool(opts, "skip_malformed_rows", &skip));
  FTQ_TRY(ftq_options_get_bool(opts, "group_by_length", &group));
  FTQ_TRY(ftq_options_get_bool(opts, "dataloader_drop_last", &drop_last));
  FTQ_TRY(ftq_options_get_float(opts, "test_size", &test_size));
  FTQ_TRY(ftq_options_get_int(opts, "max_seq_length", &max_len));
  FTQ_TRY(ftq_options_get_int(opts, "per_device_train_batch_size", &train_bs));
  FTQ_TRY(ftq_options_get_int(opts, "per_device_eval_batch_size", &eval_bs));
  FTQ_TRY(ftq_options_get_int(opts, "gradient_accumulation_steps", &ga));
  FTQ_TRY(ftq_options_get_int(opts, "pad_to_multiple_of", &pad_mult));
  FTQ_TRY(ftq_options_get_int(opts, "seed", &seed));
  FTQ_TRY(ftq_options_get_int(opts, "data_seed", &data_seed));
  if (packing && max_len <= 0)
    return ftq_error(FTQ_ERR_OPTION_RANGE, "option packing needs max_seq_length > 0 (the length sequences are filled to)");
  if (instr[0] && !resp[0])
    return ftq_error(FTQ_ERR_OPTION_RANGE, "option instruction_template is set but response_template is not");

  /* the tokenizer options this data set was given take effect for its rows */
  ftq_tokenizer view = *tok;
  const ftq_tokenizer *t = tok;
  int own_template = 0;
  {
    int is_set = 0;
    FTQ_TRY(ftq_options_is_set(opts, "chat_template", &is_set));
    if (is_set) { /* re-pick the template on a shallow copy */
      memset(&view.chat, 0, sizeof view.chat);
      ftq_options *only;
      const char *ct;
      FTQ_TRY(ftq_options_get_string(opts, "chat_template", &ct));
      FTQ_TRY(ftq_options_create(&only));
      ftq_status st = ftq_options_set_string(only, "chat_template", ct);
      /* tok_apply_options also re-reads special tokens: keep the tokenizer's */
      if (st == FTQ_OK) {
        int32_t b = view.bos_id, e = view.eos_id, p = view.pad_id, u = view.unk_id;
        st = tok_apply_options(&view, only);
        view.bos_id = b, view.eos_id = e, view.pad_id = p, view.unk_id = u;
      }
      ftq_options_destroy(only);
      if (st != FTQ_OK) {
        ftq_chat_template_clear(&view.chat);
        return st;
      }
      t = &view;
      own_template = 1;
    }
  }
  const char *bos = "", *eos = "";
  if (t->bos_id >= 0) bos = t->id_token[t->bos_id];
  if (t->eos_id >= 0) eos = t->id_token[t->eos_id];
  row_cfg cfg = {t, text_field, completion_only, assistant_only, add_special ? FTQ_ENCODE_ADD_SPECIAL : 0u,
                 resp, instr, bos, eos};

  ftq_dataset *ds = ftq_calloc(1, sizeof *ds, "data set");
  if (!ds) {
    if (own_template) ftq_chat_template_clear(&view.chat);
    return FTQ_ERR_OUT_OF_MEMORY;
  }
  ftq_examples rows = {0};
  uint8_t *which = NULL;
  ftq_status st = read_rows(ctx, path, &cfg, skip, &rows, ds->stats);
  if (own_template) ftq_chat_template_clear(&view.chat);

  /* train/eval split: the first ceil(test_size * n) of a seeded permutation */
  ds->order_seed = (uint64_t)(data_seed >= 0 ? data_seed : seed);
  if (st == FTQ_OK) {
    which = ftq_calloc((size_t)(rows.n ? rows.n : 1), 1, "data split");
    if (!which) st = FTQ_ERR_OUT_OF_MEMORY;
  }
  if (st == FTQ_OK && test_size > 0 && rows.n > 0) {
    int64_t n_test = (int64_t)ceil(test_size * (double)rows.n - 1e-9);
    int64_t *perm = ftq_malloc((size_t)rows.n * sizeof *perm, "data split");
    if (!perm) st = FTQ_ERR_OUT_OF_MEMORY;
    else {
      ftq_random_permutation(ds->order_seed, FTQ_RNG_STREAM_DATA_SPLIT, rows.n, perm);
      for (int64_t i = 0; i < n_test && i < rows.n; i++) which[perm[i]] = 1;
      free(perm);
    }
  }
  ftq_pack_strategy ps = strcmp(strategy, "wrapped") == 0 ? FTQ_PACK_WRAPPED
                         : strcmp(strategy, "bfd_split") == 0 ? FTQ_PACK_BFD_SPLIT : FTQ_PACK_BFD;
  for (int s = 0; s < 2 && st == FTQ_OK; s++) {
    ftq_examples tmp = {0};
    /* without packing: truncation_mode; bfd: cut to max_seq_length keeping
     * the start (TRL); bfd_split and wrapped: nothing is cut */
    int64_t cut = !packing || ps == FTQ_PACK_BFD ? max_len : 0;
    int keep_end = !packing && strcmp(trunc, "keep_end") == 0;
    st = take_rows(&rows, which, s, cut, keep_end, packing ? &tmp : &ds->split[s].ex, &ds->stats[FTQ_DATA_TRUNCATED]);
    if (st == FTQ_OK && packing) st = ftq_pack(&tmp, max_len, ps, &ds->split[s].ex);
    ftq_examples_free(&tmp);
  }
  ds->stats[FTQ_DATA_ROWS] = rows.n;
  free(which);
  ftq_examples_free(&rows);

  if (st == FTQ_OK) {
    ds->pad_id = t->pad_id >= 0 ? t->pad_id : t->eos_id >= 0 ? t->eos_id : 0;
    ds->group_by_length = group;
    ds->drop_last = drop_last;
    ds->packed = packing;
    ds->padding_free = padding_free || (packing && ps != FTQ_PACK_WRAPPED);
    ds->grouping_batch_size = train_bs * ga;
    ds->pad_to_multiple_of = pad_mult;
    ds->split[FTQ_SPLIT_TRAIN].batch_size = train_bs;
    ds->split[FTQ_SPLIT_EVAL].batch_size = eval_bs;
    uint64_t h = 0xCBF29CE484222325ull;
    for (int s = 0; s < 2 && st == FTQ_OK; s++) {
      ftq_split_state *sp = &ds->split[s];
      sp->cached_epoch = -1;
      sp->lengths = ftq_malloc((size_t)(sp->ex.n ? sp->ex.n : 1) * sizeof *sp->lengths, "data set lengths");
      sp->order = ftq_malloc((size_t)(sp->ex.n ? sp->ex.n : 1) * sizeof *sp->order, "data set order");
      if (!sp->lengths || !sp->order) {
        st = FTQ_ERR_OUT_OF_MEMORY;
        break;
      }
      for (int64_t i = 0; i < sp->ex.n; i++) sp->lengths[i] = (int32_t)ftq_example_len(&sp->ex, i);
      for (int64_t i = 0; i < sp->ex.n; i++) {
        ds->stats[FTQ_DATA_TOKENS] += sp->lengths[i];
        for (int64_t k = sp->ex.start[i]; k < sp->ex.start[i + 1]; k++) ds->stats[FTQ_DATA_LOSS_TOKENS] += sp->ex.mask[k];
      }
      h = fnv(h, &sp->ex.n, sizeof sp->ex.n);
      h = fnv(h, sp->ex.ids, (size_t)sp->ex.n_tokens * sizeof *sp->ex.ids);
      h = fnv(h, sp->ex.mask, (size_t)sp->ex.n_tokens);
      h = fnv(h, sp->ex.seg_len, (size_t)sp->ex.n_segs * sizeof *sp->ex.seg_len);
      h = fnv(h, &sp->batch_size, sizeof sp->batch_size);
    }
    int64_t settings[] = {ds->pad_id, group, drop_last, ds->padding_free, ds->grouping_batch_size, pad_mult,
                          (int64_t)ds->order_seed};
    ds->fingerprint = fnv(h, settings, sizeof settings);
  }
  if (st != FTQ_OK) {
    ftq_dataset_destroy(ds);
    return ftq_error_context(st, "loading data set '%s'", path);
  }
  FTQ_LOGI(ctx, "data set '%s': %lld rows -> %lld train / %lld eval examples%s, %lld tokens (%lld trained), "
           "%lld truncated, %lld skipped", path, (long long)ds->stats[FTQ_DATA_ROWS],
           (long long)ds->split[0].ex.n, (long long)ds->split[1].ex.n, packing ? " (packed)" : "",
           (long long)ds->stats[FTQ_DATA_TOKENS], (long long)ds->stats[FTQ_DATA_LOSS_TOKENS],
           (long long)ds->stats[FTQ_DATA_TRUNCATED], (long long)ds->stats[FTQ_DATA_SKIPPED]);
  if (ds->stats[FTQ_DATA_NO_COMPLETION])
    FTQ_LOGW(ctx, "data set '%s': %lld rows have no trained token (completion not found or cut off)", path,
             (long long)ds->stats[FTQ_DATA_NO_COMPLETION]);
  *out = ds;
  return FTQ_OK;
}

void ftq_dataset_destroy(ftq_dataset *ds) {
  if (!ds) return;
  for (int s = 0; s < 2; s++) {
    ftq_examples_free(&ds->split[s].ex);
    free(ds->split[s].lengths);
    free(ds->split[s].order);
  }
  free(ds);
}

/* ---- access, order, batches, cursor -------------------------------------------- */

static int split_ok(ftq_split s) { return s == FTQ_SPLIT_TRAIN || s == FTQ_SPLIT_EVAL; }

int64_t ftq_dataset_num_examples(const ftq_dataset *ds, ftq_split s) {
  return ds && split_ok(s) ? ds->split[s].ex.n : -1;
}

int64_t ftq_dataset_stat(const ftq_dataset *ds, ftq_dataset_stat_id which) {
  if (!ds || (int)which < 0 || (int)which >= (int)(sizeof ds->stats / sizeof ds->stats[0])) return -1;
  return ds->stats[which];
}

ftq_status ftq_dataset_example(const ftq_dataset *ds, ftq_split s, int64_t index, const int32_t **ids,
                               const uint8_t **loss_mask, int64_t *length, int64_t *line) {
  FTQ_CHECK_ARG(ds && split_ok(s) && ids && length, "ftq_dataset_example: bad argument");
  const ftq_examples *e = &ds->split[s].ex;
  FTQ_CHECK_ARG(index >= 0 && index < e->n, "ftq_dataset_example: index %lld out of range (0..%lld)", (long long)index,
                (long long)e->n - 1);
  *ids = e->ids + e->start[index];
  if (loss_mask) *loss_mask = e->mask + e->start[index];
  *length = ftq_example_len(e, index);
  if (line) *line = e->line[index];
  return FTQ_OK;
}

int64_t ftq_dataset_num_batches(const ftq_dataset *ds, ftq_split s) {
  if (!ds || !split_ok(s)) return -1;
  int64_t n = ds->split[s].ex.n, b = ds->split[s].batch_size;
  return ds->drop_last ? n / b : (n + b - 1) / b;
}

ftq_status ftq_dataset_order(ftq_dataset *ds, ftq_split s, int64_t epoch, const int64_t **order) {
  ftq_split_state *sp = &ds->split[s];
  int64_t key = s == FTQ_SPLIT_EVAL ? 0 : epoch;
  if (sp->cached_epoch != key) {
    int64_t n = sp->ex.n;
    if (s == FTQ_SPLIT_EVAL) {
      for (int64_t i = 0; i < n; i++) sp->order[i] = i;
    } else if (ds->group_by_length) {
      int64_t *perm = ftq_malloc((size_t)(n ? n : 1) * sizeof *perm, "data order");
      if (!perm) return FTQ_ERR_OUT_OF_MEMORY;
      ftq_random_permutation(ds->order_seed, FTQ_RNG_STREAM_DATA_ORDER + (uint64_t)epoch, n, perm);
      ftq_status st = ftq_length_grouped_indices(sp->lengths, n, ds->grouping_batch_size, perm, sp->order);
      free(perm);
      FTQ_TRY(st);
    } else {
      ftq_random_permutation(ds->order_seed, FTQ_RNG_STREAM_DATA_ORDER + (uint64_t)epoch, n, sp->order);
    }
    sp->cached_epoch = key;
  }
  *order = sp->order;
  return FTQ_OK;
}

ftq_status ftq_dataset_get_batch(ftq_dataset *ds, ftq_split s, int64_t epoch, int64_t index, ftq_batch *b) {
  FTQ_CHECK_ARG(ds && b && split_ok(s), "ftq_dataset_get_batch: bad argument");
  int64_t nb = ftq_dataset_num_batches(ds, s);
  FTQ_CHECK_ARG(epoch >= 0 && index >= 0 && index < nb, "ftq_dataset_get_batch: batch %lld of epoch %lld is out of "
                "range (%lld batches per epoch)", (long long)index, (long long)epoch, (long long)nb);
  const int64_t *order;
  FTQ_TRY(ftq_dataset_order(ds, s, epoch, &order));
  int64_t bs = ds->split[s].batch_size, lo = index * bs, hi = lo + bs;
  if (hi > ds->split[s].ex.n) hi = ds->split[s].ex.n;
  FTQ_TRY(ftq_collate(ds, s, order + lo, hi - lo, b));
  b->epoch = epoch;
  b->index = index;
  return FTQ_OK;
}

ftq_status ftq_dataset_next_batch(ftq_dataset *ds, ftq_batch *b) {
  FTQ_CHECK_ARG(ds && b, "ftq_dataset_next_batch: NULL argument");
  int64_t nb = ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN);
  if (nb <= 0) return ftq_error(FTQ_ERR_STATE, "the data set has no training batch");
  FTQ_TRY(ftq_dataset_get_batch(ds, FTQ_SPLIT_TRAIN, ds->cur_epoch, ds->cur_index, b));
  if (++ds->cur_index == nb) {
    ds->cur_index = 0;
    ds->cur_epoch++;
  }
  return FTQ_OK;
}

ftq_status ftq_dataset_cursor(const ftq_dataset *ds, int64_t *epoch, int64_t *index) {
  FTQ_CHECK_ARG(ds && epoch && index, "ftq_dataset_cursor: NULL argument");
  *epoch = ds->cur_epoch;
  *index = ds->cur_index;
  return FTQ_OK;
}

ftq_status ftq_dataset_seek(ftq_dataset *ds, int64_t epoch, int64_t index) {
  FTQ_CHECK_ARG(ds, "ftq_dataset_seek: NULL data set");
  int64_t nb = ftq_dataset_num_batches(ds, FTQ_SPLIT_TRAIN);
  FTQ_CHECK_ARG(epoch >= 0 && index >= 0 && index <= nb, "ftq_dataset_seek: position (epoch %lld, batch %lld) out of "
                "range (%lld batches per epoch)", (long long)epoch, (long long)index, (long long)nb);
  if (index == nb) {
    epoch++;
    index = 0;
  }
  ds->cur_epoch = epoch;
  ds->cur_index = index;
  return FTQ_OK;
}

uint64_t ftq_dataset_fingerprint(const ftq_dataset *ds) { return ds ? ds->fingerprint : 0; }

ftq_status ftq_dataset_set_grouping(ftq_dataset *ds, int64_t grouping_batch_size) {
  FTQ_CHECK_ARG(ds && grouping_batch_size >= 1, "ftq_dataset_set_grouping: bad arguments");
  if (ds->grouping_batch_size == grouping_batch_size) return FTQ_OK;
  ds->grouping_batch_size = grouping_batch_size;
  for (int s = 0; s < 2; s++) ds->split[s].cached_epoch = -1;
  /* the order depends on it, so checkpoints must tell the groupings apart */
  ds->fingerprint = fnv(ds->fingerprint, &grouping_batch_size, sizeof grouping_batch_size);
  return FTQ_OK;
}
