/* SPDX-License-Identifier: MIT */
/* The typed CRDTs under the generic handle of edgelite/crdt.h. Pure data structures:
 * no I/O, no globals, one owner thread per object. Every merge is a join (commutative,
 * associative, idempotent) and is atomic: on error the destination is unchanged.
 * Deltas are ordinary states of the same type, merged with the same function.
 * See docs/internals/crdt.md. */
#ifndef EDGE_CRDT_CRDT_H
#define EDGE_CRDT_CRDT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/vclock.h"
#include "edgelite/crdt.h"

/* ---- G-Counter: per-region positive counts; the value is their sum ---- */
struct edge_crdt_gcounter {
    struct edge_vclock p; /* region -> total increments by that region */
};
void edge_crdt_gcounter_init(struct edge_crdt_gcounter *g);
void edge_crdt_gcounter_close(struct edge_crdt_gcounter *g);
/* Add amount (> 0) for region. out_delta (may be NULL) must be empty; it receives the
 * region's new count. EDGE_OK, EDGE_EINVAL, EDGE_EOVERFLOW, EDGE_ENOMEM; unchanged on error. */
int edge_crdt_gcounter_increment(struct edge_crdt_gcounter *g, const char *region, uint64_t amount,
                                 struct edge_crdt_gcounter *out_delta);
/* Pointwise max. EDGE_OK, EDGE_EOVERFLOW (sum beyond UINT64_MAX), EDGE_ENOMEM. */
int edge_crdt_gcounter_merge(struct edge_crdt_gcounter *g, const struct edge_crdt_gcounter *o);
uint64_t edge_crdt_gcounter_value(const struct edge_crdt_gcounter *g);

/* ---- PN-Counter: two G-Counters; value = sum(P) - sum(N), kept within int64 ---- */
struct edge_crdt_pncounter {
    struct edge_vclock p; /* increments per region */
    struct edge_vclock n; /* decrements per region */
};
void edge_crdt_pncounter_init(struct edge_crdt_pncounter *c);
void edge_crdt_pncounter_close(struct edge_crdt_pncounter *c);
/* sign > 0 increments, sign < 0 decrements by amount (> 0). Same contract as
 * edge_crdt_gcounter_increment; EDGE_EOVERFLOW also when the value leaves int64. */
int edge_crdt_pncounter_add(struct edge_crdt_pncounter *c, const char *region, int sign,
                            uint64_t amount, struct edge_crdt_pncounter *out_delta);
int edge_crdt_pncounter_merge(struct edge_crdt_pncounter *c, const struct edge_crdt_pncounter *o);
int64_t edge_crdt_pncounter_value(const struct edge_crdt_pncounter *c);

/* ---- OR-Set (add-wins) with dots and a causal context ---- */
struct edge_crdt_dot {
    const char *region; /* borrowed from the owning set's region pool */
    uint64_t n;
};

struct edge__orset_entry {
    const uint8_t *elem; /* element bytes: owned when `owned`, else in the set's arena */
    size_t len;
    uint64_t hash;
    struct edge_crdt_dot one;   /* the dot when n_dots == 1: most entries allocate nothing */
    struct edge_crdt_dot *dots; /* owned, sorted by (region, n) when n_dots > 1, else NULL */
    size_t n_dots;              /* >= 1 while live */
    uint8_t owned;
    uint8_t dead; /* removed; its slot is gone and the array is compacted later */
};

