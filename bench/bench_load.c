/* Model loading: time and host memory to load a Hugging Face folder (random
 * bf16 weights in sharded safetensors, written by this program if absent)
 * onto a device with ftq_model_load. Prints JSON lines; bench/peer/load_hf.py
 * loads the same folder with transformers' from_pretrained.
 *
 *   bench_load [--shape 7b|1b|tiny] [--device cpu|cuda[:N]] [--dir PATH]
 *              [--option name=value]... [--repeat N] [--shard-mb N]
 *
 * Host memory: the peak of RssAnon (anonymous resident memory: what the
 * process holds beyond the mapped model files), sampled after every tensor
 * through the debug log, minus its value before the load; VmHWM (peak of all
 * resident memory, mapped file pages included) is reported too. The folder's
 * pages stay in the page cache between repeats: the first repeat may read
 * from disk, later ones from a warm cache. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "core/half.h"
#include "io/file.h"
#include "io/safetensors.h"
#include "libftq/ftq.h"

typedef struct shape {
  const char *name;
  int64_t hidden, inter, layers, heads, kv, vocab;
} shape;

static const shape shapes[] = {
    {"7b", 4096, 11008, 32, 32, 32, 32000}, /* Llama-2-7B */
    {"1b", 2048, 5632, 22, 32, 4, 32000},   /* TinyLlama-1.1B */
    {"tiny", 256, 688, 4, 8, 4, 4096},      /* CPU smoke test */
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* kB of a /proc/self/status field ("RssAnon", "VmHWM"). */
static long proc_kb(const char *field) {
  FILE *f = fopen("/proc/self/status", "r");
  if (!f) return -1;
  char line[256];
  long v = -1;
  size_t n = strlen(field);
  while (fgets(line, sizeof line, f))
    if (!strncmp(line, field, n) && line[n] == ':') v = strtol(line + n + 1, NULL, 10);
  fclose(f);
  return v;
}

static long peak_anon_kb;
static void on_log(void *user, ftq_log_level level, const char *msg) {
  (void)user;
  long a = proc_kb("RssAnon");
  if (a > peak_anon_kb) peak_anon_kb = a;
  if (level <= FTQ_LOG_INFO) fprintf(stderr, "bench_load: %s\n", msg);
}

/* ---- writing the folder ---- */

typedef struct fill_state {
  uint64_t s;
  int ones; /* norms */
} fill_state;

/* Random bf16 values of magnitude 2^-10..2^-5 (like trained weights; never
 * zero, NaN or subnormal), from a fast xorshift. */
static ftq_status fill_bf16(void *user, const char *name, void *dst, size_t bytes) {
  fill_state *st = user;
  uint16_t *p = dst;
  uint64_t s = st->s ^ (uint64_t)strlen(name) * 0x9E3779B97F4A7C15ull;
  for (size_t i = 0; i < bytes / 2; i++) {
    s ^= s << 13;
    s ^= s >> 7;
    s ^= s << 17;
    uint32_t r = (uint32_t)(s >> 32);
    p[i] = st->ones ? 0x3f80 : (uint16_t)((r & 0x8000u) | ((117u + (r >> 16) % 6u) << 7) | (r & 0x7fu));
  }
  st->s = s;
  return FTQ_OK;
}

