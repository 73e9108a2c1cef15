/* Element types of buffers inside libftq (not part of the public ABI). */
#ifndef FTQ_CORE_DTYPE_H
#define FTQ_CORE_DTYPE_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum ftq_dtype {
  FTQ_DTYPE_F32 = 0,
  FTQ_DTYPE_F16 = 1,
  FTQ_DTYPE_BF16 = 2,
  FTQ_DTYPE_F64 = 3,
  FTQ_DTYPE_I8 = 4,
  FTQ_DTYPE_U8 = 5,
  FTQ_DTYPE_I16 = 6,
  FTQ_DTYPE_U16 = 7,
  FTQ_DTYPE_I32 = 8,
  FTQ_DTYPE_U32 = 9,
  FTQ_DTYPE_I64 = 10,
  FTQ_DTYPE_U64 = 11,
  FTQ_DTYPE_BOOL = 12,
  FTQ_DTYPE_COUNT
} ftq_dtype;

static inline size_t ftq_dtype_size(ftq_dtype t) {
  switch (t) {
    case FTQ_DTYPE_F64: case FTQ_DTYPE_I64: case FTQ_DTYPE_U64: return 8;
    case FTQ_DTYPE_F32: case FTQ_DTYPE_I32: case FTQ_DTYPE_U32: return 4;
    case FTQ_DTYPE_F16: case FTQ_DTYPE_BF16: case FTQ_DTYPE_I16: case FTQ_DTYPE_U16: return 2;
    case FTQ_DTYPE_I8: case FTQ_DTYPE_U8: case FTQ_DTYPE_BOOL: return 1;
    default: return 0;
  }
}

static inline const char *ftq_dtype_name(ftq_dtype t) {
  static const char *names[] = {"f32", "f16", "bf16", "f64", "i8", "u8", "i16",
                                "u16", "i32", "u32", "i64", "u64", "bool"};
  return (unsigned)t < FTQ_DTYPE_COUNT ? names[t] : "?";
}

static inline int ftq_dtype_is_float(ftq_dtype t) {
  return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16 || t == FTQ_DTYPE_F64;
}

#ifdef __cplusplus
}
#endif

#endif /* FTQ_CORE_DTYPE_H */
