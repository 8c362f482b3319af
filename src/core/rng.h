/* rng.h: the project's randomness. Every draw is a pure function of (seed, stream, index), computed
 * with Random123's counter-based Philox4x32-10 (house-style "determinism": results never depend on
 * the number of threads, the chunking of a loop or the order of calls).
 *
 * Mapping (fixed; changing it changes every random number of the project):
 *   key     = {seed low 32 bits, seed high 32 bits}
 *   counter = {block low, block high, stream low, stream high}
 *   rng_block(seed, stream, block) = philox4x32_10(counter, key), four 32-bit words.
 * Each kind of draw reads its own index space of a stream:
 *   rng_u32, rng_uniform*:           index i -> word i % 4 of block i / 4
 *   rng_u64, rng_uniform_double:     index i -> words 2(i % 2), 2(i % 2) + 1 of block i / 2
 *   rng_normal, rng_fill_normal:     index i -> Box-Muller on block i / 2 (cos: even i, sin: odd)
 *   rng_randint:                     index i -> block i (plus rejection retries, see rng.c)
 * so one stream should serve one kind of draw; give each purpose its own stream (rng_stream). */
#ifndef JTRAK_RNG_H
#define JTRAK_RNG_H

#include <stddef.h>
#include <stdint.h>

/* Stream tags of the project: the first argument of rng_stream. Append new tags at the end and
 * never renumber (that would change every stored trajectory). Suggested keys (tag, a, b):
 *   INIT            (model seed slot, tensor index)
 *   TRAIN_TIMESTEP  (model, optimizer step); index = batch slot; t = rng_randint(.., T)
 *   TRAIN_NOISE     (model, optimizer step); index = element of the batch's eps
 *   TRAIN_ORDER     (model, epoch); rng_permutation
 *   SAMPLE_INIT     (sample id, 0); index = element of x_T
 *   SAMPLE_NOISE    (sample id, step slot k); index = element of z
 *   ATTRIB_NOISE    (example, timestep slot)
 *   PROJECTION      (model, block)
 *   SUBSET          (subset id, 0)
 *   TRAIN_COND      (optimizer step, 0); index = batch slot; condition dropout coin
 *   LATENT_SAMPLE   (LATENT_SAMPLE(stream, counter), dataset row); index = element of the
 *                   posterior noise n of a latent draw (data/dataset.h data_batch_draw)
 *   TRAIN_LATENT    (optimizer step, 0): the stream of the step's latent draws, counter = slot
 *   ATTRIB_LATENT   (model, 0): the stream of featurize's latent draws, counter = draw slot s
 *   CONTEXT_PICK    (optimizer step, 0) in training, (row, 0) in featurize; index = batch slot
 *                   or 0: which of a row's contexts a draw uses */
enum {
    RNG_TAG_TEST = 0,
    RNG_TAG_INIT = 1,
    RNG_TAG_TRAIN_TIMESTEP = 2,
    RNG_TAG_TRAIN_NOISE = 3,
    RNG_TAG_TRAIN_ORDER = 4,
    RNG_TAG_SAMPLE_INIT = 5,
    RNG_TAG_SAMPLE_NOISE = 6,
    RNG_TAG_ATTRIB_NOISE = 7,
    RNG_TAG_PROJECTION = 8,
    RNG_TAG_SUBSET = 9,
    RNG_TAG_TRAIN_COND = 10,
    RNG_TAG_LATENT_SAMPLE = 11,
    RNG_TAG_TRAIN_LATENT = 12,
    RNG_TAG_ATTRIB_LATENT = 13,
    RNG_TAG_CONTEXT_PICK = 14,
};

typedef struct {
    uint32_t v[4];
} RngBlock;

/* The Philox4x32-10 block at counter (stream, block) under key seed. */
RngBlock rng_block(uint64_t seed, uint64_t stream, uint64_t block);

/* A stream id from a small tuple: a Philox hash of (a, b) keyed by tag (a bijection of (a, b) for
 * each tag, truncated to 64 bits, so distinct tuples collide only by chance: about n^2 / 2^65 for n
 * streams). */
uint64_t rng_stream(uint32_t tag, uint64_t a, uint64_t b);

uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t index);
uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t index);

/* float uniform on [0, 1) with 24 random bits: (u32 >> 8) * 2^-24. */
float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index);
/* float uniform on (0, 1] (same word, ((u32 >> 8) + 1) * 2^-24), for logarithms. */
float rng_uniform_pos(uint64_t seed, uint64_t stream, uint64_t index);
/* double uniform on [0, 1) with 53 random bits (index space of rng_u64). */
double rng_uniform_double(uint64_t seed, uint64_t stream, uint64_t index);

/* out[i] = rng_uniform(seed, stream, offset + i). */
void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset);

/* Standard normal: Box-Muller in double from two 53-bit uniforms of one block, u1 in (0, 1] and u2
 * in [0, 1): r = sqrt(-2 ln u1), z = r cos(2 pi u2) for even index, r sin(2 pi u2) for odd, rounded
 * to float once. */
float rng_normal(uint64_t seed, uint64_t stream, uint64_t index);
/* out[i] = rng_normal(seed, stream, offset + i): element i depends only on (seed, stream,
 * offset + i), so filling in chunks (or in parallel) gives the same numbers as one fill. */
void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset);

/* Uniform on {0, ..., n-1}, n >= 1, without modulo bias: Lemire's multiply-shift on the 64-bit
 * words of block `index`, rejecting the (< n / 2^64 likely) biased region; retries are keyed
 * deterministically, so the result is still a function of (seed, stream, index, n). */
uint32_t rng_randint(uint64_t seed, uint64_t stream, uint64_t index, uint32_t n);

/* perm = a uniformly random permutation of 0..n-1 (Fisher-Yates; step i uses
 * rng_randint(seed, stream, i, i + 1)). */
void rng_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t stream);

#endif
