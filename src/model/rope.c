/* Rotary inverse frequencies, computed in f32 operation by operation as
 * transformers does (modeling_rope_utils: default, linear, llama3), so the
 * angles match PyTorch's to the last bit wherever powf does. */
#include <math.h>

#include "model/graph.h"

void ftq_rope_inv_freq(const ftq_model_config *c, float *inv) {
  const int64_t dim = c->head_dim, half = dim / 2;
  const float base = (float)c->rope_theta;
  for (int64_t i = 0; i < half; i++) {
    const float e = (float)(2 * i) / (float)dim;
    inv[i] = 1.0f / powf(base, e);
  }
  if (c->rope_scaling == FTQ_ROPE_LINEAR) {
    for (int64_t i = 0; i < half; i++) inv[i] = inv[i] / (float)c->rope_factor;
  } else if (c->rope_scaling == FTQ_ROPE_LLAMA3) {
    const float factor = (float)c->rope_factor, low = (float)c->rope_low_freq_factor;
    const double old_len = (double)c->rope_original_max_position;
    const float low_wl = (float)(old_len / c->rope_low_freq_factor);
    const float high_wl = (float)(old_len / c->rope_high_freq_factor);
    const float two_pi = (float)(2.0 * M_PI);
    const float span = (float)(c->rope_high_freq_factor - c->rope_low_freq_factor);
    for (int64_t i = 0; i < half; i++) {
      const float f = inv[i];
      const float wavelen = two_pi / f;
      float fl = wavelen > low_wl ? f / factor : f;
      const float smooth = ((float)old_len / wavelen - low) / span;
      const float smoothed = (1.0f - smooth) * fl / factor + smooth * fl;
      if (!(wavelen < high_wl) && !(wavelen > low_wl)) fl = smoothed;
      inv[i] = fl;
    }
  }
}
