/* graphrec: the selection half of the certified bfloat16 screen (graphrec/eval/screened_topk.py),
 * one pass per user row after the bf16 GEMM, rows in parallel.
 *
 * Why it exists: after the GEMM, torch needed eight separate passes per user chunk (mask, block
 * maxima, a top-k over 2,880 block bounds, a gather, a second top-k, candidate flags, a scattered
 * re-scoring, a last top-k): 0.75 s of a 1.2 s Clothing evaluation. Here each row is walked once
 * while it is in cache, with short sorted lists instead of top-k sorts.
 *
 * Per row r (the screen's notation; columns are in the screen's strided layout, block b holding
 * columns b + j * n_blocks, j < block):
 *   1. masked columns and padding columns get -inf;
 *   2. upper_b = max_j s[r, b + j n_blocks] + cu_r * block_norm_b;
 *   3. the n_keep + 1 largest upper_b (a short sorted list): the last is the best block left out,
 *      the other n_keep are kept;
 *   4. L_r = k-th largest of s - cu_r |i| over the kept columns;
 *   5. certified iff L_r is finite and the left-out bound is below it; then the columns with
 *      s + cu_r |i| >= L_r are re-scored in float32 (u_r . items[col_item]) and the k best, best
 *      first (ties: smaller item id first), are written to out_idx.
 * Uncertified rows are left for the caller's full float32 ranking.
 *
 * Built and loaded by graphrec/native/__init__.py (-O3 -march=native -fopenmp).
 */
#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static inline float bf16_to_float(uint16_t h) {
  const uint32_t b = ((uint32_t)h) << 16;
  float f;
  memcpy(&f, &b, sizeof f);
  return f;
}

#define BF16_NEG_INF ((uint16_t)0xFF80)

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t vmask16 __attribute__((vector_size(64)));
#define LANE_VECS 3
#define LANES (16 * LANE_VECS) /* >= n_keep + 1 for the default k = 20 + 24 extra blocks */
static const v16 ninf = {-INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY,
                         -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY, -INFINITY};
static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 vmax16(v16 a, v16 b) {
  const vmask16 m = a > b;
  return (v16)((m & (vmask16)a) | (~m & (vmask16)b));
}
static inline int any16(vmask16 m) {
  int64_t w[8];
  memcpy(w, &m, sizeof w);
  return (w[0] | w[1] | w[2] | w[3] | w[4] | w[5] | w[6] | w[7]) != 0;
}

typedef struct { float v; int64_t i; } entry_t;

/* "a ranks below b": smaller value, or equal value and larger id (so smaller ids win ties) */
static inline int below(entry_t a, entry_t b) { return a.v < b.v || (a.v == b.v && a.i > b.i); }

/* offer e to list[0..*size), kept sorted best first and holding at most m entries: a short
 * insertion from the bottom. (Binary heaps cost more here: their sift branches are unpredictable,
 * while most offers are rejected by one comparison with the last entry.) */
static inline void offer(entry_t *list, int64_t *size, int64_t m, entry_t e) {
  int64_t p = *size;
  if (p == m) {
    if (!below(list[m - 1], e)) return;
    --p;
  } else {
    ++*size;
  }
  while (p > 0 && below(list[p - 1], e)) {
    list[p] = list[p - 1];
    --p;
  }
  list[p] = e;
}

