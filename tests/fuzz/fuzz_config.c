/* libFuzzer target: config.json parsing on arbitrary text. An accepted
 * configuration must survive the trip through ftq_model_config_to_json and
 * back unchanged. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model/model_load.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  ftq_model_config a, b;
  if (ftq_hf_config_parse((const char *)data, size, "fuzz", 1, &a) != FTQ_OK) return 0;
  char *text = ftq_model_config_to_json(&a);
  if (!text) abort();
  if (ftq_hf_config_parse(text, strlen(text), "round trip", 0, &b) != FTQ_OK) abort();
  if (memcmp(&a, &b, sizeof a) != 0) abort(); /* both were zeroed before parsing */
  free(text);
  return 0;
}
