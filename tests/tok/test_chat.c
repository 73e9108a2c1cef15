/* Chat templates: rendering (text and token ids) against transformers'
 * apply_chat_template with the models' own Jinja templates
 * (tests/ref/tok/chat.json, from make_ref.py), the assistant spans used for
 * completion-only labels, and template recognition. */
#include "test_util.h"
#include "tok/chat.h"
#include "tok/tokenizer.h"
#include "tok_test_util.h"

static ftq_tokenizer *cache_tok[8];
static char cache_name[8][32];

static ftq_tokenizer *load_uncached(const char *name) { return tt_load_ref_tokenizer(name); }

/* tokenizers are loaded once (SmolLM2's takes a while) */
static ftq_tokenizer *load(const char *name) {
  int i = 0;
  for (; i < 8 && cache_name[i][0]; i++)
    if (strcmp(cache_name[i], name) == 0) return cache_tok[i];
  snprintf(cache_name[i], sizeof cache_name[i], "%s", name);
  return cache_tok[i] = load_uncached(name);
}

static void test_reference(void) {
  json_t *ref = tt_load_json("tests/ref/tok/chat.json");
  json_t *cases = json_object_get(ref, "cases");
  size_t i;
  json_t *c;
  json_array_foreach(cases, i, c) {
    const char *name = json_string_value(json_object_get(c, "tokenizer"));
    const char *kind = json_string_value(json_object_get(c, "kind"));
    ftq_tokenizer *tok = load(name);
    CHECK_MSG(ftq_tokenizer_chat_template(tok) && strcmp(ftq_tokenizer_chat_template(tok), kind) == 0,
              "%s: template recognised as %s, expected %s", name, ftq_tokenizer_chat_template(tok), kind);
    char *msgs = json_dumps(json_object_get(c, "messages"), 0);
    int gen = json_is_true(json_object_get(c, "add_generation_prompt"));
    char *text = NULL;
    size_t len = 0;
    ftq_status st = ftq_tokenizer_apply_chat_template(tok, msgs, gen, &text, &len);
    json_t *err = json_object_get(c, "error");
    if (err) {
      CHECK_MSG(st == FTQ_ERR_FORMAT, "case %zu (%s): transformers raised \"%s\", libftq returned %d", i, kind,
                json_string_value(err), st);
    } else {
      const char *want = json_string_value(json_object_get(c, "text"));
      CHECK_MSG(st == FTQ_OK && len == strlen(want) && memcmp(text, want, len) == 0,
                "case %zu (%s/%s): rendered text differs\n  libftq:       \"%s\"\n  transformers: \"%s\"", i, kind, name,
                text ? text : ftq_last_error(), want);
      if (st == FTQ_OK) {
        int32_t *ids;
        size_t n, nw;
        int32_t *w = tt_ids(json_object_get(c, "ids"), &nw);
        CHECK_OK(ftq_tokenizer_encode(tok, text, len, 0, &ids, &n));
        CHECK_MSG(n == nw && memcmp(ids, w, n * sizeof *ids) == 0, "case %zu (%s): token ids differ", i, kind);
        ftq_free(ids);
        free(w);
        /* spans of the internal renderer */
        json_t *jm = json_object_get(c, "messages");
        size_t nm = json_array_size(jm);
        ftq_chat_message *m = calloc(nm + 1, sizeof *m);
        for (size_t k = 0; k < nm; k++) {
          json_t *e = json_array_get(jm, k);
          json_t *r = json_object_get(e, "role"), *ct = json_object_get(e, "content");
          m[k] = (ftq_chat_message){json_string_value(r), json_string_value(ct), json_string_length(r),
                                    json_string_length(ct)};
        }
        ftq_chat_text out;
        const char *bos = "", *eos = "";
        ftq_tokenizer_id_to_token(tok, ftq_tokenizer_special_id(tok, FTQ_TOKEN_BOS), &bos, NULL);
        ftq_tokenizer_id_to_token(tok, ftq_tokenizer_special_id(tok, FTQ_TOKEN_EOS), &eos, NULL);
        CHECK_OK(ftq_chat_render(&tok->chat, bos, eos, m, nm, gen, &out));
        json_t *spans = json_object_get(c, "spans");
        CHECK_MSG(out.n_spans == json_array_size(spans), "case %zu (%s): %zu spans, expected %zu", i, kind, out.n_spans,
                  json_array_size(spans));
        for (size_t k = 0; k < out.n_spans && k < json_array_size(spans); k++) {
          json_t *sp = json_array_get(spans, k);
          CHECK_MSG(out.spans[k][0] == (size_t)json_integer_value(json_array_get(sp, 0)) &&
                        out.spans[k][1] == (size_t)json_integer_value(json_array_get(sp, 1)),
                    "case %zu (%s): span %zu is [%zu, %zu)", i, kind, k, out.spans[k][0], out.spans[k][1]);
        }
        ftq_chat_text_free(&out);
        free(m);
      }
    }
    ftq_free(text);
    free(msgs);
  }
  json_decref(ref);
}

