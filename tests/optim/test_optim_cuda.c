/* The CUDA AdamW (paged and not, both modes) gives the same bits as the CPU
 * backend on the reference problem. */
#include "optim_ref.h"

static void final_params(ftq_context *ctx, adamw_problem *pb, ftq_adamw_mode mode, int paged, float *out[NP]) {
  adamw_run r;
  run_start(&r, ctx, pb, mode, paged);
  run_steps(&r, pb, 0, pb->steps, NULL);
  run_params(&r, pb, out);
  run_end(&r);
}

int main(void) {
  int ndev = 0;
  REQUIRE_OK(ftq_cuda_device_count(&ndev));
  if (ndev == 0) return test_gpu_unavailable("test_optim_cuda", ftq_last_error());
  json_t *root = load_ref();
  adamw_problem pb;
  problem_load(&pb, root);
  ftq_context *cpu, *gpu;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  for (int mode = 0; mode < 2; mode++)
    for (int paged = 0; paged < 2; paged++) {
      float *a[NP], *b[NP];
      final_params(cpu, &pb, (ftq_adamw_mode)mode, 0, a);
      final_params(gpu, &pb, (ftq_adamw_mode)mode, paged, b);
      for (int i = 0; i < NP; i++) {
        CHECK_MSG(memcmp(a[i], b[i], pb.n[i] * 4) == 0, "mode %d paged %d parameter %d: CUDA differs from CPU", mode,
                  paged, i);
        free(a[i]), free(b[i]);
      }
    }
  size_t cur;
  CHECK_OK(ftq_context_memory(gpu, FTQ_MEM_OPTIMIZER, &cur, NULL));
  CHECK(cur == 0);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  problem_free(&pb);
  json_decref(root);
  return test_finish("test_optim_cuda");
}
