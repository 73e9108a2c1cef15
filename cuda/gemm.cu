// GEMM through cuBLASLt: one handle and workspace per context (common.cuh),
// descriptors and the heuristic's algorithm cached per shape.
//
// libftq matrices are row-major; cuBLASLt is column-major. A row-major
// matrix is its transpose in column-major, so C = op(A) op(B) is computed as
// C^T = op(B)^T op(A)^T with the operands swapped and no data moved.
#include <stdlib.h>
#include <string.h>

#include <vector>

#include "common.cuh"

namespace {

struct GemmKey {
  int trans_a, trans_b;
  int64_t m, n, k, lda, ldb, ldc, stride_a, stride_b, stride_c, batch;
  int a_type, b_type, c_type;
  int align_a, align_b, align_c;  // pointer alignment in bytes (4..16)
  bool operator==(const GemmKey &o) const { return memcmp(this, &o, sizeof *this) == 0; }
};

struct GemmPlan {
  GemmKey key;
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t la = nullptr, lb = nullptr, lc = nullptr;
  cublasLtMatmulAlgo_t algo;
};

void destroy_plan(GemmPlan &p) {
  if (p.op) cublasLtMatmulDescDestroy(p.op);
  if (p.la) cublasLtMatrixLayoutDestroy(p.la);
  if (p.lb) cublasLtMatrixLayoutDestroy(p.lb);
  if (p.lc) cublasLtMatrixLayoutDestroy(p.lc);
  p.op = nullptr;
  p.la = p.lb = p.lc = nullptr;
}

cudaDataType_t cuda_type(ftq_dtype t) {
  switch (t) {
    case FTQ_DTYPE_F16: return CUDA_R_16F;
    case FTQ_DTYPE_BF16: return CUDA_R_16BF;
    default: return CUDA_R_32F;
  }
}

int ptr_align(const void *p) {
  uintptr_t v = (uintptr_t)p;
  if (v % 16 == 0) return 16;
  if (v % 8 == 0) return 8;
  if (v % 4 == 0) return 4;
  return 2;
}

}  // namespace

struct ftq_gemm_cache {
  std::vector<GemmPlan> plans;
  size_t last = 0;
};

ftq_status ftq_cuda_gemm_cache_create(ftq_gemm_cache **out) {
  *out = new (std::nothrow) ftq_gemm_cache();
  if (!*out) return ftq_cuda_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory for the GEMM cache");
  return FTQ_OK;
}

void ftq_cuda_gemm_cache_destroy(ftq_gemm_cache *cache) {
  if (!cache) return;
  for (auto &p : cache->plans) destroy_plan(p);
  delete cache;
}

// Layout of a stored row-major matrix `rows x cols` seen by cuBLASLt as
// column-major `cols x rows`.
static ftq_status make_layout(cublasLtMatrixLayout_t *l, ftq_dtype t, int64_t rows, int64_t cols, int64_t ld,
                              int64_t batch, int64_t stride) {
  FTQ_CUBLAS_TRY(cublasLtMatrixLayoutCreate(l, cuda_type(t), (uint64_t)cols, (uint64_t)rows, ld));
  if (batch > 1) {
    int32_t bc = (int32_t)batch;
    FTQ_CUBLAS_TRY(cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_BATCH_COUNT, &bc, sizeof bc));
    FTQ_CUBLAS_TRY(
        cublasLtMatrixLayoutSetAttribute(*l, CUBLASLT_MATRIX_LAYOUT_STRIDED_BATCH_OFFSET, &stride, sizeof stride));
  }
  return FTQ_OK;
}

static ftq_status build_plan(ftq_cuda *c, GemmPlan &p) {
  const GemmKey &k = p.key;
  FTQ_CUBLAS_TRY(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  // column-major view: C^T = op(B)^T op(A)^T, so B is cuBLASLt's first operand
  cublasOperation_t ta = k.trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t tb = k.trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  FTQ_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  FTQ_CUBLAS_TRY(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  // stored shapes (row-major): B is k x n (or n x k), A is m x k (or k x m), C is m x n
  FTQ_TRY_CU(make_layout(&p.la, (ftq_dtype)k.b_type, k.trans_b ? k.n : k.k, k.trans_b ? k.k : k.n, k.ldb, k.batch,
                         k.stride_b));
  FTQ_TRY_CU(make_layout(&p.lb, (ftq_dtype)k.a_type, k.trans_a ? k.k : k.m, k.trans_a ? k.m : k.k, k.lda, k.batch,
                         k.stride_a));
  FTQ_TRY_CU(make_layout(&p.lc, (ftq_dtype)k.c_type, k.m, k.n, k.ldc, k.batch, k.stride_c));

  cublasLtMatmulPreference_t pref;
  FTQ_CUBLAS_TRY(cublasLtMatmulPreferenceCreate(&pref));
  uint64_t ws = c->workspace_bytes;
  uint32_t aa = (uint32_t)k.align_b, ab = (uint32_t)k.align_a, ac = (uint32_t)k.align_c;
  cublasStatus_t s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws, sizeof ws);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &aa, sizeof aa);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &ab, sizeof ab);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &ac, sizeof ac);
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &ac, sizeof ac);
  cublasLtMatmulHeuristicResult_t res;
  int found = 0;
  if (s == CUBLAS_STATUS_SUCCESS)
    s = cublasLtMatmulAlgoGetHeuristic(c->lt, p.op, p.la, p.lb, p.lc, p.lc, pref, 1, &res, &found);
  cublasLtMatmulPreferenceDestroy(pref);
  if (s != CUBLAS_STATUS_SUCCESS) return ftq_cublas_status(s, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
  if (found < 1)
    return ftq_cuda_error(FTQ_ERR_CUBLAS,
                          "cuBLASLt has no algorithm for gemm m=%lld n=%lld k=%lld (%s x %s -> %s, lda=%lld ldb=%lld "
                          "ldc=%lld)",
                          (long long)k.m, (long long)k.n, (long long)k.k, ftq_dtype_name((ftq_dtype)k.a_type),
                          ftq_dtype_name((ftq_dtype)k.b_type), ftq_dtype_name((ftq_dtype)k.c_type),
                          (long long)k.lda, (long long)k.ldb, (long long)k.ldc);
  p.algo = res.algo;
  return FTQ_OK;
}

