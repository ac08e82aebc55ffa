/*
 * The native branch merge of the multi-time-scale convolution, for CPU float32/float64 maps.
 *
 * Forward: one pass that aligns every branch map to the base map (bilinear resize, or
 * crop/zero-pad, both given as per-position tables), applies the stretch penalty, keeps the
 * element-wise maximum and the index of the winning branch (lowest index on ties), and
 * counts each branch's wins. Backward: one pass that routes every output gradient to its
 * winning branch and scatters it through the transposed alignment. With stock tensor
 * operators each of these steps is a separate pass over memory.
 *
 * Layout. Every map is a set of planes indexed (a1, a2); a plane is `rows` rows (the time
 * axis) of `run` contiguous elements (the frequency axis, or the frequency x channel block
 * of a channels-last tensor). Geometry of map i, 8 int64 per map:
 *   stride_a1, stride_a2, stride_row, rows, run, zero_rows, zero_run, run_is_identity
 * (`rows`/`run`: its own size; `zero_rows`/`zero_run`: the block its gradient buffer must
 * hold zeros in before scattering; `run_is_identity`: the run needs no alignment).
 * Row table of branch i >= 1 (2 int64 + 2 double per output row): the two source rows and
 * their weights; a source row of -1 means the branch is zero on that output row. Run table
 * (same format per output element) only where `run_is_identity` is 0. Branch 0, the base,
 * has the output's geometry and no tables.
 *
 * Compiled on first use by mts_lightning/nn/merge/native_build.py and called through ctypes. The file
 * includes itself once per element type: the code after `#else` is written for `T` and
 * `NAME(f)`, which names the float version `f_f32` and the double version `f_f64`.
 */
#ifndef T
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int64_t stride_a1, stride_a2, stride_row, rows, run, zero_rows, zero_run, run_is_identity;
} Geometry;

#define MAX_LOCAL_BRANCHES 256

#define T float
#define BITS int32_t
#define NAME(f) f##_f32
#include __FILE__
#undef T
#undef BITS
#undef NAME
#define T double
#define BITS int64_t
#define NAME(f) f##_f64
#include __FILE__

#else

/* `mask` all ones: `a`, all zeros: `b`. Selecting through the bits of a same-width integer
   keeps the loops free of branches, so the compiler vectorises them (it does not turn a
   floating-point `?:` into a blend). */
static inline T NAME(select)(BITS mask, T a, T b) {
    BITS x, y, r;
    memcpy(&x, &a, sizeof(T));
    memcpy(&y, &b, sizeof(T));
    r = (x & mask) | (y & ~mask);
    T out;
    memcpy(&out, &r, sizeof(T));
    return out;
}

/* Keep the larger of `value` and best[j] (NaN wins, as in torch.maximum); where `value` is
   strictly larger, branch `index` becomes the winner (so ties keep the lower index). */
#define TAKE_IF_BETTER(value_expression)                                                  \
    do {                                                                                  \
        const T value = (value_expression), current = best[j];                           \
        const BITS better = -(BITS)(value > current);                                     \
        best[j] = NAME(select)(better | -(BITS)(value != value), value, current);         \
        winners[j] = NAME(select)(better, index, winners[j]);                             \
    } while (0)

static inline T NAME(aligned_value)(const T *r0, const T *r1, T l0, T l1,
                                    const int64_t *run_index, const double *run_weight,
                                    int64_t j) {
    const int64_t j0 = run_index[2 * j], j1 = run_index[2 * j + 1];
    if (j0 < 0) return (T)0;
    const T m0 = (T)run_weight[2 * j], m1 = (T)run_weight[2 * j + 1];
    T value = l0 * (m0 * r0[j0] + m1 * r0[j1]);
    if (r1) value += l1 * (m0 * r1[j0] + m1 * r1[j1]);
    return value;
}

/* Merge one aligned branch row (rows r0/r1 of the branch, weights l0/l1; r0 NULL: a zero
   row; r1 NULL: one source row) into the running maximum `best` and `winners`. */