static int write_folder(const char *dir, const shape *sh, uint64_t shard_bytes) {
  char path[4096];
  snprintf(path, sizeof path, "%s/.complete", dir);
  if (ftq_file_exists(path)) return 0;
  mkdir(dir, 0755);
  fprintf(stderr, "bench_load: writing a random bf16 %s model to %s\n", sh->name, dir);
  double t0 = now_s();
  snprintf(path, sizeof path, "%s/config.json", dir);
  FILE *f = fopen(path, "w");
  if (!f) {
    fprintf(stderr, "bench_load: cannot write %s: %s\n", path, strerror(errno));
    return 1;
  }
  fprintf(f,
          "{\n  \"architectures\": [\"LlamaForCausalLM\"],\n  \"model_type\": \"llama\",\n  \"hidden_size\": %lld,\n"
          "  \"intermediate_size\": %lld,\n  \"num_hidden_layers\": %lld,\n  \"num_attention_heads\": %lld,\n"
          "  \"num_key_value_heads\": %lld,\n  \"vocab_size\": %lld,\n  \"max_position_embeddings\": 4096,\n"
          "  \"rms_norm_eps\": 1e-05,\n  \"rope_theta\": 10000.0,\n  \"hidden_act\": \"silu\",\n"
          "  \"tie_word_embeddings\": false,\n  \"bos_token_id\": 1,\n  \"eos_token_id\": 2,\n"
          "  \"torch_dtype\": \"bfloat16\"\n}\n",
          (long long)sh->hidden, (long long)sh->inter, (long long)sh->layers, (long long)sh->heads, (long long)sh->kv,
          (long long)sh->vocab);
  fclose(f);
  ftq_st_writer *w;
  if (ftq_st_writer_create(&w) != FTQ_OK) return 1;
  static fill_state rnd = {0x1234567887654321ull, 0}, one = {0, 1};
  int64_t hd = sh->hidden / sh->heads;
  int64_t emb[2] = {sh->vocab, sh->hidden}, norm[1] = {sh->hidden};
  ftq_status st = ftq_st_writer_add_fn(w, "model.embed_tokens.weight", FTQ_DTYPE_BF16, 2, emb, fill_bf16, &rnd);
  for (int64_t l = 0; l < sh->layers && st == FTQ_OK; l++) {
    struct {
      const char *n;
      int64_t r, c;
    } p[] = {{"self_attn.q_proj", sh->heads * hd, sh->hidden}, {"self_attn.k_proj", sh->kv * hd, sh->hidden},
             {"self_attn.v_proj", sh->kv * hd, sh->hidden},    {"self_attn.o_proj", sh->hidden, sh->heads * hd},
             {"mlp.gate_proj", sh->inter, sh->hidden},         {"mlp.up_proj", sh->inter, sh->hidden},
             {"mlp.down_proj", sh->hidden, sh->inter}};
    char name[128];
    snprintf(name, sizeof name, "model.layers.%lld.input_layernorm.weight", (long long)l);
    st = ftq_st_writer_add_fn(w, name, FTQ_DTYPE_BF16, 1, norm, fill_bf16, &one);
    for (int k = 0; k < 7 && st == FTQ_OK; k++) {
      int64_t s2[2] = {p[k].r, p[k].c};
      snprintf(name, sizeof name, "model.layers.%lld.%s.weight", (long long)l, p[k].n);
      st = ftq_st_writer_add_fn(w, name, FTQ_DTYPE_BF16, 2, s2, fill_bf16, &rnd);
    }
    snprintf(name, sizeof name, "model.layers.%lld.post_attention_layernorm.weight", (long long)l);
    if (st == FTQ_OK) st = ftq_st_writer_add_fn(w, name, FTQ_DTYPE_BF16, 1, norm, fill_bf16, &one);
  }
  if (st == FTQ_OK) st = ftq_st_writer_add_fn(w, "model.norm.weight", FTQ_DTYPE_BF16, 1, norm, fill_bf16, &one);
  if (st == FTQ_OK) st = ftq_st_writer_add_fn(w, "lm_head.weight", FTQ_DTYPE_BF16, 2, emb, fill_bf16, &rnd);
  int shards = 0;
  if (st == FTQ_OK) st = ftq_st_writer_write_sharded(w, dir, "model", shard_bytes, &shards);
  ftq_st_writer_destroy(w);
  if (st != FTQ_OK) {
    fprintf(stderr, "bench_load: writing %s: %s\n", dir, ftq_last_error());
    return 1;
  }
  snprintf(path, sizeof path, "%s/.complete", dir);
  f = fopen(path, "w");
  if (f) fclose(f);
  fprintf(stderr, "bench_load: wrote %d shard(s) in %.1f s\n", shards, now_s() - t0);
  return 0;
}

static uint64_t folder_bytes(const char *dir) {
  ftq_st_set *s;
  uint64_t n = 0;
  if (ftq_st_set_open(dir, &s) != FTQ_OK) return 0;
  for (size_t i = 0; i < ftq_st_set_count(s); i++) n += ftq_st_set_tensor(s, i)->bytes;
  ftq_st_set_close(s);
  return n;
}

