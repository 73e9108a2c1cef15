/* Public forward/backward and eval on one dataset batch: the dataset's
 * batch arrays handed to the graph. */
#include "core/error.h"
#include "libftq/ftq_trainer.h"
#include "model/graph.h"
#include "train/batch.h"
#include "train/trainer.h"

/* The graph's view of a dataset batch (same arrays, no copy). */
void ftq_batch_to_graph(const ftq_batch *b, ftq_graph_batch *g) {
  g->n_rows = b->rows;
  g->seq_len = b->seq_len;
  g->input_ids = b->input_ids;
  g->labels = b->labels;
  g->attention_mask = b->attention_mask;
  g->position_ids = b->position_ids;
  g->seq_ids = b->sequence_ids;
}

ftq_status ftq_model_forward_backward(ftq_model *model, const ftq_batch *batch, const ftq_options *opts,
                                      uint64_t seed, uint64_t micro_step, double num_items, double *loss,
                                      int64_t *n_items) {
  return ftq_forward_backward_hooked(model, batch, opts, seed, micro_step, num_items, loss, n_items, NULL, NULL);
}

ftq_status ftq_forward_backward_hooked(ftq_model *model, const ftq_batch *batch, const ftq_options *opts,
                                       uint64_t seed, uint64_t micro_step, double num_items, double *loss,
                                       int64_t *n_items, ftq_status (*layer_grads_done)(void *, int64_t),
                                       void *hook_user) {
  FTQ_CHECK_ARG(model && batch, "ftq_model_forward_backward: model and batch must not be NULL");
  FTQ_CHECK_ARG(batch->rows > 0 && batch->labels, "ftq_model_forward_backward: the batch is empty or has no labels");
  FTQ_CHECK_ARG(micro_step < (1ull << 40), "ftq_model_forward_backward: micro_step must be below 2^40");
  ftq_graph_settings s;
  FTQ_TRY(ftq_graph_settings_init(opts, &s));
  s.seed = seed;
  s.step = micro_step;
  s.num_items = num_items;
  s.layer_grads_done = layer_grads_done;
  s.hook_user = hook_user;
  ftq_graph_batch g;
  ftq_batch_to_graph(batch, &g);
  ftq_graph_result r;
  FTQ_TRY(ftq_graph_forward_backward(model, &g, &s, &r, NULL, NULL));
  if (loss) *loss = r.loss;
  if (n_items) *n_items = r.n_items;
  return FTQ_OK;
}

ftq_status ftq_model_eval_batch(ftq_model *model, const ftq_batch *batch, double *loss_sum, int64_t *n_items) {
  FTQ_CHECK_ARG(model && batch && loss_sum && n_items, "ftq_model_eval_batch: arguments must not be NULL");
  FTQ_CHECK_ARG(batch->rows > 0 && batch->labels, "ftq_model_eval_batch: the batch is empty or has no labels");
  ftq_graph_settings s;
  FTQ_TRY(ftq_graph_settings_init(NULL, &s));
  s.training = 0;
  ftq_graph_batch g;
  ftq_batch_to_graph(batch, &g);
  ftq_graph_result r;
  FTQ_TRY(ftq_graph_forward(model, &g, &s, &r, NULL, NULL));
  *loss_sum = r.loss_sum;
  *n_items = r.n_items;
  return FTQ_OK;
}
