/* graphrec: CLUB's fitting loss and its parameter gradients in one pass over the rows.
 *
 * For rows x_i [dx], y_i [dy] (i < n) and the estimator's layers: a first layer W1 [H, dx], b1
 * shared by two branches (hidden units [0, hm) feed the mean, [hm, H) the log-variance), then the
 * branches' second layers Wm [dy, hm] and Ws [dy, H - hm] with biases b2 = [bm | bs]:
 *     h = relu(W1 x + b1),  mu = Wm h[:hm] + bm,  r = Ws h[hm:] + bs,  s = tanh(r),
 *     d = mu - y,  w = exp(-s),  loss = 1/(2n) sum_i sum_c (s + d^2 w)
 *     dL/dmu = d w / n,  dL/dr = (1 - d^2 w)(1 - s^2) / (2n)
 * and the gradients of Wm, Ws, b2, W1, b1 by the chain rule (dh = [Wm^T dL/dmu | Ws^T dL/dr],
 * masked by h > 0).
 *
 * Why it exists: SAND's estimator takes 50 such steps per batch on every item's 32-d codes (46k
 * rows at Clothing scale). In torch each step is about twenty passes over 46k-row tensors (9.5 ms
 * in bf16, 13 ms in float32, 2 threads); here each row is read once and everything else stays in
 * registers and L1. Every weight layout is chosen so that the inner loops run over contiguous
 * columns without horizontal sums: the caller passes W1 transposed [dx, H], the second layers
 * transposed and stacked, W2t = [Wm^T; Ws^T] [H, dy], and as one block-diagonal [2dy, H] matrix
 * (for dh). exp and tanh use a vectorisable polynomial (Cephes' expf: relative error below 2e-7)
 * instead of libm calls, which the compiler cannot vectorise without -ffast-math.
 *
 * Rows are split between threads in fixed contiguous ranges; each thread sums its rows in order
 * and the partial sums are added in thread order, so results depend on the thread count only
 * through that summation order. Built and loaded by graphrec/native/__init__.py.
 */
#include <omp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t i16 __attribute__((vector_size(64)));

static inline v16 load16(const float *p) { v16 v; memcpy(&v, p, sizeof v); return v; }
static inline void store16(float *p, v16 v) { memcpy(p, &v, sizeof v); }
static inline v16 splat(float a) { return (v16){0} + a; }
static inline v16 select16(i16 m, v16 a, v16 b) { return (v16)((m & (i16)a) | (~m & (i16)b)); }

/* exp(x), 16 lanes: x = n ln2 + r with |r| <= ln2/2, Cephes' degree-6 polynomial of expf (relative
 * error below 2e-7), 2^n from the exponent bits; x clamped to [-87, 88] */
static inline v16 exp16(v16 x) {
  x = select16(x < splat(-87.0f), splat(-87.0f), x);
  x = select16(x > splat(88.0f), splat(88.0f), x);
  const v16 t = x * 1.44269504088896341f + 0.5f;
  i16 k = __builtin_convertvector(t, i16);
  k += (__builtin_convertvector(k, v16) > t);  /* floor: a comparison is -1 where true */
  const v16 n = __builtin_convertvector(k, v16);
  const v16 r = x - n * 0.693359375f + n * 2.12194440e-4f;
  v16 p = splat(1.9875691500e-4f);
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * (v16)((k + 127) << 23);
}

/* tanh(r) = sign(r) (1 - e) / (1 + e), e = exp(-2|r|): absolute error about 1e-7 */
static inline v16 tanh16(v16 r) {
  const i16 sign = (i16)r & (int32_t)0x80000000u;
  const v16 e = exp16((v16)((i16)r & 0x7fffffff) * -2.0f);
  return (v16)((i16)((1.0f - e) / (1.0f + e)) | sign);
}

/* One row's output side: s, d, w from [mu | r] = o, the gradients g = [dL/dmu | dL/dr], and the
 * row's sum of s + d^2 w (dy a multiple of 16). Written in 16-lane vectors: left to the compiler,
 * the clamps and the floor became scalar code with branches. */
static inline float outputs(const float *restrict o, const float *restrict y, float *restrict g,
                            const int64_t dy, const float inv_n) {
  v16 row = splat(0.0f);
  for (int64_t c = 0; c < dy; c += 16) {
    const v16 s = tanh16(load16(o + dy + c)), d = load16(o + c) - load16(y + c), w = exp16(-s);
    const v16 dw = d * w, q = dw * d;
    row += s + q;
    store16(g + c, dw * inv_n);
    store16(g + dy + c, (1.0f - q) * (1.0f - s * s) * (0.5f * inv_n));
  }
  float sum = 0.0f;
  for (int j = 0; j < 16; ++j) sum += row[j];
  return sum;
}

