/* Loading Hugging Face tokenizer.json (and tokenizer_config.json) with
 * jansson. Only the pieces Llama-family tokenizers use are accepted; any
 * other model, normalizer, pre-tokenizer, post-processor or decoder is an
 * FTQ_ERR_UNSUPPORTED error that names it. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "io/jsonl.h"
#include "tok/tokenizer.h"
#include "tok/unicode.h"

/* The split patterns the hand-written matchers implement (pretok.c). */
static const char RE_GPT2[] = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char RE_LLAMA3[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";
static const char RE_QWEN2[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
    "\\s+(?!\\S)|\\s+";

static const char *jstr(json_t *obj, const char *key) {
  json_t *v = json_object_get(obj, key);
  return json_is_string(v) ? json_string_value(v) : NULL;
}
static int jbool(json_t *obj, const char *key, int def) {
  json_t *v = json_object_get(obj, key);
  return json_is_boolean(v) ? json_is_true(v) : def;
}

static ftq_status unsupported(const ftq_tokenizer *t, const char *what, const char *name, const char *supported) {
  return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s '%s' is not supported (supported: %s)", t->source, what,
                   name ? name : "(no type)", supported);
}

/* A {"String": s} pattern; Regex patterns are unsupported here. */
static ftq_status string_pattern(ftq_tokenizer *t, json_t *pat, const char *where, const char **s, size_t *len) {
  json_t *str = json_object_get(pat, "String");
  if (json_is_string(str)) {
    *s = json_string_value(str);
    *len = json_string_length(str);
    return FTQ_OK;
  }
  const char *re = jstr(pat, "Regex");
  return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: %s with a regex pattern (\"%s\") is not supported (only string patterns)",
                   t->source, where, re ? re : "?");
}

/* A Replace step (normalizer or decoder): {"pattern": {"String": a}, "content": b}. */
static ftq_status parse_replace(ftq_tokenizer *t, json_t *n, const char *where, char **a, size_t *alen, char **b,
                                size_t *blen) {
  const char *pat = NULL;
  size_t plen = 0;
  FTQ_TRY(string_pattern(t, json_object_get(n, "pattern"), where, &pat, &plen));
  json_t *c = json_object_get(n, "content");
  if (!json_is_string(c) || plen == 0)
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s needs a non-empty pattern and a content", t->source, where);
  *alen = plen;
  *a = ftq_tok_strndup(pat, plen);
  *blen = json_string_length(c);
  *b = ftq_tok_strndup(json_string_value(c), *blen);
  if (!*a || !*b) {
    free(*a);
    free(*b);
    *a = *b = NULL;
    return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "%s: out of memory", t->source);
  }
  return FTQ_OK;
}

typedef ftq_status (*step_parser)(ftq_tokenizer *t, json_t *n);

/* null -> nothing; {"type": "Sequence", <key>: [...]} -> each in turn;
 * anything else -> parse_one. */
static ftq_status parse_steps(ftq_tokenizer *t, json_t *n, const char *key, step_parser parse_one) {
  if (!n || json_is_null(n)) return FTQ_OK;
  const char *type = jstr(n, "type");
  if (!type || strcmp(type, "Sequence") != 0) return parse_one(t, n);
  size_t i;
  json_t *it;
  json_array_foreach(json_object_get(n, key), i, it) FTQ_TRY(parse_steps(t, it, key, parse_one));
  return FTQ_OK;
}