int main(int argc, char **argv) {
  const char *shape_name = "tiny", *device = "cpu", *dir = NULL;
  int repeat = 3;
  uint64_t shard_mb = 5000; /* transformers' default max_shard_size was "5GB" in 4.3x */
  ftq_options *opts;
  if (ftq_options_create(&opts) != FTQ_OK) return 1;
  char opt_desc[1024] = "";
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "--shape") && v) shape_name = argv[++i];
    else if (!strcmp(a, "--device") && v) device = argv[++i];
    else if (!strcmp(a, "--dir") && v) dir = argv[++i];
    else if (!strcmp(a, "--repeat") && v) repeat = atoi(argv[++i]);
    else if (!strcmp(a, "--shard-mb") && v) shard_mb = (uint64_t)atoll(argv[++i]);
    else if (!strcmp(a, "--option") && v) {
      char kv[512];
      snprintf(kv, sizeof kv, "%s", argv[++i]);
      char *eq = strchr(kv, '=');
      if (!eq || ftq_options_set_parse(opts, (*eq = '\0', kv), eq + 1) != FTQ_OK) {
        fprintf(stderr, "bench_load: --option %s: %s\n", argv[i], ftq_last_error());
        return 2;
      }
      snprintf(opt_desc + strlen(opt_desc), sizeof opt_desc - strlen(opt_desc), "%s%s=%s", *opt_desc ? "," : "", kv, eq + 1);
    } else {
      fprintf(stderr, "usage: bench_load [--shape 7b|1b|tiny] [--device cpu|cuda[:N]] [--dir PATH] "
                      "[--option name=value]... [--repeat N] [--shard-mb N]\n");
      return 2;
    }
  }
  const shape *sh = NULL;
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++)
    if (!strcmp(shapes[i].name, shape_name)) sh = &shapes[i];
  if (!sh) {
    fprintf(stderr, "bench_load: unknown shape %s\n", shape_name);
    return 2;
  }
  char defdir[256];
  if (!dir) {
    snprintf(defdir, sizeof defdir, "/tmp/ftq-bench-load-%s", sh->name);
    dir = defdir;
  }
  if (write_folder(dir, sh, shard_mb << 20)) return 1;
  uint64_t file_bytes = folder_bytes(dir);

  for (int r = 0; r < repeat; r++) {
    ftq_context *ctx;
    if (ftq_context_create(device, NULL, &ctx) != FTQ_OK) {
      fprintf(stderr, "bench_load: %s\n", ftq_last_error());
      return 1;
    }
    ftq_context_set_log_callback(ctx, on_log, NULL);
    ftq_context_set_log_level(ctx, FTQ_LOG_DEBUG); /* one message per tensor: RssAnon is sampled there */
    long base = proc_kb("RssAnon");
    peak_anon_kb = base;
    double t0 = now_s();
    ftq_model *m;
    ftq_status st = ftq_model_load(ctx, dir, opts, &m);
    if (st == FTQ_OK) st = ftq_context_synchronize(ctx);
    double secs = now_s() - t0;
    if (st != FTQ_OK) {
      fprintf(stderr, "bench_load: %s\n", ftq_last_error());
      return 1;
    }
    long a = proc_kb("RssAnon");
    if (a > peak_anon_kb) peak_anon_kb = a;
    size_t weights = 0;
    ftq_model_memory(m, FTQ_MEM_ALL, &weights);
    printf("{\"bench\": \"load\", \"impl\": \"libftq\", \"shape\": \"%s\", \"device\": \"%s\", \"options\": \"%s\", "
           "\"repeat\": %d, \"seconds\": %.3f, \"file_gb\": %.3f, \"gb_per_s\": %.2f, \"device_weights_gb\": %.3f, "
           "\"host_extra_peak_mb\": %.1f, \"vm_hwm_mb\": %.1f}\n",
           sh->name, ftq_context_device_name(ctx), opt_desc, r, secs, (double)file_bytes / 1e9,
           (double)file_bytes / 1e9 / secs, (double)weights / 1e9, (double)(peak_anon_kb - base) / 1024.0,
           (double)proc_kb("VmHWM") / 1024.0);
    fflush(stdout);
    ftq_model_destroy(m);
    ftq_context_destroy(ctx);
  }
  ftq_options_destroy(opts);
  return 0;
}
