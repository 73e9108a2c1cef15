/* Chat templates rendered in C (see chat.h). The rendering follows the
 * Jinja templates shipped with the models:
 *  - Llama 2 (meta-llama/Llama-2-*-chat, = Meta's chat_completion): a leading
 *    system message is folded into the first user turn as
 *    "<<SYS>>\n{system}\n<</SYS>>\n\n{user}"; user turns render
 *    bos + "[INST] " + strip(content) + " [/INST]", assistant turns
 *    " " + strip(content) + " " + eos; roles must alternate from the user;
 *  - ChatML: "<|im_start|>{role}\n{content}<|im_end|>\n", with the model's
 *    default system message when the first message is not one;
 *  - Llama 3: bos once, then "<|start_header_id|>{role}<|end_header_id|>\n\n"
 *    + trim(content) + "<|eot_id|>".
 * strip/trim are Python's str.strip() (Jinja runs on Python strings). */
#include "tok/chat.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/error.h"
#include "tok/hashmap.h"
#include "tok/unicode.h"

const char *ftq_chat_kind_name(ftq_chat_kind kind) {
  switch (kind) {
    case FTQ_CHAT_LLAMA2: return "llama-2";
    case FTQ_CHAT_CHATML: return "chatml";
    case FTQ_CHAT_LLAMA3: return "llama-3";
    default: return NULL;
  }
}

void ftq_chat_template_clear(ftq_chat_template *ct) {
  free(ct->default_system);
  free(ct->why_none);
  memset(ct, 0, sizeof *ct);
}

/* The ChatML default system prompt: a string literal
 * '<|im_start|>system\n...<|im_end|>' in the template (newline written as a
 * real newline or as the escape \n). */
static char *chatml_default_system(const char *j) {
  static const char head[] = "<|im_start|>system";
  for (const char *p = strstr(j, head); p; p = strstr(p + 1, head)) {
    const char *q = p + sizeof head - 1;
    if (*q == '\n') q++;
    else if (q[0] == '\\' && q[1] == 'n') q += 2;
    else continue;
    const char *end = strstr(q, "<|im_end|>");
    if (!end || end <= q) continue;
    size_t span = (size_t)(end - q);
    /* a literal: no quote, no expression, no statement inside */
    int literal = 1;
    for (const char *c = q; c < end; c++)
      if (*c == '\'' || *c == '"' || (*c == '{' && (c[1] == '{' || c[1] == '%'))) literal = 0;
    if (!literal) continue;
    char *out = span < 65536 ? malloc(span + 1) : NULL;
    if (!out) return NULL;
    size_t o = 0;
    for (const char *c = q; c < end; c++) {
      if (c[0] == '\\' && c[1] == 'n') out[o++] = '\n', c++;
      else if (c[0] == '\\' && c[1] == '\\') out[o++] = '\\', c++;
      else out[o++] = *c;
    }
    out[o] = '\0';
    return out;
  }
  return NULL;
}

ftq_status ftq_chat_template_detect(const char *j, ftq_chat_template *out) {
  memset(out, 0, sizeof *out);
  const char *why = NULL;
  if (!j || !*j) {
    why = "the model carries no chat template";
  } else if (strstr(j, "<|im_start|>")) {
    out->kind = FTQ_CHAT_CHATML;
    out->default_system = chatml_default_system(j);
  } else if (strstr(j, "<|start_header_id|>")) {
    if (strstr(j, "Cutting Knowledge Date") || strstr(j, "tools"))
      why = "the model's chat template is Llama 3.1+ style (date header, tools), which is not supported; set "
            "chat_template=llama-3 for the plain Llama 3 format";
    else
      out->kind = FTQ_CHAT_LLAMA3;
  } else if (strstr(j, "[INST]")) {
    if (strstr(j, "<<SYS>>"))
      out->kind = FTQ_CHAT_LLAMA2;
    else
      why = "the model's chat template uses [INST] without <<SYS>> (Mistral style), which is not supported; set "
            "chat_template=llama-2 to use the Llama 2 format";
  } else {
    why = "the model's chat template is not one of the supported formats (llama-2, chatml, llama-3)";
  }
  if (why) {
    out->kind = FTQ_CHAT_NONE;
    out->why_none = ftq_tok_strndup(why, strlen(why));
    if (!out->why_none) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory");
  }
  return FTQ_OK;
}