/* acc [J, K] += a^T b over tn rows (a [tn, lda] read in its first J columns, b [tn, ldb] in its
 * first K, K a multiple of 16): the weight gradients of a tile of rows. Each accumulator row is
 * loaded and stored once per tile, and up to four independent FMA chains run at a time. */
static inline __attribute__((always_inline)) void outer_acc(float *restrict acc, const float *restrict a, int64_t lda,
                                                            const float *restrict b, int64_t ldb, int64_t J, int64_t K,
                                                            int64_t tn) {
  for (int64_t j = 0; j < J; ++j) {
    float *restrict row = acc + j * K;
    int64_t k = 0;
    for (; k + 64 <= K; k += 64) {
      v16 a0 = load16(row + k), a1 = load16(row + k + 16), a2 = load16(row + k + 32), a3 = load16(row + k + 48);
      for (int64_t r = 0; r < tn; ++r) {
        const float s = a[r * lda + j];
        const float *br = b + r * ldb + k;
        a0 += s * load16(br), a1 += s * load16(br + 16), a2 += s * load16(br + 32), a3 += s * load16(br + 48);
      }
      store16(row + k, a0), store16(row + k + 16, a1), store16(row + k + 32, a2), store16(row + k + 48, a3);
    }
    for (; k + 32 <= K; k += 32) {
      v16 a0 = load16(row + k), a1 = load16(row + k + 16), a2 = splat(0.0f), a3 = a2;
      int64_t r = 0;
      for (; r + 2 <= tn; r += 2) {
        const float s = a[r * lda + j], t = a[(r + 1) * lda + j];
        const float *br = b + r * ldb + k;
        a0 += s * load16(br), a1 += s * load16(br + 16), a2 += t * load16(br + ldb), a3 += t * load16(br + ldb + 16);
      }
      if (r < tn) a0 += a[r * lda + j] * load16(b + r * ldb + k), a1 += a[r * lda + j] * load16(b + r * ldb + k + 16);
      store16(row + k, a0 + a2), store16(row + k + 16, a1 + a3);
    }
    for (; k < K; k += 16) {
      v16 a0 = load16(row + k);
      for (int64_t r = 0; r < tn; ++r) a0 += a[r * lda + j] * load16(b + r * ldb + k);
      store16(row + k, a0);
    }
  }
}

/* rows per tile of the weight-gradient accumulation */
#define TILE 32

/* init + sum over j in [j0, j1) of h[j] w[j*ld + k .. +16]: four partial sums, then the rest */
static inline __attribute__((always_inline)) v16 dot_rows(const float *restrict h, const float *restrict w, int64_t ld,
                                                          int64_t j0, int64_t j1, int64_t k, v16 init) {
  v16 v0 = init, v1 = splat(0.0f), v2 = v1, v3 = v1;
  int64_t j = j0;
  for (; j + 4 <= j1; j += 4) {
    v0 += h[j] * load16(w + j * ld + k), v1 += h[j + 1] * load16(w + (j + 1) * ld + k);
    v2 += h[j + 2] * load16(w + (j + 2) * ld + k), v3 += h[j + 3] * load16(w + (j + 3) * ld + k);
  }
  for (; j < j1; ++j) v0 += h[j] * load16(w + j * ld + k);
  return (v0 + v1) + (v2 + v3);
}

/* Rows [r0, r1) into one thread's accumulators (aw1 [H*dx], ab1 [H], aw2t [H*dy], ab2 [2dy]) with
 * scratch h [TILE*H], o [2dy], g [TILE*2dy], dh [TILE*H]; returns the sum of s + d^2 w over the
 * rows. dx, dy and H are multiples of 16: every inner loop is whole 16-lane vectors, and scalars
 * enter only as broadcasts. */