static void NAME(merge_row)(T *restrict best, T *restrict winners, const T index,
                            const T *restrict r0, const T *restrict r1, T l0, T l1, T p,
                            int64_t run, const int64_t *run_index, const double *run_weight) {
    if (run_index) {
        for (int64_t j = 0; j < run; ++j)
            TAKE_IF_BETTER(
                r0 ? p * NAME(aligned_value)(r0, r1, l0, l1, run_index, run_weight, j) : (T)0);
    } else if (!r0) {
        for (int64_t j = 0; j < run; ++j) TAKE_IF_BETTER((T)0);
    } else if (!r1) {
        for (int64_t j = 0; j < run; ++j) TAKE_IF_BETTER(p * (l0 * r0[j]));
    } else {
        for (int64_t j = 0; j < run; ++j) TAKE_IF_BETTER(p * (l0 * r0[j] + l1 * r1[j]));
    }
}

#undef TAKE_IF_BETTER

void NAME(mts_merge_forward)(int64_t n_branches, int64_t a1_size, int64_t a2_size,
                             const T *const *maps, const Geometry *geometry,
                             const int64_t *const *row_index, const double *const *row_weight,
                             const int64_t *const *run_index, const double *const *run_weight,
                             const double *penalty, T *out, const int64_t *out_strides,
                             uint8_t *winner, const int64_t *winner_strides, int64_t *counts,
                             int64_t n_threads) {
    const int64_t rows = geometry[0].rows, run = geometry[0].run;
    const int64_t planes = a1_size * a2_size;
#pragma omp parallel num_threads(n_threads)
    {
        /* The winners of one row, as T: see TAKE_IF_BETTER. */
        T *winners = malloc((size_t)run * sizeof(T));
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < planes; ++plane) {
            const int64_t a1 = plane / a2_size, a2 = plane % a2_size;
            int64_t won[MAX_LOCAL_BRANCHES] = {0};
            for (int64_t t = 0; t < rows; ++t) {
                T *o = out + a1 * out_strides[0] + a2 * out_strides[1] + t * out_strides[2];
                uint8_t *restrict w =
                    winner + a1 * winner_strides[0] + a2 * winner_strides[1] + t * winner_strides[2];
                const T *b = maps[0] + a1 * geometry[0].stride_a1 + a2 * geometry[0].stride_a2 +
                             t * geometry[0].stride_row;
                if (b != o) memcpy(o, b, (size_t)run * sizeof(T));
                for (int64_t j = 0; j < run; ++j) winners[j] = (T)0;
                for (int64_t i = 1; i < n_branches; ++i) {
                    const Geometry *g = &geometry[i];
                    const int64_t i0 = row_index[i][2 * t], i1 = row_index[i][2 * t + 1];
                    const T l0 = (T)row_weight[i][2 * t], l1 = (T)row_weight[i][2 * t + 1];
                    const T *plane_start = maps[i] + a1 * g->stride_a1 + a2 * g->stride_a2;
                    const T *r0 = i0 < 0 ? NULL : plane_start + i0 * g->stride_row;
                    const T *r1 = (i0 < 0 || l1 == (T)0) ? NULL : plane_start + i1 * g->stride_row;
                    NAME(merge_row)(o, winners, (T)i, r0, r1, l0, l1, (T)penalty[i], run,
                                    g->run_is_identity ? NULL : run_index[i],
                                    g->run_is_identity ? NULL : run_weight[i]);
                }
                for (int64_t j = 0; j < run; ++j) w[j] = (uint8_t)winners[j];
                for (int64_t i = 1; counts && i < n_branches; ++i) {
                    const T index = (T)i;
                    int64_t row_won = 0;
                    for (int64_t j = 0; j < run; ++j) row_won += winners[j] == index;
                    won[i] += row_won;
                }
            }
            if (counts) {
                int64_t stretched = 0;
                for (int64_t i = 1; i < n_branches; ++i) {
                    stretched += won[i];
#pragma omp atomic
                    counts[i] += won[i];
                }
#pragma omp atomic
                counts[0] += rows * run - stretched;
            }
        }
        free(winners);
    }
}

