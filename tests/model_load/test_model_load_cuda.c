/* Loading onto a CUDA device gives the same weights as loading on the CPU:
 * an HF folder with dtype conversion (the chunked upload path), a GGUF file
 * (dequantization + un-permutation), and random initialisation. Skips where
 * no GPU can exist (test_gpu_unavailable). */
#include "model/model.h"
#include "model_test_util.h"

static int same_tensor(ftq_context *gpu, const ftq_tensor *g, const ftq_tensor *c, const char *what) {
  if (!g->data && !c->data) return 1;
  if (!g->data || !c->data || g->dtype != c->dtype || ftq_tensor_numel(g) != ftq_tensor_numel(c)) {
    fprintf(stderr, "%s: layout differs\n", what);
    return 0;
  }
  size_t n = ftq_tensor_bytes(g);
  void *host = malloc(n + 1);
  int ok = ftq_tensor_download(gpu, g, host) == FTQ_OK && memcmp(host, c->data, n) == 0;
  if (!ok) fprintf(stderr, "%s: values differ\n", what);
  free(host);
  return ok;
}

static void compare(ftq_context *gpu, const ftq_model *g, const ftq_model *c, const char *what) {
  CHECK_MSG(same_tensor(gpu, &g->tok_embeddings, &c->tok_embeddings, what), "%s: embedding", what);
  CHECK_MSG(same_tensor(gpu, &g->final_norm, &c->final_norm, what), "%s: norm", what);
  CHECK_MSG(same_tensor(gpu, &g->lm_head, &c->lm_head, what), "%s: lm_head", what);
  for (int64_t l = 0; l < c->cfg.num_hidden_layers; l++) {
    CHECK(same_tensor(gpu, &g->layers[l].attn_norm, &c->layers[l].attn_norm, what));
    CHECK(same_tensor(gpu, &g->layers[l].ffn_norm, &c->layers[l].ffn_norm, what));
    for (int p = 0; p < FTQ_PROJ_COUNT; p++) {
      CHECK_MSG(same_tensor(gpu, &g->layers[l].proj[p].plain, &c->layers[l].proj[p].plain, what), "%s: layer %lld proj %d",
                what, (long long)l, p);
      CHECK(same_tensor(gpu, &g->layers[l].bias[p], &c->layers[l].bias[p], what));
    }
  }
}

int main(void) {
  ftq_context *gpu, *cpu;
  if (ftq_context_create("cuda", NULL, &gpu) != FTQ_OK) return test_gpu_unavailable("test_model_load_cuda", ftq_last_error());
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  ftq_options *o;
  REQUIRE_OK(ftq_options_create(&o));
  REQUIRE_OK(ftq_options_set_string(o, "torch_dtype", "float32"));
  static const struct {
    const char *path;
    int convert;
  } cases[] = {{"tests/ref/io/tiny_llama", 1}, {"tests/ref/io/tiny_llama_sharded", 0}, {"tests/ref/io/tiny_qwen2", 0},
               {"tests/ref/io/gguf/tiny_llama.gguf", 0}, {"tests/ref/io/gguf/tiny_llama.gguf", 1}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    ftq_model *g, *c;
    REQUIRE_OK(ftq_model_load(gpu, cases[i].path, cases[i].convert ? o : NULL, &g));
    REQUIRE_OK(ftq_model_load(cpu, cases[i].path, cases[i].convert ? o : NULL, &c));
    compare(gpu, g, c, cases[i].path);
    size_t gb, cb;
    CHECK_OK(ftq_model_memory(g, FTQ_MEM_WEIGHTS, &gb));
    CHECK_OK(ftq_model_memory(c, FTQ_MEM_WEIGHTS, &cb));
    CHECK(gb == cb);
    ftq_model_destroy(g);
    ftq_model_destroy(c);
  }
  const char *cfg = "{\"hidden_size\": 96, \"intermediate_size\": 160, \"num_hidden_layers\": 2, "
                    "\"num_attention_heads\": 6, \"num_key_value_heads\": 2, \"vocab_size\": 300, \"torch_dtype\": \"float16\"}";
  ftq_model *g, *c;
  REQUIRE_OK(ftq_model_init_random(gpu, cfg, 11, NULL, &g));
  REQUIRE_OK(ftq_model_init_random(cpu, cfg, 11, NULL, &c));
  compare(gpu, g, c, "random");
  ftq_model_destroy(g);
  ftq_model_destroy(c);
  size_t left;
  CHECK_OK(ftq_context_memory(gpu, FTQ_MEM_WEIGHTS, &left, NULL));
  CHECK(left == 0);
  ftq_options_destroy(o);
  ftq_context_destroy(cpu);
  ftq_context_destroy(gpu);
  return test_finish("test_model_load_cuda");
}