/* ---- normalizer ---- */
static ftq_status parse_normalizer_one(ftq_tokenizer *t, json_t *n) {
  const char *type = jstr(n, "type");
  if (t->n_norms >= TOK_MAX_STEPS) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: too many normalizers", t->source);
  tok_norm *s = &t->norms[t->n_norms];
  memset(s, 0, sizeof *s);
  if (type && strcmp(type, "Prepend") == 0) {
    json_t *p = json_object_get(n, "prepend");
    if (!json_is_string(p)) return ftq_error(FTQ_ERR_FORMAT, "%s: Prepend normalizer without 'prepend'", t->source);
    s->type = TOK_NORM_PREPEND;
    s->alen = json_string_length(p);
    s->a = ftq_tok_strndup(json_string_value(p), s->alen);
    if (!s->a) return FTQ_ERR_OUT_OF_MEMORY;
  } else if (type && strcmp(type, "Replace") == 0) {
    FTQ_TRY(parse_replace(t, n, "Replace normalizer", &s->a, &s->alen, &s->b, &s->blen));
    s->type = TOK_NORM_REPLACE;
  } else if (type && strcmp(type, "NFC") == 0) {
    s->type = TOK_NORM_NFC;
  } else {
    return unsupported(t, "normalizer", type, "Sequence, Prepend, Replace (string pattern), NFC");
  }
  t->n_norms++;
  return FTQ_OK;
}

static ftq_status parse_prepend_scheme(ftq_tokenizer *t, json_t *n, tok_prepend *out) {
  const char *ps = jstr(n, "prepend_scheme");
  if (ps) {
    if (strcmp(ps, "always") == 0) *out = TOK_PREPEND_ALWAYS;
    else if (strcmp(ps, "first") == 0) *out = TOK_PREPEND_FIRST;
    else if (strcmp(ps, "never") == 0) *out = TOK_PREPEND_NEVER;
    else return unsupported(t, "Metaspace prepend_scheme", ps, "always, first, never");
  } else {
    *out = jbool(n, "add_prefix_space", 1) ? TOK_PREPEND_ALWAYS : TOK_PREPEND_NEVER; /* older files */
  }
  return FTQ_OK;
}

static ftq_status replacement_char(ftq_tokenizer *t, json_t *n, char *rep, size_t *rep_len) {
  const char *r = jstr(n, "replacement");
  if (!r) r = "\xE2\x96\x81";
  size_t l = strlen(r), cl;
  if (l == 0 || l > 4 || (ftq_utf8_decode((const unsigned char *)r, l, &cl, NULL), cl != l))
    return ftq_error(FTQ_ERR_FORMAT, "%s: Metaspace replacement must be one character", t->source);
  memcpy(rep, r, l);
  *rep_len = l;
  return FTQ_OK;
}

/* ---- pre-tokenizer ---- */
static ftq_status parse_pre_one(ftq_tokenizer *t, json_t *n) {
  const char *type = jstr(n, "type");
  if (t->n_pres >= TOK_MAX_STEPS) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: too many pre-tokenizers", t->source);
  tok_pre *p = &t->pres[t->n_pres];
  memset(p, 0, sizeof *p);
  if (type && strcmp(type, "ByteLevel") == 0) {
    p->type = TOK_PRE_BYTELEVEL;
    p->add_prefix_space = jbool(n, "add_prefix_space", 1);
    p->use_regex = jbool(n, "use_regex", 1);
    p->regex = TOK_RE_GPT2;
    t->byte_level = 1;
  } else if (type && strcmp(type, "Split") == 0) {
    json_t *pat = json_object_get(n, "pattern");
    const char *re = jstr(pat, "Regex");
    const char *behavior = jstr(n, "behavior");
    if (!re) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: Split pre-tokenizer with a string pattern is not supported", t->source);
    if (strcmp(re, RE_GPT2) == 0) p->regex = TOK_RE_GPT2;
    else if (strcmp(re, RE_LLAMA3) == 0) p->regex = TOK_RE_LLAMA3;
    else if (strcmp(re, RE_QWEN2) == 0) p->regex = TOK_RE_QWEN2;
    else
      return ftq_error(FTQ_ERR_UNSUPPORTED,
                       "%s: Split pre-tokenizer regex \"%s\" is not supported (supported: the GPT-2, Llama-3 and Qwen2 "
                       "patterns)", t->source, re);
    if (!behavior || strcmp(behavior, "Isolated") != 0 || jbool(n, "invert", 0))
      return unsupported(t, "Split behavior", behavior, "Isolated without invert");
    p->type = TOK_PRE_SPLIT;
  } else if (type && strcmp(type, "Digits") == 0) {
    p->type = TOK_PRE_DIGITS;
    p->individual_digits = jbool(n, "individual_digits", 0);
  } else if (type && strcmp(type, "Metaspace") == 0) {
    p->type = TOK_PRE_METASPACE;
    FTQ_TRY(replacement_char(t, n, p->rep, &p->rep_len));
    FTQ_TRY(parse_prepend_scheme(t, n, &p->prepend_scheme));
    p->split = jbool(n, "split", 1);
  } else {
    return unsupported(t, "pre-tokenizer", type, "Sequence, ByteLevel, Split (GPT-2/Llama-3/Qwen2 regex), Digits, Metaspace");
  }
  t->n_pres++;
  return FTQ_OK;
}