static void test_detection(void) {
  ftq_chat_template ct;
  CHECK_OK(ftq_chat_template_detect("{{ '<|im_start|>system\\nYou are X.<|im_end|>\\n' }}", &ct));
  CHECK(ct.kind == FTQ_CHAT_CHATML && ct.default_system && strcmp(ct.default_system, "You are X.") == 0);
  ftq_chat_template_clear(&ct);
  CHECK_OK(ftq_chat_template_detect("{% for m in messages %}{{'<|im_start|>' + m['role'] + '\\n' + m['content'] + "
                                    "'<|im_end|>\\n'}}{% endfor %}", &ct));
  CHECK(ct.kind == FTQ_CHAT_CHATML && ct.default_system == NULL);
  ftq_chat_template_clear(&ct);
  /* Mistral's [INST] without <<SYS>>, Llama 3.1 and unknown formats: none, with a reason */
  const char *others[] = {"{{ bos_token }}{% for m in messages %}{{ '[INST] ' + m['content'] + ' [/INST]' }}{% endfor %}",
                          "<|start_header_id|>system<|end_header_id|>Cutting Knowledge Date: December 2023",
                          "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}{% endfor %}", ""};
  for (size_t k = 0; k < 4; k++) {
    CHECK_OK(ftq_chat_template_detect(others[k], &ct));
    CHECK(ct.kind == FTQ_CHAT_NONE && ct.why_none != NULL);
    ftq_chat_template_clear(&ct);
  }
  /* rendering without a template says why */
  ftq_tokenizer *tok = load("qwen2");
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "chat_template", "none"));
  ftq_tokenizer *none;
  REQUIRE_OK(ftq_tokenizer_load("tests/ref/tok/qwen2/tokenizer.json", o, &none));
  char *text;
  CHECK_STATUS(ftq_tokenizer_apply_chat_template(none, "[{\"role\":\"user\",\"content\":\"x\"}]", 0, &text, NULL),
               FTQ_ERR_STATE);
  CHECK_ERROR_MENTIONS("chat_template");
  CHECK(ftq_tokenizer_chat_template(none) == NULL);
  /* forcing llama-3 on the qwen2 tokenizer renders the llama-3 format */
  REQUIRE_OK(ftq_options_set_string(o, "chat_template", "llama-3"));
  ftq_tokenizer *l3;
  REQUIRE_OK(ftq_tokenizer_load("tests/ref/tok/qwen2/tokenizer.json", o, &l3));
  CHECK_OK(ftq_tokenizer_apply_chat_template(l3, "[{\"role\":\"user\",\"content\":\" x \"}]", 1, &text, NULL));
  CHECK(text && strcmp(text, "<|start_header_id|>user<|end_header_id|>\n\nx<|eot_id|>"
                             "<|start_header_id|>assistant<|end_header_id|>\n\n") == 0);
  ftq_free(text);
  /* malformed messages */
  CHECK_STATUS(ftq_tokenizer_apply_chat_template(tok, "{\"role\":\"user\"}", 0, &text, NULL), FTQ_ERR_FORMAT);
  CHECK_STATUS(ftq_tokenizer_apply_chat_template(tok, "[{\"role\":\"user\",\"content\":3}]", 0, &text, NULL),
               FTQ_ERR_FORMAT);
  CHECK_ERROR_MENTIONS("messages[0]");
  ftq_tokenizer_destroy(l3);
  ftq_tokenizer_destroy(none);
  ftq_options_destroy(o);
}

int main(void) {
  test_reference();
  test_detection();
  for (int i = 0; i < 8; i++) ftq_tokenizer_destroy(cache_tok[i]);
  return test_finish("test_chat");
}
