/* The graph on a CUDA context. Until the CUDA module implements the model
 * operations (issue 8) the graph must refuse with FTQ_ERR_UNSUPPORTED naming
 * the missing operation; once it does, its logits and loss must match the
 * CPU backend's within the tolerance of its compute dtype. */
#include "libftq/ftq_lora.h"
#include "random_model.h"

int main(void) {
  int n = 0;
  ftq_cuda_device_count(&n);
  if (n == 0) return test_gpu_unavailable("test_model_cuda", ftq_last_error());
  ftq_context *cpu, *gpu;
  REQUIRE_OK(ftq_context_create("cpu", NULL, &cpu));
  REQUIRE_OK(ftq_context_create("cuda:0", NULL, &gpu));
  ftq_model_config c = rand_config(64, 96, 2, 4, 2, 100);
  struct ftq_model *mc = rand_model(cpu, &c, 5, NULL), *mg = rand_model(gpu, &c, 5, NULL);
  ftq_lora *lc, *lg;
  REQUIRE_OK(ftq_lora_create(mc, NULL, NULL, 3, &lc));
  REQUIRE_OK(ftq_lora_create(mg, NULL, NULL, 3, &lg));
  REQUIRE_OK(ftq_lora_set_active(lc, 1));
  REQUIRE_OK(ftq_lora_set_active(lg, 1));
  int32_t ids[8] = {1, 5, 9, 13, 17, 21, 25, 29};
  ftq_graph_batch b = {1, 8, ids, ids, NULL, NULL, NULL};
  float lcpu[8 * 100], lgpu[8 * 100];
  ftq_graph_result rc, rg;
  REQUIRE_OK(ftq_graph_forward(mc, &b, NULL, &rc, NULL, lcpu));
  ftq_status st = ftq_graph_forward(mg, &b, NULL, &rg, NULL, lgpu);
  if (st == FTQ_ERR_UNSUPPORTED) {
    printf("test_model_cuda: the CUDA backend refuses as expected: %s\n", ftq_last_error());
    CHECK_ERROR_MENTIONS("cuda");
    CHECK_ERROR_MENTIONS("does not implement");
    CHECK_STATUS(ftq_graph_forward_backward(mg, &b, NULL, &rg, NULL, NULL), FTQ_ERR_UNSUPPORTED);
  } else {
    CHECK_OK(st);
    double e = test_rel_error_f32(lgpu, lcpu, 8 * 100);
    printf("test_model_cuda: logits CUDA vs CPU relative error %.2e, loss %.6f vs %.6f\n", e, rg.loss, rc.loss);
    CHECK(e < 2e-2);
    CHECK(fabs(rg.loss - rc.loss) < 2e-2 * fabs(rc.loss));
  }
  ftq_lora_destroy(lc);
  ftq_lora_destroy(lg);
  ftq_model_free(mc);
  ftq_model_free(mg);
  ftq_context_destroy(gpu);
  ftq_context_destroy(cpu);
  return test_finish("test_model_cuda");
}