static inline __attribute__((always_inline)) double fit_rows(
    const float *restrict x, const float *restrict y, int64_t r0, int64_t r1, int64_t dx, int64_t dy, int64_t H,
    int64_t hm, const float *restrict w1t, const float *restrict b1, const float *restrict w2bd,
    const float *restrict w2t, const float *restrict b2, float *restrict aw1, float *restrict ab1,
    float *restrict aw2t, float *restrict ab2, float *restrict ht, float *restrict o, float *restrict gt,
    float *restrict dht, float inv_n) {
  const int64_t D = 2 * dy;
  double sum = 0.0;
  for (int64_t i0 = r0; i0 < r1; i0 += TILE) {
    const int64_t tn = r1 - i0 < TILE ? r1 - i0 : TILE;
    for (int64_t r = 0; r < tn; ++r) {
      const float *restrict xi = x + (i0 + r) * dx, *restrict yi = y + (i0 + r) * dy;
      float *restrict h = ht + r * H, *restrict g = gt + r * D, *restrict dh = dht + r * H;
      for (int64_t a = 0; a < H; a += 16) {  /* h = relu(W1 x + b1) */
        const v16 v = dot_rows(xi, w1t, H, 0, dx, a, load16(b1 + a));
        store16(h + a, select16(v > 0.0f, v, splat(0.0f)));
      }
      for (int64_t k = 0; k < dy; k += 16) {  /* mu = Wm h[:hm] + bm, r = Ws h[hm:] + bs */
        store16(o + k, dot_rows(h, w2t, dy, 0, hm, k, load16(b2 + k)));
        store16(o + dy + k, dot_rows(h, w2t, dy, hm, H, k, load16(b2 + dy + k)));
      }
      sum += outputs(o, yi, g, dy, inv_n);
      for (int64_t k = 0; k < D; k += 16) store16(ab2 + k, load16(ab2 + k) + load16(g + k));
      for (int64_t a = 0; a < H; a += 16) {  /* dh = (W2^T g) masked by h > 0, W2 block-diagonal */
        const v16 v = select16(load16(h + a) > 0.0f, dot_rows(g, w2bd, H, 0, D, a, splat(0.0f)), splat(0.0f));
        store16(dh + a, v);
        store16(ab1 + a, load16(ab1 + a) + v);
      }
    }
    outer_acc(aw2t, ht, H, gt, D, hm, dy, tn);                        /* dWm^T += H[:, :hm]^T G_mu */
    outer_acc(aw2t + hm * dy, ht + hm, H, gt + dy, D, H - hm, dy, tn); /* dWs^T += H[:, hm:]^T G_r */
    outer_acc(aw1, dht, H, x + i0 * dx, dx, H, dx, tn);               /* dW1 += DH^T X */
  }
  return sum;
}

int graphrec_club_fit(const float *x, const float *y, int64_t n, int64_t dx, int64_t dy, int64_t H, int64_t hm,
                      const float *w1t, const float *b1, const float *w2bd, const float *w2t, const float *b2,
                      float *g_w1, float *g_b1, float *g_w2t, float *g_b2, double *loss, int threads) {
  if (n < 1 || dx % 16 || dy % 16 || H % 16 || dx < 16 || dy < 16 || H < 16 || hm < 0 || hm > H) return 2;
  const int64_t D = 2 * dy;
  /* per thread: accumulators g_w1 [H*dx], g_b1 [H], g_w2t [H*dy], g_b2 [D]; scratch of a tile h, o, g, dh */
  const int64_t acc = H * dx + H + H * dy + D, per = acc + TILE * H + D + TILE * D + TILE * H;
  if (threads < 1) threads = 1;
  float *work = calloc((size_t)(threads * per), sizeof(float));
  double *part = calloc((size_t)threads, sizeof(double));
  if (!work || !part) { free(work); free(part); return 1; }
  const float inv_n = 1.0f / (float)n;
#pragma omp parallel num_threads(threads)
  {
    const int t = omp_get_thread_num(), nt = omp_get_num_threads();
    float *a = work + t * per;
    float *aw1 = a, *ab1 = aw1 + H * dx, *aw2t = ab1 + H, *ab2 = aw2t + H * dy;
    float *h = ab2 + D, *o = h + TILE * H, *g = o + D, *dh = g + TILE * D;
    const int64_t r0 = n * t / nt, r1 = n * (t + 1) / nt;
    if (dx == 32 && dy == 32 && H == 16 && hm == 8)  /* SAND's shape, with constant sizes */
      part[t] = fit_rows(x, y, r0, r1, 32, 32, 16, 8, w1t, b1, w2bd, w2t, b2, aw1, ab1, aw2t, ab2, h, o, g, dh,
                         inv_n);
    else
      part[t] = fit_rows(x, y, r0, r1, dx, dy, H, hm, w1t, b1, w2bd, w2t, b2, aw1, ab1, aw2t, ab2, h, o, g, dh,
                         inv_n);
  }
  double total = 0.0;
  memset(g_w1, 0, H * dx * sizeof(float));
  memset(g_b1, 0, H * sizeof(float));
  memset(g_w2t, 0, H * dy * sizeof(float));
  memset(g_b2, 0, D * sizeof(float));
  for (int t = 0; t < threads; ++t) {
    const float *a = work + t * per;
    const float *aw1 = a, *ab1 = aw1 + H * dx, *aw2t = ab1 + H, *ab2 = aw2t + H * dy;
    for (int64_t j = 0; j < H * dx; ++j) g_w1[j] += aw1[j];
    for (int64_t j = 0; j < H; ++j) g_b1[j] += ab1[j];
    for (int64_t j = 0; j < H * dy; ++j) g_w2t[j] += aw2t[j];
    for (int64_t j = 0; j < D; ++j) g_b2[j] += ab2[j];
    total += part[t];
  }
  *loss = total * 0.5 / (double)n;
  free(work);
  free(part);
  return 0;
}