/* ---- decoder ---- */
static ftq_status parse_decoder_one(ftq_tokenizer *t, json_t *n) {
  const char *type = jstr(n, "type");
  if (t->n_decs >= TOK_MAX_STEPS) return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: too many decoders", t->source);
  tok_dec *d = &t->decs[t->n_decs];
  memset(d, 0, sizeof *d);
  if (type && strcmp(type, "ByteLevel") == 0) {
    d->type = TOK_DEC_BYTELEVEL;
  } else if (type && strcmp(type, "Metaspace") == 0) {
    char rep[8];
    size_t rl;
    FTQ_TRY(replacement_char(t, n, rep, &rl));
    FTQ_TRY(parse_prepend_scheme(t, n, &d->prepend_scheme));
    d->type = TOK_DEC_METASPACE;
    d->a = ftq_tok_strndup(rep, rl);
    d->alen = rl;
    if (!d->a) return FTQ_ERR_OUT_OF_MEMORY;
  } else if (type && strcmp(type, "Replace") == 0) {
    FTQ_TRY(parse_replace(t, n, "Replace decoder", &d->a, &d->alen, &d->b, &d->blen));
    d->type = TOK_DEC_REPLACE;
  } else if (type && strcmp(type, "ByteFallback") == 0) {
    d->type = TOK_DEC_BYTEFALLBACK;
  } else if (type && strcmp(type, "Fuse") == 0) {
    d->type = TOK_DEC_FUSE;
  } else if (type && strcmp(type, "Strip") == 0) {
    const char *c = jstr(n, "content");
    size_t cl = c ? strlen(c) : 0, used = 0;
    if (!cl) return ftq_error(FTQ_ERR_FORMAT, "%s: Strip decoder without 'content'", t->source);
    d->content = ftq_utf8_decode((const unsigned char *)c, cl, &used, NULL);
    json_t *st = json_object_get(n, "start"), *sp = json_object_get(n, "stop");
    d->start = json_is_integer(st) ? (int)json_integer_value(st) : 0;
    d->stop = json_is_integer(sp) ? (int)json_integer_value(sp) : 0;
    if (d->start < 0 || d->stop < 0 || d->start > 1024 || d->stop > 1024)
      return ftq_error(FTQ_ERR_FORMAT, "%s: Strip decoder counts out of range", t->source);
    d->type = TOK_DEC_STRIP;
  } else {
    return unsupported(t, "decoder", type, "Sequence, ByteLevel, Metaspace, Replace (string pattern), ByteFallback, Fuse, Strip");
  }
  t->n_decs++;
  return FTQ_OK;
}