void NAME(mts_merge_backward)(int64_t n_branches, int64_t a1_size, int64_t a2_size,
                              const T *grad_out, const int64_t *grad_out_strides,
                              const uint8_t *winner, const int64_t *winner_strides,
                              T *const *grads, const Geometry *geometry,
                              const int64_t *const *row_index, const double *const *row_weight,
                              const int64_t *const *run_index, const double *const *run_weight,
                              const double *penalty, int64_t n_threads) {
    const int64_t rows = geometry[0].rows, run = geometry[0].run;
    const int64_t planes = a1_size * a2_size;
#pragma omp parallel num_threads(n_threads)
    {
        T *winners = malloc((size_t)run * sizeof(T));
#pragma omp for schedule(static)
        for (int64_t plane = 0; plane < planes; ++plane) {
            const int64_t a1 = plane / a2_size, a2 = plane % a2_size;
            /* Gradient rows [0, zeroed[i]) of branch i hold zeros or sums in progress. Rows
               are zeroed just before their first use, while they are in cache: source rows
               only grow with the output row, for both resize and crop. */
            int64_t zeroed[MAX_LOCAL_BRANCHES];
            T *block[MAX_LOCAL_BRANCHES];
            for (int64_t i = 0; i < n_branches; ++i) {
                const Geometry *g = &geometry[i];
                block[i] = grads[i] + a1 * g->stride_a1 + a2 * g->stride_a2;
                /* The base's own rows are all written below; only a larger block needs zeros. */
                zeroed[i] = (i == 0 && g->zero_rows == rows && g->zero_run == run) ? rows : 0;
            }
#define ZERO_UP_TO(i, last_row)                                                           \
    for (; zeroed[i] <= (last_row); ++zeroed[i])                                          \
        memset(block[i] + zeroed[i] * geometry[i].stride_row, 0,                          \
               (size_t)geometry[i].zero_run * sizeof(T))
            for (int64_t t = 0; t < rows; ++t) {
                const T *restrict go = grad_out + a1 * grad_out_strides[0] +
                                       a2 * grad_out_strides[1] + t * grad_out_strides[2];
                const uint8_t *restrict w =
                    winner + a1 * winner_strides[0] + a2 * winner_strides[1] + t * winner_strides[2];
                T *restrict base = grads[0] + a1 * geometry[0].stride_a1 +
                                   a2 * geometry[0].stride_a2 + t * geometry[0].stride_row;
                for (int64_t j = 0; j < run; ++j) winners[j] = (T)w[j];
                ZERO_UP_TO(0, t);
                for (int64_t j = 0; j < run; ++j)
                    base[j] = NAME(select)(-(BITS)(winners[j] == (T)0), go[j], (T)0);
                for (int64_t i = 1; i < n_branches; ++i) {
                    const Geometry *g = &geometry[i];
                    const int64_t i0 = row_index[i][2 * t], i1 = row_index[i][2 * t + 1];
                    if (i0 < 0) continue;
                    const T l0 = (T)row_weight[i][2 * t], l1 = (T)row_weight[i][2 * t + 1];
                    const T p = (T)penalty[i], index = (T)i;
                    T *r0 = block[i] + i0 * g->stride_row;
                    T *r1 = l1 == (T)0 ? NULL : block[i] + i1 * g->stride_row;
                    ZERO_UP_TO(i, i1 > i0 ? i1 : i0);
                    if (!g->run_is_identity) {
                        const int64_t *ri = run_index[i];
                        const double *rw = run_weight[i];
                        for (int64_t j = 0; j < run; ++j) {
                            if (winners[j] != index || ri[2 * j] < 0) continue;
                            const T routed = p * go[j];
                            const T m0 = (T)rw[2 * j], m1 = (T)rw[2 * j + 1];
                            r0[ri[2 * j]] += l0 * m0 * routed;
                            r0[ri[2 * j + 1]] += l0 * m1 * routed;
                            if (r1) {
                                r1[ri[2 * j]] += l1 * m0 * routed;
                                r1[ri[2 * j + 1]] += l1 * m1 * routed;
                            }
                        }
                    } else if (!r1 || r1 == r0) {
                        /* One source row (crop, or the clamped last row of a resize). */
                        const T weight = r1 ? l0 + l1 : l0;
                        T *restrict dst = r0;
                        for (int64_t j = 0; j < run; ++j)
                            dst[j] += weight * NAME(select)(-(BITS)(winners[j] == index),
                                                            p * go[j], (T)0);
                    } else {
                        T *restrict dst0 = r0, *restrict dst1 = r1;
                        for (int64_t j = 0; j < run; ++j) {
                            const T routed =
                                NAME(select)(-(BITS)(winners[j] == index), p * go[j], (T)0);
                            dst0[j] += l0 * routed;
                            dst1[j] += l1 * routed;
                        }
                    }
                }
            }
            for (int64_t i = 0; i < n_branches; ++i) ZERO_UP_TO(i, geometry[i].zero_rows - 1);
#undef ZERO_UP_TO
        }
        free(winners);
    }
}

#endif
