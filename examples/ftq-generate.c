/* ftq-generate: text from a model, with or without a LoRA adapter.
 *
 *   ftq-generate --model DIR|FILE.gguf --prompt "Once upon a time"
 *   ftq-generate --model DIR --adapter ADAPTER_DIR --chat "What is 7 * 6?" --max_new_tokens 64
 *   ftq-generate --model DIR --messages chat.json --do_sample --temperature 0.7 --top_p 0.9 --seed 3
 *
 * --prompt is encoded as plain text (with the BOS the tokenizer adds);
 * --chat (one user turn, optionally after --system) and --messages (a JSON
 * array of {"role", "content"}) go through the tokenizer's chat template.
 * Tokens are printed as they are generated; the end of the answer (the
 * model's or the tokenizer's end-of-sequence token) stops generation.
 * Settings are libftq options named as transformers names them
 * (--max_new_tokens, --do_sample, --temperature, --top_k, --top_p,
 * --repetition_penalty, --load_in_4bit, --torch_dtype, --num_threads, ...;
 * --help lists them). Public API only. */
#include <libftq/ftq.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/report.h"
#include "common/setup.h"

/* A JSON string literal of `s` (heap). */
static char *json_quote(const char *s) {
  size_t n = strlen(s);
  char *out = malloc(6 * n + 3), *p = out;
  if (!out) return NULL;
  *p++ = '"';
  for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
    if (*c == '"' || *c == '\\') {
      *p++ = '\\';
      *p++ = (char)*c;
    } else if (*c < 0x20) {
      p += sprintf(p, "\\u%04x", *c);
    } else {
      *p++ = (char)*c;
    }
  }
  *p++ = '"';
  *p = '\0';
  return out;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  fseek(f, 0, SEEK_SET);
  char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
  if (text && fread(text, 1, (size_t)n, f) != (size_t)n) {
    free(text);
    text = NULL;
  }
  if (text) text[n] = '\0';
  fclose(f);
  return text;
}

/* The conversation as JSON: --messages FILE, or --system + --chat. */
static char *conversation(const char *messages_file, const char *system, const char *chat) {
  if (messages_file) return read_file(messages_file);
  char *u = json_quote(chat), *s = system ? json_quote(system) : NULL;
  size_t n = strlen(u) + (s ? strlen(s) : 0) + 96;
  char *json = u && (s || !system) ? malloc(n) : NULL;
  if (json && s) snprintf(json, n, "[{\"role\": \"system\", \"content\": %s}, {\"role\": \"user\", \"content\": %s}]", s, u);
  else if (json) snprintf(json, n, "[{\"role\": \"user\", \"content\": %s}]", u);
  free(u);
  free(s);
  return json;
}

/* Streaming: decode everything generated so far and print what is new,
 * holding back while the text ends inside a UTF-8 character (U+FFFD). */
typedef struct stream {
  const ftq_tokenizer *tok;
  int32_t *ids;
  size_t n, cap, printed;
} stream;

static int on_token(void *user, int32_t token, size_t index) {
  (void)index;
  stream *s = user;
  if (s->n == s->cap) {
    size_t cap = s->cap ? 2 * s->cap : 64;
    int32_t *ids = realloc(s->ids, cap * sizeof *ids);
    if (!ids) return 1;
    s->ids = ids;
    s->cap = cap;
  }
  s->ids[s->n++] = token;
  char *text;
  size_t len;
  if (ftq_tokenizer_decode(s->tok, s->ids, s->n, FTQ_DECODE_SKIP_SPECIAL, &text, &len) != FTQ_OK) return 0;
  int partial = len >= 3 && memcmp(text + len - 3, "\xEF\xBF\xBD", 3) == 0;
  if (!partial && len > s->printed) {
    fwrite(text + s->printed, 1, len - s->printed, stdout);
    fflush(stdout);
    s->printed = len;
  }
  ftq_free(text);
  return 0;
}

