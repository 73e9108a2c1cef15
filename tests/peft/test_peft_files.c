/* PEFT adapter folders against files peft wrote (tests/ref/peft,
 * make_ref.py): adapters saved by PeftModel.save_pretrained load and give
 * PeftModel's logits; the old (peft 0.4) key set loads the same; a saved
 * adapter's safetensors file is byte-identical to peft's and its
 * adapter_config.json has peft's keys, values and formatting; the JSON
 * writer reproduces peft's text; unsupported and malformed adapters are
 * refused with messages that name the problem. */
#include <jansson.h>

#include "lora/lora.h"
#include "lora/peft.h"
#include "peft_test.h"

static const double TOL = 2e-5; /* f32 graph vs PyTorch f32, relative to the largest logit */

static void check_logits(struct ftq_model *m, const pt_ref *r, const char *name, const char *what) {
  float *got = pt_logits(m, r->ids);
  double e = pt_max_rel(got, pt_ref_logits(r, name), (size_t)(ROWS * SEQ * r->vocab));
  CHECK_MSG(e < TOL, "%s: logits differ from %s by %.3g", what, name, e);
  free(got);
}

/* Loads `dir` and checks its logits against `ref_name`; returns the adapter. */
static ftq_lora *load_and_check(struct ftq_model *m, const pt_ref *r, const char *dir, const char *ref_name) {
  ftq_lora *l = NULL;
  CHECK_OK(ftq_lora_load(m, dir, NULL, NULL, &l));
  if (!l) return NULL;
  REQUIRE_OK(ftq_lora_set_active(l, 1));
  check_logits(m, r, ref_name, dir);
  return l;
}

/* Re-serialising peft's own adapter_config.json gives peft's text. */
static void check_json_writer(void) {
  const char *files[] = {REF_DIR "/adapter_all/adapter_config.json", REF_DIR "/adapter_qvod/adapter_config.json",
                         REF_DIR "/adapter_old/adapter_config.json", TINY "/config.json"};
  for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
    char *text = pt_slurp(files[i], NULL);
    json_error_t err;
    json_t *v = text ? json_loads(text, 0, &err) : NULL;
    CHECK_MSG(v != NULL, "cannot parse %s", files[i]);
    char *mine = v ? ftq_py_json_dumps(v) : NULL;
    /* transformers ends config.json with a newline, peft writes none */
    size_t n = text ? strlen(text) : 0;
    if (n && text[n - 1] == '\n') text[--n] = '\0';
    CHECK_MSG(mine && text && strcmp(mine, text) == 0, "%s: json.dumps text not reproduced:\n%s", files[i],
              mine ? mine : "(null)");
    free(mine);
    json_decref(v);
    free(text);
  }
  /* escapes as Python's ensure_ascii writes them */
  json_t *o = json_pack("{s:s, s:f, s:f, s:[], s:{}, s:i}", "k", "a\"b\\c\n\x01\x7f\xc3\xa9\xf0\x9f\x98\x80", "x", 0.1,
                        "y", 1e-05, "e", "d", "i", -3);
  char *t = ftq_py_json_dumps(o);
  const char *want = "{\n  \"d\": {},\n  \"e\": [],\n  \"i\": -3,\n  \"k\": \"a\\\"b\\\\c\\n\\u0001\\u007f\\u00e9"
                     "\\ud83d\\ude00\",\n  \"x\": 0.1,\n  \"y\": 1e-05\n}";
  CHECK_MSG(t && strcmp(t, want) == 0, "escapes: got\n%s", t ? t : "(null)");
  free(t);
  json_decref(o);
}

/* Our adapter_config.json against peft's: same keys and values (the
 * projections compared as a set: peft writes them in set order). */
