/* graphrec: the best of each group of candidate rows for a query, by inner product.
 *
 * For group g (g = 0..groups-1) with candidate ids idx[g*m .. g*m+m-1] (rows of a row-major float32
 * table [n, d]) and query q[g / per_query] (row-major float32 [groups / per_query, d]):
 *     out[g] = idx[g*m + j*],  j* = the first j with the largest <table[idx[g*m+j]], q[g/per_query]>.
 *
 * Why it exists: MixGCF's hop mixing picks, per layer, the hardest of M = 64 candidates for each
 * of B = 2048 pairs. In torch that is a gather of B*M rows into a [B*M, d] table (33 MB per layer)
 * and a batched matrix-vector product; here each candidate row is read once from the table and
 * dotted in registers, and nothing of size B*M is written. Groups are split between OpenMP threads
 * (torch's pool: graphrec/native/__init__.py); results do not depend on the thread count.
 * Ids are checked by the caller (graphrec/nn/candidate_argmax.py).
 */
#include <stdint.h>

int graphrec_candidate_argmax(const float *table, int64_t d, const int64_t *idx, int64_t groups,
                              int64_t m, const float *q, int64_t per_query, int64_t *out,
                              int threads) {
#pragma omp parallel for num_threads(threads) schedule(static)
  for (int64_t g = 0; g < groups; ++g) {
    const float *qq = q + (g / per_query) * d;
    const int64_t *ids = idx + g * m;
    int64_t best_id = ids[0];
    float best = 0.0f;
    for (int64_t j = 0; j < m; ++j) {
      const float *r = table + ids[j] * d;
      float s = 0.0f;
#pragma omp simd reduction(+ : s)
      for (int64_t c = 0; c < d; ++c) s += r[c] * qq[c];
      if (j == 0 || s > best) { best = s; best_id = ids[j]; }
    }
    out[g] = best_id;
  }
  return 0;
}
