/* hash.h: FNV-1a 64, the fingerprint of every artifact (weights, datasets, trajectories), so that
 * a file derived from something else records what it came from and mismatches are caught. */
#ifndef JTRAK_HASH_H
#define JTRAK_HASH_H

#include <stddef.h>
#include <stdint.h>

#define HASH_FNV_OFFSET 0xcbf29ce484222325ULL

/* Continues hash h over n bytes (start with HASH_FNV_OFFSET). */
static inline uint64_t hash_fnv1a(uint64_t h, const void *buf, size_t n) {
    const unsigned char *p = (const unsigned char *)buf;
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

#endif
