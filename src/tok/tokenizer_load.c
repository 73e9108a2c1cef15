/* ftq_tokenizer_load: finds the files (model folder, tokenizer.json, GGUF),
 * applies tokenizer_config.json and the "tokenizer" options, and picks the
 * chat template. Also the public chat-template call. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "core/options.h"
#include "io/file.h"
#include "io/jsonl.h"
#include "tok/tokenizer.h"

static const ftq_option_def tokenizer_option_defs[] = {
    {"bos_token", "tokenizer", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text of the BOS token, overriding the tokenizer files (\"\" = as the files say)"},
    {"eos_token", "tokenizer", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text of the EOS token that ends every answer, overriding the files (\"\" = as the files say)"},
    {"pad_token", "tokenizer", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text of the padding token (\"\" = as the files say, else the EOS token)"},
    {"unk_token", "tokenizer", FTQ_OPTION_STRING, "", 0, 0, NULL, 0,
     "text of the unknown token, overriding the files (\"\" = as the files say)"},
    {"chat_template", "tokenizer", FTQ_OPTION_STRING, "auto", 0, 0, "auto|none|llama-2|chatml|llama-3", 0,
     "chat format for messages: auto = the model's own template when it is a supported one"},
};
FTQ_OPTION_TABLE(tokenizer, tokenizer_option_defs);

static ftq_status option_token(ftq_tokenizer *t, const ftq_options *opts, const char *name, int32_t *id) {
  const char *s;
  FTQ_TRY(ftq_options_get_string(opts, name, &s));
  if (!*s) return FTQ_OK;
  if (!ftq_strmap_get(&t->tokens, s, strlen(s), id))
    return ftq_error(FTQ_ERR_NOT_FOUND, "option %s: \"%s\" is not a token of %s", name, s, t->source);
  return FTQ_OK;
}

ftq_status tok_apply_options(ftq_tokenizer *t, const ftq_options *opts) {
  FTQ_TRY(option_token(t, opts, "bos_token", &t->bos_id));
  FTQ_TRY(option_token(t, opts, "eos_token", &t->eos_id));
  FTQ_TRY(option_token(t, opts, "pad_token", &t->pad_id));
  FTQ_TRY(option_token(t, opts, "unk_token", &t->unk_id));
  const char *ct;
  FTQ_TRY(ftq_options_get_string(opts, "chat_template", &ct));
  ftq_chat_template_clear(&t->chat);
  if (strcmp(ct, "auto") == 0) return ftq_chat_template_detect(t->chat_template_text, &t->chat);
  if (strcmp(ct, "llama-2") == 0) t->chat.kind = FTQ_CHAT_LLAMA2;
  else if (strcmp(ct, "llama-3") == 0) t->chat.kind = FTQ_CHAT_LLAMA3;
  else if (strcmp(ct, "chatml") == 0) {
    t->chat.kind = FTQ_CHAT_CHATML;
    /* keep the model's default system prompt when its template is ChatML */
    ftq_chat_template own;
    FTQ_TRY(ftq_chat_template_detect(t->chat_template_text, &own));
    if (own.kind == FTQ_CHAT_CHATML) {
      t->chat.default_system = own.default_system;
      own.default_system = NULL;
    }
    ftq_chat_template_clear(&own);
  } else {
    t->chat.kind = FTQ_CHAT_NONE;
    t->chat.why_none = ftq_strdup("option chat_template is \"none\"", "chat template");
    if (!t->chat.why_none) return FTQ_ERR_OUT_OF_MEMORY;
  }
  return FTQ_OK;
}

static int is_gguf(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char m[4] = {0};
  size_t n = fread(m, 1, 4, f);
  fclose(f);
  return n == 4 && memcmp(m, "GGUF", 4) == 0;
}

static ftq_status load_json_file(const char *path, ftq_tokenizer **out) {
  char *text;
  size_t len;
  FTQ_TRY(ftq_read_text_file(path, &text, &len));
  ftq_status st = tok_load_hf_json(text, len, path, out);
  free(text);
  return st;
}