/* ---- post-processor: the single-sequence template ---- */
static ftq_status parse_post_one(ftq_tokenizer *t, json_t *n) {
  const char *type = jstr(n, "type");
  if (type && strcmp(type, "ByteLevel") == 0) return FTQ_OK; /* offsets only */
  if (!type || strcmp(type, "TemplateProcessing") != 0)
    return unsupported(t, "post-processor", type, "TemplateProcessing, ByteLevel, Sequence");
  json_t *single = json_object_get(n, "single"), *specials = json_object_get(n, "special_tokens");
  if (!json_is_array(single)) return ftq_error(FTQ_ERR_FORMAT, "%s: TemplateProcessing without 'single'", t->source);
  int seen_seq = 0;
  t->n_prefix = t->n_suffix = 0;
  size_t i;
  json_t *it;
  json_array_foreach(single, i, it) {
    json_t *sp = json_object_get(it, "SpecialToken");
    if (json_object_get(it, "Sequence")) {
      seen_seq = 1;
      continue;
    }
    const char *name = jstr(sp, "id");
    json_t *entry = name ? json_object_get(specials, name) : NULL;
    json_t *ids = json_object_get(entry, "ids");
    if (!json_is_array(ids))
      return ftq_error(FTQ_ERR_FORMAT, "%s: TemplateProcessing special token '%s' has no ids", t->source,
                       name ? name : "?");
    size_t k;
    json_t *idv;
    json_array_foreach(ids, k, idv) {
      int32_t *arr = seen_seq ? t->suffix_ids : t->prefix_ids;
      int *cnt = seen_seq ? &t->n_suffix : &t->n_prefix;
      if (*cnt >= 8 || !json_is_integer(idv))
        return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: TemplateProcessing template is too long", t->source);
      arr[(*cnt)++] = (int32_t)json_integer_value(idv);
    }
  }
  return FTQ_OK;
}

/* ---- model ---- */
static ftq_status parse_model(ftq_tokenizer *t, json_t *m) {
  if (!json_is_object(m)) return ftq_error(FTQ_ERR_FORMAT, "%s: no 'model' object", t->source);
  const char *type = jstr(m, "type");
  json_t *vocab = json_object_get(m, "vocab"), *merges = json_object_get(m, "merges");
  if (type ? strcmp(type, "BPE") != 0 : !merges) return unsupported(t, "model", type, "BPE");
  if (!json_is_object(vocab) || !json_is_array(merges))
    return ftq_error(FTQ_ERR_FORMAT, "%s: BPE model needs a 'vocab' object and a 'merges' array", t->source);
  json_t *dropout = json_object_get(m, "dropout");
  if (json_is_number(dropout) && json_number_value(dropout) > 0)
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: BPE dropout is not supported (training-time randomness)", t->source);
  const char *csp = jstr(m, "continuing_subword_prefix"), *eow = jstr(m, "end_of_word_suffix");
  if ((csp && *csp) || (eow && *eow))
    return ftq_error(FTQ_ERR_UNSUPPORTED, "%s: BPE continuing_subword_prefix / end_of_word_suffix are not supported",
                     t->source);
  t->byte_fallback = jbool(m, "byte_fallback", 0);
  t->fuse_unk = jbool(m, "fuse_unk", 0);
  t->ignore_merges = jbool(m, "ignore_merges", 0);

  FTQ_TRY(ftq_strmap_init(&t->vocab, json_object_size(vocab)));
  FTQ_TRY(ftq_strmap_init(&t->tokens, json_object_size(vocab) + 256));
  FTQ_TRY(ftq_pairmap_init(&t->merges, json_array_size(merges)));
  const char *key;
  json_t *val;
  size_t klen;
  json_object_keylen_foreach(vocab, key, klen, val) {
    if (!json_is_integer(val))
      return ftq_error(FTQ_ERR_FORMAT, "%s: vocabulary entry \"%.*s\" is not an integer id", t->source, (int)klen, key);
    json_int_t id = json_integer_value(val);
    if (id < 0 || id >= (1 << 30)) return ftq_error(FTQ_ERR_FORMAT, "%s: token id %lld out of range", t->source, (long long)id);
    FTQ_TRY(tok_add_vocab(t, key, klen, (int32_t)id));
  }
  const char *unk = jstr(m, "unk_token");
  if (unk) {
    int32_t id;
    if (!ftq_strmap_get(&t->tokens, unk, strlen(unk), &id))
      return ftq_error(FTQ_ERR_FORMAT, "%s: unk_token '%s' is not in the vocabulary", t->source, unk);
    t->unk_model = id;
  }
  size_t i;
  json_t *it;
  json_array_foreach(merges, i, it) {
    if (i >= (size_t)INT32_MAX) return ftq_error(FTQ_ERR_FORMAT, "%s: too many merges", t->source);
    if (json_is_string(it)) {
      const char *s = json_string_value(it);
      size_t len = json_string_length(it);
      const char *sp = memchr(s, ' ', len);
      if (!sp || memchr(sp + 1, ' ', len - (size_t)(sp + 1 - s)))
        return ftq_error(FTQ_ERR_FORMAT, "%s: merge %zu \"%s\" is not two tokens separated by one space", t->source, i, s);
      FTQ_TRY(tok_add_merge(t, s, (size_t)(sp - s), sp + 1, len - (size_t)(sp + 1 - s), (int32_t)i));
    } else if (json_is_array(it) && json_array_size(it) == 2 && json_is_string(json_array_get(it, 0)) &&
               json_is_string(json_array_get(it, 1))) {
      json_t *a = json_array_get(it, 0), *b = json_array_get(it, 1);
      FTQ_TRY(tok_add_merge(t, json_string_value(a), json_string_length(a), json_string_value(b),
                            json_string_length(b), (int32_t)i));
    } else {
      return ftq_error(FTQ_ERR_FORMAT, "%s: merge %zu is neither \"a b\" nor [\"a\", \"b\"]", t->source, i);
    }
  }
  return FTQ_OK;
}

