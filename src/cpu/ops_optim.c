/* CPU backend: the AdamW update (formulas in backend.h / qlora-spec.md §4).
 * Written as separate fp32 operations in the order the references use;
 * the build does not contract them into FMAs (-std=c11 keeps
 * -ffp-contract=off), so CUDA's explicit _rn operations match bit for bit. */
#include <math.h>

#include "cpu/cpu.h"

ftq_status ftq_cpu_adamw(void *be, const ftq_adamw_args *a) {
  (void)be;
  for (size_t i = 0; i < a->n; i++) {
    float g = a->grad[i] * a->grad_scale;
    float p = a->param[i], m = a->m[i], v = a->v[i];
    if (a->mode == FTQ_ADAMW_BNB) {
      m = m * a->beta1 + a->one_minus_beta1 * g;
      v = v * a->beta2 + a->one_minus_beta2 * (g * g);
      p = p + a->step_size * (m / (sqrtf(v) + a->eps));
      p = p * a->decay_factor;
    } else {
      p = p * a->decay_factor;
      m = m + a->one_minus_beta1 * (g - m); /* torch's lerp_ with weight < 0.5 */
      v = v * a->beta2;
      v = v + a->one_minus_beta2 * g * g; /* addcmul_: (value * t1) * t2 */
      float denom = sqrtf(v) / a->bc2_sqrt + a->eps;
      p = p + a->step_size * m / denom; /* addcdiv_: (value * t1) / t2 */
    }
    a->param[i] = p;
    a->m[i] = m;
    a->v[i] = v;
  }
  return FTQ_OK;
}
