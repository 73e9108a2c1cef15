/* dQuantize<0> of bitsandbytes (csrc/kernels.cu), shared by the CPU
 * reference (codebook.c) and the CUDA kernels (cuda/quant.cu) so both run
 * the same search: a 7-step binary search over a sorted 256-entry code,
 * then the comparison with the fp32 midpoint. The includer defines
 * FTQ_Q8_QUALIFIERS (function qualifiers), FTQ_Q8_NAME (the function's
 * name), and FTQ_Q8_MUL_FTZ / FTQ_Q8_ADD_FTZ (mul.ftz / add.ftz). */
FTQ_Q8_QUALIFIERS uint8_t FTQ_Q8_NAME(const float *code, float x) {
  int pivot = 127, upper_pivot = 255, lower_pivot = 0;
  float lower = -1.0f, upper = 1.0f;
  float val = code[pivot];
  for (int i = 64; i > 0; i >>= 1) {
    if (x > val) {
      lower_pivot = pivot;
      lower = val;
      pivot += i;
    } else {
      upper_pivot = pivot;
      upper = val;
      pivot -= i;
    }
    val = code[pivot];
  }
  if (upper_pivot == 255) upper = code[upper_pivot];
  if (lower_pivot == 0) lower = code[lower_pivot];
  if (x > val) return (uint8_t)(x > FTQ_Q8_MUL_FTZ(FTQ_Q8_ADD_FTZ(upper, val), 0.5f) ? upper_pivot : pivot);
  return (uint8_t)(x < FTQ_Q8_MUL_FTZ(FTQ_Q8_ADD_FTZ(lower, val), 0.5f) ? lower_pivot : pivot);
}