ftq_status ftq_tokenizer_load(const char *path, const ftq_options *opts, ftq_tokenizer **out) {
  FTQ_CHECK_ARG(path && out, "ftq_tokenizer_load: NULL argument");
  *out = NULL;
  ftq_tokenizer *t = NULL;
  ftq_status st;
  char cfg[4096] = "";
  if (ftq_dir_exists(path)) {
    char json[4096];
    snprintf(json, sizeof json, "%s/tokenizer.json", path);
    snprintf(cfg, sizeof cfg, "%s/tokenizer_config.json", path);
    if (!ftq_file_exists(json)) snprintf(json, sizeof json, "%s/tokenizer.json.gz", path);
    if (!ftq_file_exists(json))
      return ftq_error(FTQ_ERR_NOT_FOUND, "'%s' is a folder without tokenizer.json (give a tokenizer.json or a GGUF file)",
                       path);
    st = load_json_file(json, &t);
  } else if (!ftq_file_exists(path)) {
    return ftq_error(FTQ_ERR_IO, "cannot open tokenizer '%s': %s", path, strerror(errno ? errno : ENOENT));
  } else if (is_gguf(path)) {
    st = tok_load_gguf(path, &t);
  } else {
    st = load_json_file(path, &t);
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    if (strncmp(base, "tokenizer.json", 14) == 0)
      snprintf(cfg, sizeof cfg, "%.*stokenizer_config.json", (int)(base - path), path);
  }
  if (st == FTQ_OK && cfg[0] && ftq_file_exists(cfg)) st = tok_apply_hf_config(t, cfg);
  if (st == FTQ_OK) st = tok_apply_options(t, opts);
  if (st == FTQ_OK && t->pad_id < 0) t->pad_id = t->eos_id; /* as TRL: pad falls back to EOS */
  if (st != FTQ_OK) {
    ftq_tokenizer_destroy(t);
    return ftq_error_context(st, "loading tokenizer '%s'", path);
  }
  *out = t;
  return FTQ_OK;
}

ftq_status ftq_tokenizer_load_json(const char *json, size_t len, const ftq_options *opts, ftq_tokenizer **out) {
  FTQ_CHECK_ARG(json && out, "ftq_tokenizer_load_json: NULL argument");
  *out = NULL;
  ftq_tokenizer *t = NULL;
  ftq_status st = tok_load_hf_json(json, len, "tokenizer.json (memory)", &t);
  if (st == FTQ_OK) st = tok_apply_options(t, opts);
  if (st == FTQ_OK && t->pad_id < 0) t->pad_id = t->eos_id;
  if (st != FTQ_OK) {
    ftq_tokenizer_destroy(t);
    return st;
  }
  *out = t;
  return FTQ_OK;
}

const char *ftq_tokenizer_chat_template(const ftq_tokenizer *t) { return t ? ftq_chat_kind_name(t->chat.kind) : NULL; }

static const char *token_text(const ftq_tokenizer *t, int32_t id) {
  return id >= 0 && id < t->n_ids && t->id_token[id] ? t->id_token[id] : "";
}

ftq_status ftq_tokenizer_apply_chat_template(const ftq_tokenizer *t, const char *messages_json,
                                             int add_generation_prompt, char **text, size_t *len) {
  FTQ_CHECK_ARG(t && messages_json && text, "ftq_tokenizer_apply_chat_template: NULL argument");
  *text = NULL;
  if (len) *len = 0;
  json_error_t err;
  json_t *root = json_loads(messages_json, 0, &err);
  if (!root || !json_is_array(root)) {
    json_decref(root);
    return ftq_error(FTQ_ERR_FORMAT, "messages: expected a JSON array of {\"role\", \"content\"} objects%s%s",
                     root ? "" : ": ", root ? "" : err.text);
  }
  size_t n = json_array_size(root);
  ftq_chat_message *msgs = ftq_calloc(n ? n : 1, sizeof *msgs, "chat messages");
  ftq_status st = msgs ? FTQ_OK : FTQ_ERR_OUT_OF_MEMORY;
  for (size_t i = 0; i < n && st == FTQ_OK; i++) {
    json_t *m = json_array_get(root, i), *r = json_object_get(m, "role"), *c = json_object_get(m, "content");
    if (!json_is_string(r) || !json_is_string(c))
      st = ftq_error(FTQ_ERR_FORMAT, "messages[%zu]: needs string fields \"role\" and \"content\"", i);
    else
      msgs[i] = (ftq_chat_message){json_string_value(r), json_string_value(c), json_string_length(r),
                                   json_string_length(c)};
  }
  ftq_chat_text ct = {0};
  if (st == FTQ_OK)
    st = ftq_chat_render(&t->chat, token_text(t, t->bos_id), token_text(t, t->eos_id), msgs, n, add_generation_prompt,
                         &ct);
  free(msgs);
  json_decref(root);
  if (st != FTQ_OK) return st;
  free(ct.spans);
  *text = ct.text;
  if (len) *len = ct.len;
  return FTQ_OK;
}