static void check_config_like_peft(const char *ours, const char *peft) {
  json_error_t err;
  json_t *a = json_load_file(ours, 0, &err), *b = json_load_file(peft, 0, &err);
  CHECK_MSG(a && b, "cannot parse %s or %s", ours, peft);
  if (!a || !b) goto out;
  CHECK_MSG(json_object_size(a) == json_object_size(b), "%zu keys written, peft wrote %zu", json_object_size(a),
            json_object_size(b));
  const char *key;
  json_t *v;
  json_object_foreach(b, key, v) {
    json_t *w = json_object_get(a, key);
    if (strcmp(key, "target_modules") == 0) {
      int same = w && json_array_size(w) == json_array_size(v);
      for (size_t i = 0; same && i < json_array_size(v); i++) {
        int found = 0;
        for (size_t k = 0; k < json_array_size(w); k++) found |= json_equal(json_array_get(v, i), json_array_get(w, k));
        same = found;
      }
      CHECK_MSG(same, "target_modules differ from peft's");
    } else {
      CHECK_MSG(w && json_equal(w, v), "key %s differs from peft's", key);
    }
  }
out:
  json_decref(a);
  json_decref(b);
}

static void check_save(struct ftq_model *m, ftq_lora *qvod, const pt_ref *r) {
  char *dir = pt_tmpdir(), out[1024];
  snprintf(out, sizeof out, "%s/saved", dir);
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "base_model_name_or_path", "tiny"));
  CHECK_OK(ftq_lora_save(qvod, out, o));
  CHECK_MSG(pt_same_file(pt_path(out, "adapter_model.safetensors"), REF_DIR "/adapter_qvod/adapter_model.safetensors"),
            "adapter_model.safetensors is not byte-identical to peft's");
  check_config_like_peft(pt_path(out, "adapter_config.json"), REF_DIR "/adapter_qvod/adapter_config.json");
  /* without the option, the path the model was loaded from */
  CHECK_OK(ftq_lora_save(qvod, out, NULL));
  char *text = pt_slurp(pt_path(out, "adapter_config.json"), NULL);
  CHECK(text && strstr(text, "\"base_model_name_or_path\": \"" TINY "\""));
  free(text);
  /* what we saved loads back to the same logits */
  ftq_lora *back = load_and_check(m, r, out, "logits_qvod");
  ftq_lora_destroy(back);
  /* no temporary files are left behind */
  CHECK(access(pt_path(out, "adapter_config.json.tmp"), F_OK) != 0);
  ftq_options_destroy(o);
  pt_rmtree(dir);
}

/* An adapter folder made from adapter_qvod with one change. */
static char *variant(const char *config_from, const char *replace_from, const char *replace_to) {
  char *dir = pt_tmpdir();
  char *text = pt_slurp(config_from, NULL);
  char *hit = text ? strstr(text, replace_from) : NULL;
  if (!hit) {
    fprintf(stderr, "variant: '%s' not in %s\n", replace_from, config_from);
    exit(1);
  }
  size_t n = strlen(text) + strlen(replace_to) + 1;
  char *out = malloc(n);
  snprintf(out, n, "%.*s%s%s", (int)(hit - text), text, replace_to, hit + strlen(replace_from));
  pt_write(pt_path(dir, "adapter_config.json"), out);
  size_t len = 0;
  char *st = pt_slurp(REF_DIR "/adapter_qvod/adapter_model.safetensors", &len);
  FILE *f = fopen(pt_path(dir, "adapter_model.safetensors"), "wb");
  fwrite(st, 1, len, f);
  fclose(f);
  free(st);
  free(out);
  free(text);
  return dir;
}

static void expect_refused(struct ftq_model *m, const char *dir, ftq_status want, const char *needle) {
  ftq_lora *l = (ftq_lora *)1;
  CHECK_STATUS(ftq_lora_load(m, dir, NULL, NULL, &l), want);
  CHECK(l == NULL);
  CHECK_ERROR_MENTIONS(needle);
}

