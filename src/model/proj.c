/* Names of the decoder layer's projections. */
#include "model/model.h"

const char *ftq_proj_name(ftq_proj p) {
  static const char *names[FTQ_PROJ_COUNT] = {"q_proj", "k_proj", "v_proj", "o_proj",
                                              "gate_proj", "up_proj", "down_proj"};
  return (unsigned)p < FTQ_PROJ_COUNT ? names[p] : "?";
}