static int float_io(ftq_dtype t) { return t == FTQ_DTYPE_F32 || t == FTQ_DTYPE_F16 || t == FTQ_DTYPE_BF16; }

ftq_status ftq_cuda_gemm(void *be, const ftq_gemm_args *g) {
  ftq_cuda *c = (ftq_cuda *)be;
  if (!float_io(g->a_type) || g->a_type != g->b_type || (g->c_type != FTQ_DTYPE_F32 && g->c_type != g->a_type))
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "CUDA gemm: unsupported types %s x %s -> %s",
                          ftq_dtype_name(g->a_type), ftq_dtype_name(g->b_type), ftq_dtype_name(g->c_type));
  if (g->m < 0 || g->n < 0 || g->k < 0 || g->batch < 1 || g->batch > INT32_MAX)
    return ftq_cuda_error(FTQ_ERR_INVALID_ARGUMENT, "gemm: bad sizes m=%lld n=%lld k=%lld batch=%lld",
                          (long long)g->m, (long long)g->n, (long long)g->k, (long long)g->batch);
  if (g->m == 0 || g->n == 0) return FTQ_OK;
  FTQ_TRY_CU(ftq_cuda_enter(c));
  if (g->k == 0) {  // cuBLASLt rejects k == 0: C = beta * C
    if (g->batch == 1 && g->ldc == g->n) {
      if (g->beta == 0.0f) return ftq_cuda_fill(be, g->c, g->c_type, (size_t)(g->m * g->n), 0.0f);
    }
    return ftq_cuda_error(FTQ_ERR_UNSUPPORTED, "CUDA gemm with k == 0 is supported only for contiguous C and beta 0");
  }

  GemmKey key;
  memset(&key, 0, sizeof key);  // padding takes part in memcmp
  key.trans_a = g->trans_a ? 1 : 0;
  key.trans_b = g->trans_b ? 1 : 0;
  key.m = g->m, key.n = g->n, key.k = g->k;
  key.lda = g->lda, key.ldb = g->ldb, key.ldc = g->ldc;
  key.batch = g->batch;
  if (g->batch > 1) key.stride_a = g->stride_a, key.stride_b = g->stride_b, key.stride_c = g->stride_c;
  key.a_type = g->a_type, key.b_type = g->b_type, key.c_type = g->c_type;
  key.align_a = ptr_align(g->a), key.align_b = ptr_align(g->b), key.align_c = ptr_align(g->c);

  ftq_gemm_cache *cache = c->gemm_cache;
  GemmPlan *plan = nullptr;
  if (cache->last < cache->plans.size() && cache->plans[cache->last].key == key) plan = &cache->plans[cache->last];
  for (size_t i = 0; !plan && i < cache->plans.size(); i++)
    if (cache->plans[i].key == key) {
      plan = &cache->plans[i];
      cache->last = i;
    }
  if (!plan) {
    GemmPlan p;
    p.key = key;
    ftq_status st = build_plan(c, p);
    if (st != FTQ_OK) {
      destroy_plan(p);
      return st;
    }
    try {
      cache->plans.push_back(p);
    } catch (...) {
      destroy_plan(p);
      return ftq_cuda_error(FTQ_ERR_OUT_OF_MEMORY, "out of host memory growing the GEMM cache");
    }
    cache->last = cache->plans.size() - 1;
    plan = &cache->plans.back();
  }
  float alpha = g->alpha, beta = g->beta;
  FTQ_CUBLAS_TRY(cublasLtMatmul(c->lt, plan->op, &alpha, g->b, plan->la, g->a, plan->lb, &beta, g->c, plan->lc, g->c,
                                plan->lc, &plan->algo, c->workspace, c->workspace_bytes, c->stream));
  return FTQ_OK;
}
