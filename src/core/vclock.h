/* SPDX-License-Identifier: MIT */
/* Vector clocks keyed by region id (a short string), plus the unsigned LEB128 varint
 * helpers shared by every binary CRDT encoding.
 *
 * DESIGN: entries are kept sorted by strcmp(region) so that two clocks with the same
 * content have the same layout and the same encoding (canonical bytes on every
 * replica). Zero counters are never stored: "absent" and "0" mean the same. Region
 * strings are individually allocated and never move once inserted, so other
 * structures may borrow `entries[i].region` for as long as the clock lives. */
#ifndef EDGE_CORE_VCLOCK_H
#define EDGE_CORE_VCLOCK_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

/* Longest region id accepted anywhere (bytes, without the NUL). */
#define EDGE_VCLOCK_REGION_MAX 64

struct edge_vclock_entry {
    char *region; /* owned, NUL-terminated, 1..EDGE_VCLOCK_REGION_MAX bytes */
    uint64_t n;   /* > 0 */
};

struct edge_vclock {
    struct edge_vclock_entry *entries; /* sorted by strcmp(region), unique */
    size_t n_entries;
    size_t cap;
};

enum edge_vclock_order {
    EDGE_VCLOCK_EQUAL = 0,
    EDGE_VCLOCK_BEFORE = 1,    /* a < b: b has seen everything a has, and more */
    EDGE_VCLOCK_AFTER = 2,     /* a > b */
    EDGE_VCLOCK_CONCURRENT = 3 /* each has seen something the other has not */
};

/* An empty clock; no allocation. */
void edge_vclock_init(struct edge_vclock *vc);
/* Free everything; the clock is empty and reusable afterwards. */
void edge_vclock_close(struct edge_vclock *vc);
/* True (1) if region is a valid id: 1..EDGE_VCLOCK_REGION_MAX bytes of printable
 * ASCII without spaces. */
int edge_vclock_region_valid(const char *region);
/* Counter of region, 0 if absent. region borrowed. */
uint64_t edge_vclock_get(const struct edge_vclock *vc, const char *region);
/* Set region's counter to n (n == 0 removes it). region copied. EDGE_OK, EDGE_EINVAL
 * (invalid region), EDGE_ENOMEM (clock unchanged). */
int edge_vclock_set(struct edge_vclock *vc, const char *region, uint64_t n);
/* Add 1 to region's counter; the new value goes to *out_n (may be NULL). EDGE_OK,
 * EDGE_EINVAL, EDGE_EOVERFLOW (at UINT64_MAX), EDGE_ENOMEM; unchanged on error. */
int edge_vclock_increment(struct edge_vclock *vc, const char *region, uint64_t *out_n);
/* vc := pointwise max(vc, other). EDGE_OK or EDGE_ENOMEM (vc unchanged). other borrowed. */
int edge_vclock_merge(struct edge_vclock *vc, const struct edge_vclock *other);
/* dst := copy of src (dst's previous content is freed on success). EDGE_OK, EDGE_ENOMEM
 * (dst unchanged). */
int edge_vclock_copy(struct edge_vclock *dst, const struct edge_vclock *src);
/* Causal order of a relative to b. */
enum edge_vclock_order edge_vclock_compare(const struct edge_vclock *a, const struct edge_vclock *b);
/* Index of region in vc->entries, or -1. */
long edge_vclock_find(const struct edge_vclock *vc, const char *region);

/* Append the canonical encoding (varint count, then per entry varint length, region
 * bytes, varint counter). EDGE_OK, EDGE_ENOMEM, EDGE_ETOOBIG. */
int edge_vclock_encode(const struct edge_vclock *vc, struct edge_buf *out);
/* Decode one clock from the front of p[0..len); *out_used gets the bytes consumed.
 * vc must be empty (freshly initialised). Rejects truncation, unsorted or duplicate
 * regions, zero counters, invalid region ids and overlong varints with EDGE_ECORRUPT
 * (vc is left empty). EDGE_ENOMEM. Never reads outside p[0..len). */
int edge_vclock_decode(struct edge_vclock *vc, const uint8_t *p, size_t len, size_t *out_used);

/* ---- varints (unsigned LEB128, shortest form only) ---- */
/* Append v. EDGE_OK, EDGE_ENOMEM, EDGE_ETOOBIG. */
int edge__uvarint_put(struct edge_buf *out, uint64_t v);
/* Read one varint from p[0..len). EDGE_OK or EDGE_ECORRUPT (truncated, overlong,
 * more than 64 bits). */
int edge__uvarint_get(const uint8_t *p, size_t len, uint64_t *out_v, size_t *out_used);

/* A bounds-checked reader over p[0..len); off is the next byte. */
struct edge__rd {
    const uint8_t *p;
    size_t len;
    size_t off;
};
/* Read one varint at r->off and step past it; r is unchanged on error (EDGE_ECORRUPT). */
int edge__uvarint_read(struct edge__rd *r, uint64_t *out_v);

#endif
