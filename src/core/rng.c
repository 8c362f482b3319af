/* rng.c: counter-based randomness on Random123's Philox4x32-10 (see rng.h for the mapping from
 * (seed, stream, index) to Philox counters and keys). Box-Muller is computed in double and rounded
 * to float once. */
#include "core/rng.h"

#include <Random123/philox.h>
#include <math.h>

#include "core/common.h"

/* "jtrk": the second key word of the stream hash, so that rng_stream's permutations differ from
 * those of any seed whose high word is 0. */
#define RNG_STREAM_KEY 0x6a74726bu
/* The 64-bit golden ratio: the key tweak of rng_randint's (astronomically rare) retry rounds. */
#define RNG_RETRY_KEY 0x9e3779b97f4a7c15ull

static const double RNG_TWO_PI = 6.283185307179586476925286766559;

RngBlock rng_block(uint64_t seed, uint64_t stream, uint64_t block) {
    philox4x32_ctr_t ctr = {
        {(uint32_t)block, (uint32_t)(block >> 32), (uint32_t)stream, (uint32_t)(stream >> 32)}};
    philox4x32_key_t key = {{(uint32_t)seed, (uint32_t)(seed >> 32)}};
    philox4x32_ctr_t r = philox4x32(ctr, key);
    RngBlock out = {{r.v[0], r.v[1], r.v[2], r.v[3]}};
    return out;
}

uint64_t rng_stream(uint32_t tag, uint64_t a, uint64_t b) {
    philox4x32_ctr_t ctr = {{(uint32_t)a, (uint32_t)(a >> 32), (uint32_t)b, (uint32_t)(b >> 32)}};
    philox4x32_key_t key = {{tag, RNG_STREAM_KEY}};
    philox4x32_ctr_t r = philox4x32(ctr, key);
    return (uint64_t)r.v[0] | ((uint64_t)r.v[1] << 32);
}

uint32_t rng_u32(uint64_t seed, uint64_t stream, uint64_t index) {
    RngBlock b = rng_block(seed, stream, index >> 2);
    return b.v[index & 3];
}

static inline uint64_t rng_word64(const RngBlock *b, int half) {
    return (uint64_t)b->v[2 * half] | ((uint64_t)b->v[2 * half + 1] << 32);
}

uint64_t rng_u64(uint64_t seed, uint64_t stream, uint64_t index) {
    RngBlock b = rng_block(seed, stream, index >> 1);
    return rng_word64(&b, (int)(index & 1));
}

/* 24 random bits into a float: exact, in [0, 1). */
static inline float rng_u32_to_unit(uint32_t u) {
    return (float)(u >> 8) * 0x1.0p-24f;
}

float rng_uniform(uint64_t seed, uint64_t stream, uint64_t index) {
    return rng_u32_to_unit(rng_u32(seed, stream, index));
}

float rng_uniform_pos(uint64_t seed, uint64_t stream, uint64_t index) {
    return (float)((rng_u32(seed, stream, index) >> 8) + 1) * 0x1.0p-24f;
}

double rng_uniform_double(uint64_t seed, uint64_t stream, uint64_t index) {
    return (double)(rng_u64(seed, stream, index) >> 11) * 0x1.0p-53;
}

void rng_fill_uniform(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
    size_t i = 0;
    while (i < n) {
        uint64_t idx = offset + i;
        RngBlock b = rng_block(seed, stream, idx >> 2);
        for (unsigned lane = (unsigned)(idx & 3); lane < 4 && i < n; lane++, i++)
            out[i] = rng_u32_to_unit(b.v[lane]);
    }
}

/* The Box-Muller pair of one block: z[0] = r cos(theta), z[1] = r sin(theta). */
static inline void rng_box_muller(const RngBlock *b, float z[2]) {
    double u1 = (double)((rng_word64(b, 0) >> 11) + 1) * 0x1.0p-53; /* (0, 1]: log is finite */
    double u2 = (double)(rng_word64(b, 1) >> 11) * 0x1.0p-53;       /* [0, 1) */
    double r = sqrt(-2.0 * log(u1));
    double theta = RNG_TWO_PI * u2;
    z[0] = (float)(r * cos(theta));
    z[1] = (float)(r * sin(theta));
}

float rng_normal(uint64_t seed, uint64_t stream, uint64_t index) {
    RngBlock b = rng_block(seed, stream, index >> 1);
    float z[2];
    rng_box_muller(&b, z);
    return z[index & 1];
}

void rng_fill_normal(float *out, size_t n, uint64_t seed, uint64_t stream, uint64_t offset) {
    size_t i = 0;
    while (i < n) {
        uint64_t idx = offset + i;
        RngBlock b = rng_block(seed, stream, idx >> 1);
        float z[2];
        rng_box_muller(&b, z);
        for (unsigned lane = (unsigned)(idx & 1); lane < 2 && i < n; lane++, i++)
            out[i] = z[lane];
    }
}

/* Lemire's nearly-divisionless method on a 64-bit word x: the high 64 bits of x * n are uniform
 * on {0..n-1} unless the low 64 bits fall below 2^64 mod n. Returns 1 and sets *out if accepted. */
static int rng_lemire(uint64_t x, uint32_t n, uint32_t *out) {
    /* x * n as a 96-bit number hi:lo without __int128: x = xh 2^32 + xl. */
    uint64_t a = (x >> 32) * (uint64_t)n;         /* < 2^64 */
    uint64_t b = (x & 0xffffffffu) * (uint64_t)n; /* < 2^64 */
    uint64_t lo = (a << 32) + b;
    uint64_t hi = (a >> 32) + (lo < b ? 1 : 0);
    if (lo < n) {
        uint64_t threshold = (0 - (uint64_t)n) % n; /* 2^64 mod n */
        if (lo < threshold) return 0;
    }
    *out = (uint32_t)hi;
    return 1;
}

uint32_t rng_randint(uint64_t seed, uint64_t stream, uint64_t index, uint32_t n) {
    CHECK(n >= 1, "rng_randint: n must be at least 1");
    for (uint64_t attempt = 0;; attempt++) {
        /* Attempt 0 uses the plain key; a rejection of both words (probability < 2^-64) moves to
         * another key, still a deterministic function of the arguments. */
        RngBlock b = rng_block(seed + attempt * RNG_RETRY_KEY, stream, index);
        uint32_t r;
        if (rng_lemire(rng_word64(&b, 0), n, &r)) return r;
        if (rng_lemire(rng_word64(&b, 1), n, &r)) return r;
    }
}

void rng_permutation(uint32_t *perm, uint32_t n, uint64_t seed, uint64_t stream) {
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    for (uint32_t i = n; i-- > 1;) {
        uint32_t j = rng_randint(seed, stream, i, i + 1);
        uint32_t t = perm[i];
        perm[i] = perm[j];
        perm[j] = t;
    }
}