int ftq_py_isspace(unsigned cp) { return (ftq_uflags(cp) & FTQ_U_SPACE) || (cp >= 0x1C && cp <= 0x1F); }

/* Python's str.strip(): *s, *n narrowed to the text without leading and
 * trailing white space. */
static void py_strip(const char **s, size_t *n) {
  const unsigned char *p = (const unsigned char *)*s;
  size_t a = 0, b = *n, cl;
  while (a < b) {
    uint32_t cp = ftq_utf8_decode(p + a, b - a, &cl, NULL);
    if (!ftq_py_isspace(cp)) break;
    a += cl;
  }
  while (b > a) {
    size_t j = b - 1;
    while (j > a && (p[j] & 0xC0) == 0x80) j--;
    uint32_t cp = ftq_utf8_decode(p + j, b - j, &cl, NULL);
    if (!ftq_py_isspace(cp)) break;
    b = j;
  }
  *s += a;
  *n = b - a;
}

static ftq_status put(ftq_chat_text *t, const char *s, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t c = t->cap ? t->cap : 256;
    while (c < t->len + n + 1) c *= 2;
    char *d = realloc(t->text, c);
    if (!d) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory rendering a chat");
    t->text = d;
    t->cap = c;
  }
  if (n) memcpy(t->text + t->len, s, n);
  t->len += n;
  t->text[t->len] = '\0';
  return FTQ_OK;
}
static ftq_status puts_(ftq_chat_text *t, const char *s) { return put(t, s, strlen(s)); }

static ftq_status add_span(ftq_chat_text *t, size_t a, size_t b) {
  if (t->n_spans == t->cap_spans) {
    size_t c = t->cap_spans ? t->cap_spans * 2 : 8;
    void *p = realloc(t->spans, c * sizeof *t->spans);
    if (!p) return ftq_error(FTQ_ERR_OUT_OF_MEMORY, "out of memory rendering a chat");
    t->spans = p;
    t->cap_spans = c;
  }
  t->spans[t->n_spans][0] = a;
  t->spans[t->n_spans++][1] = b;
  return FTQ_OK;
}

void ftq_chat_text_free(ftq_chat_text *t) {
  free(t->text);
  free(t->spans);
  memset(t, 0, sizeof *t);
}

static int role_is(const ftq_chat_message *m, const char *r) {
  return m->role_len == strlen(r) && memcmp(m->role, r, m->role_len) == 0;
}

static ftq_status render_llama2(const char *bos, const char *eos, const ftq_chat_message *msgs, size_t n,
                                ftq_chat_text *t) {
  const ftq_chat_message *sys = NULL;
  size_t first = 0;
  if (n && role_is(&msgs[0], "system")) sys = &msgs[0], first = 1;
  for (size_t i = first; i < n; i++) {
    const ftq_chat_message *m = &msgs[i];
    int want_user = (i - first) % 2 == 0;
    /* the template's test: user exactly at even places; other roles at odd
     * places render nothing */
    if (role_is(m, "user") != want_user)
      return ftq_error(FTQ_ERR_FORMAT,
                       "message %zu: role '%.*s': Conversation roles must alternate user/assistant/user/assistant/... "
                       "(Llama-2 template, after an optional first system message)", i, (int)m->role_len, m->role);
    if (!want_user && !role_is(m, "assistant")) continue;
    const char *c = m->content;
    size_t cn = m->content_len;
    if (want_user) {
      FTQ_TRY(puts_(t, bos));
      FTQ_TRY(puts_(t, "[INST] "));
      if (i == first && sys) {
        /* strip() applies to "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + user */
        ftq_chat_text tmp = {0};
        ftq_status st = puts_(&tmp, "<<SYS>>\n");
        if (st == FTQ_OK) st = put(&tmp, sys->content, sys->content_len);
        if (st == FTQ_OK) st = puts_(&tmp, "\n<</SYS>>\n\n");
        if (st == FTQ_OK) st = put(&tmp, c, cn);
        if (st == FTQ_OK) {
          const char *s = tmp.text;
          size_t sn = tmp.len;
          py_strip(&s, &sn);
          st = put(t, s, sn);
        }
        ftq_chat_text_free(&tmp);
        FTQ_TRY(st);
      } else {
        py_strip(&c, &cn);
        FTQ_TRY(put(t, c, cn));
      }
      FTQ_TRY(puts_(t, " [/INST]"));
    } else {
      size_t start = t->len;
      py_strip(&c, &cn);
      FTQ_TRY(puts_(t, " "));
      FTQ_TRY(put(t, c, cn));
      FTQ_TRY(puts_(t, " "));
      FTQ_TRY(puts_(t, eos));
      FTQ_TRY(add_span(t, start, t->len));
    }
  }
  return FTQ_OK;
}