struct edge_crdt_orset {
    struct edge__orset_entry *ents; /* dense, dead entries included until compaction */
    size_t n_ents;                  /* used, dead included */
    size_t n_dead;
    size_t n_sorted; /* the live entries of ents[0..n_sorted) are in canonical order */
    size_t cap_ents;
    uint32_t *slots; /* open addressing over live ents: index + 1, 0 = empty */
    size_t n_slots;  /* power of two or 0 */
    uint8_t *arena;  /* element bytes of decoded entries (owned, one block) */
    char **regions;  /* interned region ids (owned), sorted, unique */
    size_t n_regions;
    struct edge_vclock ctx;      /* causal context: contiguous dots seen per region */
    struct edge_crdt_dot *cloud; /* seen dots beyond ctx, sorted; n > ctx[region] + 1 */
    size_t n_cloud;
};
void edge_crdt_orset_init(struct edge_crdt_orset *s);
void edge_crdt_orset_close(struct edge_crdt_orset *s);
/* Add/remove elem (copied) as region. out_delta (may be NULL) must be empty. EDGE_OK,
 * EDGE_EINVAL, EDGE_EOVERFLOW, EDGE_ENOMEM; unchanged on error. O(1) expected. */
int edge_crdt_orset_add(struct edge_crdt_orset *s, const char *region, const void *elem, size_t len,
                        struct edge_crdt_orset *out_delta);
int edge_crdt_orset_remove(struct edge_crdt_orset *s, const void *elem, size_t len,
                           struct edge_crdt_orset *out_delta);
/* Join, in place: a dot survives if both sides have it, or one side has it and the
 * other side's context has not seen it. Only entries that change are touched, so a
 * small delta costs one scan of s and no copying. EDGE_OK or EDGE_ENOMEM (unchanged). */
int edge_crdt_orset_merge(struct edge_crdt_orset *s, const struct edge_crdt_orset *o);
int edge_crdt_orset_contains(const struct edge_crdt_orset *s, const void *elem, size_t len);
/* Number of elements. */
size_t edge_crdt_orset_size(const struct edge_crdt_orset *s);
/* cb for each element in canonical (bytewise) order; a non-zero cb return stops the
 * walk and is returned. EDGE_OK, EDGE_ENOMEM. */
int edge_crdt_orset_foreach(const struct edge_crdt_orset *s, edge_crdt_elem_cb cb, void *ud);

/* ---- LWW-Register: highest (hlc, region) wins ---- */
struct edge_crdt_lww {
    uint8_t *value; /* owned; NULL when never set */
    size_t len;
    uint64_t hlc;
    char *region; /* owned; NULL when never set */
};
void edge_crdt_lww_init(struct edge_crdt_lww *l);
void edge_crdt_lww_close(struct edge_crdt_lww *l);
/* Write value (copied); hlc is raised above the current timestamp if needed. out_delta
 * (may be NULL) must be empty. EDGE_OK, EDGE_EINVAL, EDGE_EOVERFLOW, EDGE_ENOMEM. */
int edge_crdt_lww_set(struct edge_crdt_lww *l, const char *region, uint64_t hlc, const void *value,
                      size_t len, struct edge_crdt_lww *out_delta);
int edge_crdt_lww_merge(struct edge_crdt_lww *l, const struct edge_crdt_lww *o);

/* ---- payload codecs used by edge_crdt_encode/decode (internal) ---- */
int edge__crdt_gcounter_encode(const struct edge_crdt_gcounter *g, struct edge_buf *out);
int edge__crdt_gcounter_decode(struct edge_crdt_gcounter *g, const uint8_t *p, size_t len, size_t *out_used);
int edge__crdt_pncounter_encode(const struct edge_crdt_pncounter *c, struct edge_buf *out);
int edge__crdt_pncounter_decode(struct edge_crdt_pncounter *c, const uint8_t *p, size_t len, size_t *out_used);
int edge__crdt_orset_encode(const struct edge_crdt_orset *s, struct edge_buf *out);
int edge__crdt_orset_decode(struct edge_crdt_orset *s, const uint8_t *p, size_t len, size_t *out_used);
int edge__crdt_lww_encode(const struct edge_crdt_lww *l, struct edge_buf *out);
int edge__crdt_lww_decode(struct edge_crdt_lww *l, const uint8_t *p, size_t len, size_t *out_used);

/* The object's vector clock (borrowed). */
const struct edge_vclock *edge_crdt_vclock(const struct edge_crdt *c);

#endif