int graphrec_screen_select(uint16_t *s, int64_t B, int64_t C, int64_t n_blocks, int64_t block,
                           const int64_t *mask_ptr, const int64_t *mask_col, const int64_t *pad_cols,
                           int64_t n_pad, const float *cu, const float *block_norm,
                           const float *col_norm, const int64_t *col_item, const float *u, int64_t d,
                           const float *items, int64_t k, int64_t n_keep, int64_t *out_idx,
                           uint8_t *certified, int nthreads) {
  if (nthreads < 1) nthreads = 1;
#pragma omp parallel num_threads(nthreads)
  {
    float *bmax = (float *)malloc(sizeof(float) * (size_t)n_blocks);
    entry_t *bheap = (entry_t *)malloc(sizeof(entry_t) * (size_t)(n_keep + 1));
    entry_t *lheap = (entry_t *)malloc(sizeof(entry_t) * (size_t)k);
    entry_t *top = (entry_t *)malloc(sizeof(entry_t) * (size_t)k);
    int ok_alloc = bmax && bheap && lheap && top;
#pragma omp for schedule(dynamic, 8)
    for (int64_t r = 0; r < B; ++r) {
      certified[r] = 0;
      if (!ok_alloc) continue;
      uint16_t *row = s + r * C;
      for (int64_t p = mask_ptr[r]; p < mask_ptr[r + 1]; ++p) row[mask_col[p]] = BF16_NEG_INF;
      for (int64_t p = 0; p < n_pad; ++p) row[pad_cols[p]] = BF16_NEG_INF;
      const float c = cu[r];
#define COL(b, j) ((b) + (j) * n_blocks)
      for (int64_t b = 0; b < n_blocks; ++b) bmax[b] = bf16_to_float(row[b]);
      for (int64_t j = 1; j < block; ++j) {
        const uint16_t *seg = row + j * n_blocks;
        for (int64_t b = 0; b < n_blocks; ++b) {
          const float v = bf16_to_float(seg[b]);
          bmax[b] = v > bmax[b] ? v : bmax[b];
        }
      }
      /* upper bounds in place and, in the same pass, the maxima of LANES interleaved groups
       * (block b in group b % LANES); the smallest group maximum t is reached by at least LANES
       * >= n_keep + 1 different blocks, so only blocks at or above t can be among the n_keep + 1
       * largest, and only those (a few percent) are offered to the heap */
      v16 gmax[LANE_VECS];
      for (int q = 0; q < LANE_VECS; ++q) gmax[q] = ninf;
      int64_t b = 0;
      for (; b + LANES <= n_blocks; b += LANES)
        for (int q = 0; q < LANE_VECS; ++q) {
          v16 v = load16(bmax + b + 16 * q) + c * load16(block_norm + b + 16 * q);
          store16(bmax + b + 16 * q, v);
          gmax[q] = vmax16(v, gmax[q]);
        }
      for (; b < n_blocks; ++b) bmax[b] += c * block_norm[b];
      float t = INFINITY;
      if (n_blocks >= LANES && n_keep + 1 <= LANES)
        for (int q = 0; q < LANE_VECS; ++q)
          for (int l = 0; l < 16; ++l) t = gmax[q][l] < t ? gmax[q][l] : t;
      else
        t = -INFINITY; /* too few blocks for the filter: offer them all */
      int64_t nb = 0;
      const v16 zero = {0};
      const v16 tv = zero + t;
      for (b = 0; b + 16 <= n_blocks; b += 16) {
        const vmask16 hit = load16(bmax + b) >= tv;
        if (any16(hit))
          for (int l = 0; l < 16; ++l)
            if (bmax[b + l] >= t) { entry_t e = {bmax[b + l], b + l}; offer(bheap, &nb, n_keep + 1, e); }
      }
      for (; b < n_blocks; ++b)
        if (bmax[b] >= t) { entry_t e = {bmax[b], b}; offer(bheap, &nb, n_keep + 1, e); }
      if (nb < n_keep + 1) continue; /* NaN bounds: leave the row to float32 */
      /* bheap[n_keep] is the best left-out block; bheap[0..n_keep) are kept */
      const float left_out = bheap[n_keep].v;
      int64_t nl = 0;
      for (int64_t q = 0; q < n_keep; ++q)
        for (int64_t j = 0; j < block; ++j) {
          const int64_t col = COL(bheap[q].i, j);
          entry_t e = {bf16_to_float(row[col]) - c * col_norm[col], col};
          offer(lheap, &nl, k, e);
        }
      const float low = nl == k ? lheap[k - 1].v : -INFINITY;
      if (!(isfinite(low) && left_out < low)) continue;
      int64_t nt = 0;
      const float *ur = u + r * d;
      for (int64_t q = 0; q < n_keep; ++q)
        for (int64_t j = 0; j < block; ++j) {
          const int64_t col = COL(bheap[q].i, j);
          const int64_t item = col_item[col];
          if (item < 0 || !(bf16_to_float(row[col]) + c * col_norm[col] >= low)) continue;
          const float *it = items + item * d;
          float dot = 0.f;
          for (int64_t t = 0; t < d; ++t) dot += ur[t] * it[t];
          entry_t e = {dot, item};
          offer(top, &nt, k, e);
        }
      if (nt < k) continue; /* cannot happen for a certified row; be safe */
      for (int64_t q = 0; q < k; ++q) out_idx[r * k + q] = top[q].i;
      certified[r] = 1;
    }
    free(bmax); free(bheap); free(lheap); free(top);
  }
  return 0;
}
