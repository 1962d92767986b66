/* graphrec: out = A @ x (+ add) for a CSR matrix A (int64 indices, float32 values) and a dense
 * row-major float32 x, on CPU threads.
 *
 * Why it exists: at Clothing scale (62k nodes, 399k stored entries, 64 columns) torch 2.13's CPU
 * CSR product (MKL) takes 4-5 ms with 2 threads; this loop takes about 2 ms. Each output row is
 * accumulated in registers (64 columns = four 16-float vectors) while the row's stored entries
 * are walked once, so every x row is read once per entry and the output row written once.
 * Rows are split between threads by their number of stored entries.
 *
 * Each output row sums its entries in storage order, so results do not depend on the thread
 * count. Built and loaded by graphrec/native/__init__.py (-O3 -march=native -fopenmp).
 */
#include <omp.h>
#include <stdint.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }

typedef struct {
  const int64_t *crow, *col;
  const float *val, *x, *add;
  float *out;
  int64_t r0, r1, d;
} job_t;

static void rows(const job_t *j) {
  const int64_t d = j->d, d64 = d - d % 64, d16 = d - d % 16;
  for (int64_t r = j->r0; r < j->r1; ++r) {
    const int64_t b = j->crow[r], e = j->crow[r + 1];
    float *o = j->out + r * d;
    const float *y = j->add ? j->add + r * d : 0;
    int64_t c = 0;
    for (; c < d64; c += 64) {
      v16 a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
      if (y) { a0 = load16(y + c); a1 = load16(y + c + 16); a2 = load16(y + c + 32); a3 = load16(y + c + 48); }
      for (int64_t p = b; p < e; ++p) {
        const float v = j->val[p];
        const float *xr = j->x + j->col[p] * d + c;
        a0 += v * load16(xr); a1 += v * load16(xr + 16); a2 += v * load16(xr + 32); a3 += v * load16(xr + 48);
      }
      store16(o + c, a0); store16(o + c + 16, a1); store16(o + c + 32, a2); store16(o + c + 48, a3);
    }
    for (; c < d16; c += 16) {
      v16 a0 = {0};
      if (y) a0 = load16(y + c);
      for (int64_t p = b; p < e; ++p) a0 += j->val[p] * load16(j->x + j->col[p] * d + c);
      store16(o + c, a0);
    }
    for (; c < d; ++c) {
      float a = y ? y[c] : 0.f;
      for (int64_t p = b; p < e; ++p) a += j->val[p] * j->x[j->col[p] * d + c];
      o[c] = a;
    }
  }
}

/* Returns 0. ``add`` may be NULL; ``out`` must not alias ``x`` (it may alias ``add``).
 * Threads come from OpenMP, which resolves to the libgomp torch has already loaded (same
 * soname), so this loop and torch's own kernels share one thread pool instead of competing
 * for the cores. */
int graphrec_csr_spmm(const int64_t *crow, const int64_t *col, const float *val, const float *x,
                      const float *add, float *out, int64_t nrows, int64_t d, int nthreads) {
  if (nthreads < 1) nthreads = 1;
  if (nthreads > nrows) nthreads = nrows > 0 ? (int)nrows : 1;
  const int64_t first = crow[0], nnz = crow[nrows] - first;
#pragma omp parallel num_threads(nthreads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    /* row ranges holding about nnz / nt entries each */
    int64_t bounds[2];
    for (int k = 0; k < 2; ++k) {
      const int64_t target = first + nnz * (t + k) / nt;
      int64_t lo = 0, hi = nrows;
      if (t + k == nt) lo = nrows;
      else if (t + k > 0)
        while (lo < hi) { int64_t mid = lo + (hi - lo) / 2; if (crow[mid] < target) lo = mid + 1; else hi = mid; }
      else lo = 0;
      bounds[k] = lo;
    }
    const job_t job = {crow, col, val, x, add, out, bounds[0], bounds[1], d};
    rows(&job);
  }
  return 0;
}

/* CSR transpose by counting (O(nnz + ncols), one thread): t_crow (ncols + 1 entries), t_col and
 * t_val (nnz entries) receive A^T, each new row listing its entries in increasing old-row order,
 * the order a stable sort by column gives. Returns 0. */
int graphrec_csr_transpose(const int64_t *crow, const int64_t *col, const float *val, int64_t nrows,
                           int64_t ncols, int64_t *t_crow, int64_t *t_col, float *t_val) {
  const int64_t first = crow[0];
  for (int64_t c = 0; c <= ncols; ++c) t_crow[c] = 0;
  for (int64_t p = first; p < crow[nrows]; ++p) ++t_crow[col[p] + 1];
  for (int64_t c = 0; c < ncols; ++c) t_crow[c + 1] += t_crow[c];
  /* t_crow[c] is the next free slot of new row c; after the fill it is the start of row c + 1 */
  for (int64_t r = 0; r < nrows; ++r)
    for (int64_t p = crow[r]; p < crow[r + 1]; ++p) {
      const int64_t dst = t_crow[col[p]]++;
      t_col[dst] = r;
      t_val[dst] = val[p];
    }
  for (int64_t c = ncols; c > 0; --c) t_crow[c] = t_crow[c - 1];
  t_crow[0] = 0;
  return 0;
}
