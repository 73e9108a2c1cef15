/* Chat templates: the formats of Llama 2 ([INST] / <<SYS>>), ChatML
 * (SmolLM2, Qwen) and Llama 3, written out in C exactly as their Jinja
 * templates render, and the recognition of a model's own Jinja template as
 * one of them. Rendering also reports which byte ranges are the assistant's
 * (its content and its end-of-turn token), for completion-only labels. */
#ifndef FTQ_TOK_CHAT_H
#define FTQ_TOK_CHAT_H

#include <stddef.h>

#include "libftq/ftq_status.h"

typedef enum ftq_chat_kind {
  FTQ_CHAT_NONE = 0,
  FTQ_CHAT_LLAMA2 = 1,
  FTQ_CHAT_CHATML = 2,
  FTQ_CHAT_LLAMA3 = 3
} ftq_chat_kind;

typedef struct ftq_chat_template {
  ftq_chat_kind kind;
  char *default_system; /* ChatML: system prompt used when the first message is not one */
  char *why_none;       /* kind NONE: why (e.g. the model's template was not recognised) */
} ftq_chat_template;

typedef struct ftq_chat_message {
  const char *role, *content;
  size_t role_len, content_len;
} ftq_chat_message;

/* Rendered conversation: text and the assistant spans [start, end). */
typedef struct ftq_chat_text {
  char *text;
  size_t len, cap;
  size_t (*spans)[2];
  size_t n_spans, cap_spans;
} ftq_chat_text;

/* "llama-2", "chatml", "llama-3" (or NULL for none). */
const char *ftq_chat_kind_name(ftq_chat_kind kind);
/* Recognises a Jinja chat template. Unrecognised text gives kind NONE with
 * why_none set (not an error: only rendering with it fails). */
ftq_status ftq_chat_template_detect(const char *jinja, ftq_chat_template *out);
void ftq_chat_template_clear(ftq_chat_template *ct);

/* Renders messages. bos/eos: the text of the tokenizer's BOS and EOS tokens
 * (Llama 2 and Llama 3 write them as text; the tokenizer parses them back).
 * Errors (FTQ_ERR_FORMAT) name the message index and what is wrong. */
ftq_status ftq_chat_render(const ftq_chat_template *ct, const char *bos, const char *eos, const ftq_chat_message *msgs,
                           size_t n, int add_generation_prompt, ftq_chat_text *out);
void ftq_chat_text_free(ftq_chat_text *t);

/* Python's str.isspace() for one code point (what Jinja's strip/trim use). */
int ftq_py_isspace(unsigned cp);

#endif /* FTQ_TOK_CHAT_H */