int main(int argc, char **argv) {
  const char *model_path = NULL, *adapter = NULL, *prompt = NULL, *chat = NULL, *messages = NULL, *system = NULL,
             *tok_path = NULL, *device = "cpu", *seed_text = "0", *quiet = NULL;
  const ftq_cli_flag flags[] = {
      {"model", "PATH", "base model: a Hugging Face folder or a GGUF file (required)", &model_path},
      {"adapter", "DIR", "PEFT LoRA adapter folder to apply", &adapter},
      {"prompt", "TEXT", "plain-text prompt to continue", &prompt},
      {"chat", "TEXT", "a user message, through the tokenizer's chat template", &chat},
      {"system", "TEXT", "a system message before --chat", &system},
      {"messages", "FILE", "a JSON array of {\"role\", \"content\"} messages, through the chat template", &messages},
      {"tokenizer", "PATH", "tokenizer (tokenizer.json, a folder or a GGUF file); default: --model", &tok_path},
      {"device", "DEV", "cpu, cuda or cuda:N", &device},
      {"seed", "N", "seed of the sampling generator", &seed_text},
      {"quiet", NULL, "no log lines and no summary on stderr", &quiet},
  };
  static const char *const groups[] = {"context", "model", "quant", "tokenizer", "generate", NULL};
  const ftq_cli cli = {"ftq-generate",
                       "Generates text with a model (and a PEFT LoRA adapter), printing tokens as they come.",
                       groups, flags, sizeof flags / sizeof flags[0]};
  ftq_options *opts;
  if (ftq_options_create(&opts) != FTQ_OK) return 1;
  int rc = ftq_cli_parse(&cli, argc, argv, opts);
  if (rc) {
    ftq_options_destroy(opts);
    return rc == 1 ? 0 : 2;
  }
  if (!model_path || (!prompt + !chat + !messages) != 2) {
    fprintf(stderr, "ftq-generate: give --model and one of --prompt, --chat, --messages (see --help)\n");
    ftq_options_destroy(opts);
    return 2;
  }
  ftq_context *ctx = NULL;
  ftq_model *model = NULL;
  ftq_lora *lora = NULL;
  ftq_tokenizer *tok = NULL;
  char *text = NULL, *conv = NULL;
  int32_t *ids = NULL, *out = NULL;
  size_t n_ids = 0;
  stream s = {0};
  ftq_status st = ftq_example_open(device, opts, quiet ? -1 : FTQ_LOG_INFO, model_path, opts, adapter, &ctx, &model,
                                   &lora);
  if (st == FTQ_OK) st = ftq_tokenizer_load(tok_path ? tok_path : model_path, opts, &tok);
  if (st == FTQ_OK && prompt) {
    st = ftq_tokenizer_encode(tok, prompt, strlen(prompt), FTQ_ENCODE_ADD_SPECIAL, &ids, &n_ids);
  } else if (st == FTQ_OK) {
    conv = conversation(messages, system, chat);
    if (!conv) {
      fprintf(stderr, "ftq-generate: cannot read %s\n", messages ? messages : "the conversation");
      rc = 1;
      goto done;
    }
    st = ftq_tokenizer_apply_chat_template(tok, conv, 1, &text, NULL);
    if (st == FTQ_OK) st = ftq_tokenizer_encode(tok, text, strlen(text), 0, &ids, &n_ids);
  }
  int64_t max_new = 0;
  if (st == FTQ_OK) st = ftq_options_get_int(opts, "max_new_tokens", &max_new);
  if (st == FTQ_OK && n_ids == 0) {
    fprintf(stderr, "ftq-generate: the prompt has no tokens\n");
    rc = 1;
    goto done;
  }
  if (st == FTQ_OK) {
    /* the tokenizer's end of answer (e.g. <|im_end|>) stops too */
    int32_t stops[2] = {ftq_tokenizer_special_id(tok, FTQ_TOKEN_EOS), -1};
    out = malloc(sizeof *out * (size_t)(max_new > 0 ? max_new : 1));
    s.tok = tok;
    size_t n_out = 0;
    int reason = 0;
    double t0 = ftq_now_s();
    if (prompt) fputs(prompt, stdout);
    st = out ? ftq_model_generate(model, ids, n_ids, opts, strtoull(seed_text, NULL, 10), stops[0] >= 0 ? stops : NULL,
                                  stops[0] >= 0 ? 2 : 0, on_token, &s, out, (size_t)max_new, &n_out, &reason)
             : FTQ_ERR_OUT_OF_MEMORY;
    double dt = ftq_now_s() - t0;
    printf("\n");
    static const char *why[] = {"length", "end of sequence", "stop sequence", "callback"};
    if (st == FTQ_OK && !quiet)
      fprintf(stderr, "[%zu prompt tokens, %zu generated in %.2f s (%.1f tokens/s), stopped by %s]\n", n_ids, n_out, dt,
              dt > 0 ? (double)n_out / dt : 0.0, why[reason & 3]);
  }
  if (st != FTQ_OK) {
    fprintf(stderr, "ftq-generate: %s\n", ftq_last_error());
    rc = 1;
  }
done:
  free(s.ids);
  free(out);
  ftq_free(ids);
  ftq_free(text);
  free(conv);
  ftq_tokenizer_destroy(tok);
  ftq_lora_destroy(lora);
  ftq_model_destroy(model);
  ftq_context_destroy(ctx);
  ftq_options_destroy(opts);
  return rc;
}