static ftq_status render_chatml(const ftq_chat_template *ct, const ftq_chat_message *msgs, size_t n, int addgen,
                                ftq_chat_text *t) {
  for (size_t i = 0; i < n; i++) {
    const ftq_chat_message *m = &msgs[i];
    if (i == 0 && !role_is(m, "system") && ct->default_system) {
      FTQ_TRY(puts_(t, "<|im_start|>system\n"));
      FTQ_TRY(puts_(t, ct->default_system));
      FTQ_TRY(puts_(t, "<|im_end|>\n"));
    }
    FTQ_TRY(puts_(t, "<|im_start|>"));
    FTQ_TRY(put(t, m->role, m->role_len));
    FTQ_TRY(puts_(t, "\n"));
    size_t start = t->len;
    FTQ_TRY(put(t, m->content, m->content_len));
    FTQ_TRY(puts_(t, "<|im_end|>"));
    if (role_is(m, "assistant")) FTQ_TRY(add_span(t, start, t->len));
    FTQ_TRY(puts_(t, "\n"));
  }
  if (addgen) FTQ_TRY(puts_(t, "<|im_start|>assistant\n"));
  return FTQ_OK;
}

static ftq_status render_llama3(const char *bos, const ftq_chat_message *msgs, size_t n, int addgen, ftq_chat_text *t) {
  for (size_t i = 0; i < n; i++) {
    const ftq_chat_message *m = &msgs[i];
    if (i == 0) FTQ_TRY(puts_(t, bos));
    FTQ_TRY(puts_(t, "<|start_header_id|>"));
    FTQ_TRY(put(t, m->role, m->role_len));
    FTQ_TRY(puts_(t, "<|end_header_id|>\n\n"));
    const char *c = m->content;
    size_t cn = m->content_len;
    py_strip(&c, &cn);
    size_t start = t->len;
    FTQ_TRY(put(t, c, cn));
    FTQ_TRY(puts_(t, "<|eot_id|>"));
    if (role_is(m, "assistant")) FTQ_TRY(add_span(t, start, t->len));
  }
  if (addgen) FTQ_TRY(puts_(t, "<|start_header_id|>assistant<|end_header_id|>\n\n"));
  return FTQ_OK;
}

ftq_status ftq_chat_render(const ftq_chat_template *ct, const char *bos, const char *eos, const ftq_chat_message *msgs,
                           size_t n, int add_generation_prompt, ftq_chat_text *out) {
  memset(out, 0, sizeof *out);
  ftq_status st = put(out, "", 0);
  if (st != FTQ_OK) return st;
  switch (ct->kind) {
    case FTQ_CHAT_LLAMA2: st = render_llama2(bos ? bos : "", eos ? eos : "", msgs, n, out); break;
    case FTQ_CHAT_CHATML: st = render_chatml(ct, msgs, n, add_generation_prompt, out); break;
    case FTQ_CHAT_LLAMA3: st = render_llama3(bos ? bos : "", msgs, n, add_generation_prompt, out); break;
    default:
      st = ftq_error(FTQ_ERR_STATE, "no chat template: %s",
                     ct->why_none ? ct->why_none : "none was chosen (option chat_template)");
  }
  if (st != FTQ_OK) ftq_chat_text_free(out);
  return st;
}