static void check_config_errors(struct ftq_model *m) {
  const char *qvod = REF_DIR "/adapter_qvod/adapter_config.json";
  static const struct {
    const char *from, *to;
    ftq_status st;
    const char *needle;
  } cases[] = {
      {"\"use_dora\": false", "\"use_dora\": true", FTQ_ERR_UNSUPPORTED, "use_dora"},
      {"\"rank_pattern\": {}", "\"rank_pattern\": {\"q_proj\": 8}", FTQ_ERR_UNSUPPORTED, "rank_pattern"},
      {"\"modules_to_save\": null", "\"modules_to_save\": [\"lm_head\"]", FTQ_ERR_UNSUPPORTED, "modules_to_save"},
      {"\"peft_type\": \"LORA\"", "\"peft_type\": \"PREFIX_TUNING\"", FTQ_ERR_UNSUPPORTED, "PREFIX_TUNING"},
      {"\"r\": 4", "\"r\": 16", FTQ_ERR_FORMAT, "rank 4"},
      {"\"r\": 4", "\"r\": \"four\"", FTQ_ERR_OPTION_TYPE, "'r'"},
      {"\"bias\": \"none\"", "\"bias\": \"all\"", FTQ_ERR_UNSUPPORTED, "bias"},
      {"\"init_lora_weights\": false", "\"init_lora_weights\": \"pissa\"", FTQ_ERR_UNSUPPORTED, "pissa"},
      {"\"lora_alpha\": 8,", "\"lora_alpha\": 8,,", FTQ_ERR_FORMAT, "adapter_config.json"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
    char *dir = variant(qvod, cases[i].from, cases[i].to);
    expect_refused(m, dir, cases[i].st, cases[i].needle);
    pt_rmtree(dir);
  }
  /* settings that do not change the adapter are accepted */
  char *dir = variant(qvod, "\"init_lora_weights\": false", "\"init_lora_weights\": \"eva\"");
  ftq_lora *l = NULL;
  CHECK_OK(ftq_lora_load(m, dir, "eva", NULL, &l));
  ftq_lora_destroy(l);
  pt_rmtree(dir);
}

/* Writes an adapter whose tensors are `n` named copies of one A/B shape pair. */
static char *tensor_variant(const char *const *names, const int64_t (*shapes)[2], size_t n) {
  char *dir = variant(REF_DIR "/adapter_qvod/adapter_config.json", "\"r\": 4", "\"r\": 4");
  ftq_st_writer *w;
  REQUIRE_OK(ftq_st_writer_create(&w));
  static float zeros[64 * 64];
  for (size_t i = 0; i < n; i++) REQUIRE_OK(ftq_st_writer_add(w, names[i], FTQ_DTYPE_F32, 2, shapes[i], zeros));
  REQUIRE_OK(ftq_st_writer_write(w, pt_path(dir, "adapter_model.safetensors")));
  ftq_st_writer_destroy(w);
  return dir;
}

static void check_tensor_errors(struct ftq_model *m) {
  const char *P = "base_model.model.model.layers.";
  char n[4][160];
  const char *names[4] = {n[0], n[1], n[2], n[3]};
  int64_t shapes[4][2] = {{4, 32}, {32, 4}, {4, 32}, {32, 4}};
  /* only layer 0: libftq adapters cover every layer */
  snprintf(n[0], sizeof n[0], "%s0.self_attn.q_proj.lora_A.weight", P);
  snprintf(n[1], sizeof n[1], "%s0.self_attn.q_proj.lora_B.weight", P);
  char *dir = tensor_variant(names, (const int64_t(*)[2])shapes, 2);
  expect_refused(m, dir, FTQ_ERR_UNSUPPORTED, "every layer");
  pt_rmtree(dir);
  /* a LoRA on the LM head */
  snprintf(n[2], sizeof n[2], "%s1.self_attn.q_proj.lora_A.weight", P);
  snprintf(n[3], sizeof n[3], "base_model.model.lm_head.lora_A.weight");
  dir = tensor_variant(names, (const int64_t(*)[2])shapes, 4);
  expect_refused(m, dir, FTQ_ERR_UNSUPPORTED, "lm_head.lora_A");
  pt_rmtree(dir);
  /* wrong shape for the model */
  snprintf(n[3], sizeof n[3], "%s1.self_attn.q_proj.lora_B.weight", P);
  shapes[3][0] = 16;
  dir = tensor_variant(names, (const int64_t(*)[2])shapes, 4);
  expect_refused(m, dir, FTQ_ERR_SHAPE, "[32, 4]");
  pt_rmtree(dir);
  /* both names of one parameter (with and without the adapter name) */
  shapes[3][0] = 32;
  snprintf(n[3], sizeof n[3], "%s0.self_attn.q_proj.lora_A.default.weight", P);
  dir = tensor_variant(names, (const int64_t(*)[2])shapes, 4);
  expect_refused(m, dir, FTQ_ERR_FORMAT, "same parameter");
  pt_rmtree(dir);
}

static void check_missing(struct ftq_model *m) {
  expect_refused(m, REF_DIR "/no_such_adapter", FTQ_ERR_NOT_FOUND, "no_such_adapter");
  char *dir = pt_tmpdir();
  pt_write(pt_path(dir, "adapter_config.json"), "{\"peft_type\": \"LORA\"}");
  expect_refused(m, dir, FTQ_ERR_NOT_FOUND, "adapter_model.safetensors");
  pt_write(pt_path(dir, "adapter_model.bin"), "pickle");
  expect_refused(m, dir, FTQ_ERR_UNSUPPORTED, "adapter_model.bin");
  /* a truncated weights file, a configuration that is not an object */
  pt_write(pt_path(dir, "adapter_model.safetensors"), "\x40\0\0\0\0\0\0\0{\"__metadata__\"");
  expect_refused(m, dir, FTQ_ERR_FORMAT, "adapter_model.safetensors");
  pt_write(pt_path(dir, "adapter_config.json"), "[1, 2]");
  expect_refused(m, dir, FTQ_ERR_FORMAT, "not a JSON object");
  pt_rmtree(dir);
}

/* The option system takes PEFT's JSON booleans for init_lora_weights. */
static void check_option_booleans(void) {
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  const char *v = NULL;
  CHECK_OK(ftq_options_load_json(o, "{\"init_lora_weights\": false}"));
  CHECK_OK(ftq_options_get_string(o, "init_lora_weights", &v));
  CHECK(v && strcmp(v, "false") == 0);
  CHECK_OK(ftq_options_load_json(o, "{\"init_lora_weights\": true}"));
  CHECK_OK(ftq_options_get_string(o, "init_lora_weights", &v));
  CHECK(v && strcmp(v, "true") == 0);
  /* only where "true" and "false" are among the choices */
  CHECK_STATUS(ftq_options_load_json(o, "{\"bias\": true}"), FTQ_ERR_OPTION_TYPE);
  CHECK_STATUS(ftq_options_load_json(o, "{\"target_modules\": false}"), FTQ_ERR_OPTION_TYPE);
  ftq_options_destroy(o);
}

int main(void) {
  pt_env e;
  pt_env_open(&e);
  ftq_model *m = e.m;
  check_logits(m, &e.r, "logits_base", "base model");

  ftq_lora *all = load_and_check(m, &e.r, REF_DIR "/adapter_all", "logits_all");
  double s = 0;
  CHECK_OK(ftq_lora_scaling(all, &s));
  CHECK_MSG(fabs(s - 16.0 / sqrt(8.0)) < 1e-6, "use_rslora scaling %g", s);
  CHECK(ftq_lora_tensor_count(all) == 2 * 2 * 7);
  ftq_lora *qvod = load_and_check(m, &e.r, REF_DIR "/adapter_qvod", "logits_qvod");
  CHECK(ftq_lora_tensor_count(qvod) == 2 * 2 * 4);
  ftq_lora *old = load_and_check(m, &e.r, REF_DIR "/adapter_old", "logits_qvod");
  ftq_lora_set_active(qvod, 1);

  check_json_writer();
  if (qvod) check_save(m, qvod, &e.r);
  check_config_errors(m);
  check_tensor_errors(m);
  check_missing(m);
  check_option_booleans();

  ftq_lora_destroy(old);
  ftq_lora_destroy(qvod);
  ftq_lora_destroy(all);
  return pt_env_close(&e, "test_peft_files");
}