static ftq_status parse_added(ftq_tokenizer *t, json_t *list) {
  size_t i;
  json_t *it;
  json_array_foreach(list, i, it) {
    json_t *id = json_object_get(it, "id"), *content = json_object_get(it, "content");
    if (!json_is_integer(id) || !json_is_string(content))
      return ftq_error(FTQ_ERR_FORMAT, "%s: added_tokens[%zu] needs an integer 'id' and a string 'content'", t->source, i);
    json_int_t v = json_integer_value(id);
    if (v < 0 || v >= (1 << 30)) return ftq_error(FTQ_ERR_FORMAT, "%s: added token id %lld out of range", t->source, (long long)v);
    FTQ_TRY(tok_add_added(t, json_string_value(content), json_string_length(content), (int32_t)v,
                          jbool(it, "special", 0), jbool(it, "lstrip", 0), jbool(it, "rstrip", 0),
                          jbool(it, "single_word", 0), jbool(it, "normalized", !jbool(it, "special", 0))));
  }
  return FTQ_OK;
}

ftq_status tok_load_hf_json(const char *text, size_t len, const char *source, ftq_tokenizer **out) {
  *out = NULL;
  json_error_t err;
  json_t *root = json_loadb(text, len, JSON_ALLOW_NUL, &err);
  if (!root)
    return ftq_error(FTQ_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", source, err.line, err.column, err.text);
  ftq_tokenizer *t = NULL;
  ftq_status st = tok_create_empty(source, &t);
  if (st == FTQ_OK && !json_is_object(root)) st = ftq_error(FTQ_ERR_FORMAT, "%s: not a JSON object", source);
  /* the pre-tokenizer and decoder tell whether the vocabulary is byte-level,
   * which the vocabulary parser needs to know */
  json_t *dec = json_object_get(root, "decoder");
  if (st == FTQ_OK) st = parse_steps(t, json_object_get(root, "normalizer"), "normalizers", parse_normalizer_one);
  if (st == FTQ_OK) st = parse_steps(t, json_object_get(root, "pre_tokenizer"), "pretokenizers", parse_pre_one);
  if (st == FTQ_OK) st = parse_steps(t, dec, "decoders", parse_decoder_one);
  if (st == FTQ_OK) t->has_decoder = dec && !json_is_null(dec);
  if (st == FTQ_OK)
    for (int i = 0; i < t->n_decs; i++)
      if (t->decs[i].type == TOK_DEC_BYTELEVEL) t->byte_level = 1;
  if (st == FTQ_OK) st = parse_steps(t, json_object_get(root, "post_processor"), "processors", parse_post_one);
  if (st == FTQ_OK) st = parse_model(t, json_object_get(root, "model"));
  if (st == FTQ_OK) st = parse_added(t, json_object_get(root, "added_tokens"));
  if (st == FTQ_OK) st = tok_finish(t);
  json_decref(root);
  if (st != FTQ_OK) {
    ftq_tokenizer_destroy(t);
    return st;
  }
  *out = t;
  return FTQ_OK;
}

/* ---- tokenizer_config.json ---- */

/* "bos_token": "<s>" or {"content": "<s>", ...}; null leaves the id alone. */
static ftq_status config_token(ftq_tokenizer *t, json_t *cfg, const char *key, int32_t *id, const char *path) {
  json_t *v = json_object_get(cfg, key);
  if (!v || json_is_null(v)) return FTQ_OK;
  const char *s = json_is_string(v) ? json_string_value(v) : jstr(v, "content");
  if (!s) return ftq_error(FTQ_ERR_FORMAT, "%s: '%s' is neither a string nor a token object", path, key);
  if (!ftq_strmap_get(&t->tokens, s, strlen(s), id))
    return ftq_error(FTQ_ERR_FORMAT, "%s: %s \"%s\" is not in the vocabulary", path, key, s);
  return FTQ_OK;
}

ftq_status tok_apply_hf_config(ftq_tokenizer *t, const char *path) {
  char *text;
  size_t len;
  FTQ_TRY(ftq_read_text_file(path, &text, &len));
  json_error_t err;
  json_t *cfg = json_loadb(text, len, 0, &err);
  free(text);
  if (!cfg || !json_is_object(cfg)) {
    json_decref(cfg);
    return ftq_error(FTQ_ERR_FORMAT, "%s: invalid JSON at line %d, column %d: %s", path, err.line, err.column, err.text);
  }
  ftq_status st = config_token(t, cfg, "bos_token", &t->bos_id, path);
  if (st == FTQ_OK) st = config_token(t, cfg, "eos_token", &t->eos_id, path);
  if (st == FTQ_OK) st = config_token(t, cfg, "pad_token", &t->pad_id, path);
  if (st == FTQ_OK) st = config_token(t, cfg, "unk_token", &t->unk_id, path);
  /* Llama-style classes rebuild their post-processor from add_bos_token /
   * add_eos_token (transformers' LlamaTokenizerFast.update_post_processor) */
  const char *cls = jstr(cfg, "tokenizer_class");
  if (st == FTQ_OK && cls && (strncmp(cls, "LlamaTokenizer", 14) == 0 || strncmp(cls, "CodeLlamaTokenizer", 18) == 0 ||
                              strncmp(cls, "GemmaTokenizer", 14) == 0)) {
    int add_bos = jbool(cfg, "add_bos_token", 1), add_eos = jbool(cfg, "add_eos_token", 0);
    t->n_prefix = t->n_suffix = 0;
    if (add_bos && t->bos_id >= 0) t->prefix_ids[t->n_prefix++] = t->bos_id;
    if (add_eos && t->eos_id >= 0) t->suffix_ids[t->n_suffix++] = t->eos_id;
  }
  json_t *ct = json_object_get(cfg, "chat_template");
  const char *tmpl = NULL;
  if (json_is_string(ct)) {
    tmpl = json_string_value(ct);
  } else if (json_is_array(ct)) { /* [{"name": "default", "template": ...}, ...] */
    size_t i;
    json_t *it;
    json_array_foreach(ct, i, it) {
      const char *name = jstr(it, "name");
      if (!tmpl || (name && strcmp(name, "default") == 0)) tmpl = jstr(it, "template");
    }
  }
  if (st == FTQ_OK && tmpl) {
    free(t->chat_template_text);
    t->chat_template_text = ftq_tok_strndup(tmpl, strlen(tmpl));
    if (!t->chat_template_text) st = FTQ_ERR_OUT_OF_MEMORY;
  }
  json_decref(cfg);
  return st;
}
