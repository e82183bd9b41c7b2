/* SPDX-License-Identifier: MIT */
/* Conflict-free replicated data types behind one opaque handle: G-Counter, PN-Counter,
 * OR-Set (add-wins, optimized with dots and a causal context) and LWW-Register.
 *
 * Every object carries a vector clock (region -> number of local operations) that
 * travels with its state; merging two states whose clocks are concurrent is reported
 * to the caller as a conflict. Objects do no I/O and are not thread-safe: one owner
 * thread per handle. Region ids are strings of 1..64 printable ASCII bytes. */
#ifndef EDGELITE_CRDT_H
#define EDGELITE_CRDT_H

#include <stddef.h>
#include <stdint.h>

#include "edgelite/errors.h"

enum edge_crdt_type {
    EDGE_CRDT_GCOUNTER = 1,
    EDGE_CRDT_PNCOUNTER = 2,
    EDGE_CRDT_ORSET = 3,
    EDGE_CRDT_LWW = 4
};

/* Largest OR-Set element or LWW value, in bytes. */
#define EDGE_CRDT_VALUE_MAX (1u << 20)

struct edge_crdt;

/* "g-counter", "pn-counter", "or-set", "lww-register"; "?" for anything else. */
EDGE_API const char *edge_crdt_type_name(int type);
/* Inverse of edge_crdt_type_name. EDGE_OK or EDGE_EINVAL. */
EDGE_API int edge_crdt_type_parse(const char *name, enum edge_crdt_type *out_type);

/* A new empty object (value 0, empty set, unset register). Caller destroys it.
 * EDGE_OK, EDGE_EINVAL (unknown type), EDGE_ENOMEM. */
EDGE_API int edge_crdt_create(int type, struct edge_crdt **out);
/* Free an object; NULL is a no-op. */
EDGE_API void edge_crdt_destroy(struct edge_crdt *c);
EDGE_API enum edge_crdt_type edge_crdt_type_of(const struct edge_crdt *c);

/* ---- local operations ----
 * Each stamps the object's vector clock with region (borrowed) and, when out_delta is
 * not NULL, returns a new object (caller destroys) holding just the change: merging it
 * into any replica has the same effect as the operation. On any error the object is
 * unchanged and *out_delta is NULL. Errors: EDGE_EINVAL (wrong type for the operation,
 * invalid region, amount 0, oversized value), EDGE_EOVERFLOW (the counter's per-region
 * count, total or signed value would leave its range), EDGE_ENOMEM. */
EDGE_API int edge_crdt_increment(struct edge_crdt *c, const char *region, uint64_t amount,
                                 struct edge_crdt **out_delta);
/* PN-Counter only. */
EDGE_API int edge_crdt_decrement(struct edge_crdt *c, const char *region, uint64_t amount,
                                 struct edge_crdt **out_delta);
/* OR-Set only. elem is an opaque byte string (copied). Adding an element that is
 * present refreshes it (its older dots are replaced by a new one). */
EDGE_API int edge_crdt_add(struct edge_crdt *c, const char *region, const void *elem, size_t len,
                           struct edge_crdt **out_delta);
/* OR-Set only. Removes the adds of elem this replica has seen; concurrent adds elsewhere
 * survive the merge (add wins). Removing an absent element is not an error. */
EDGE_API int edge_crdt_remove(struct edge_crdt *c, const char *region, const void *elem, size_t len,
                              struct edge_crdt **out_delta);
/* LWW-Register only. hlc is the writer's hybrid logical clock; it is raised to one more
 * than the register's current timestamp when not already greater, so a local write
 * always supersedes what the writer has seen. */
EDGE_API int edge_crdt_set(struct edge_crdt *c, const char *region, uint64_t hlc, const void *value,
                           size_t len, struct edge_crdt **out_delta);

/* Join other (a full state or a delta of the same type, borrowed) into c. *out_concurrent
 * (may be NULL) is 1 when neither vector clock dominated the other. Atomic: on error c is
 * unchanged. EDGE_OK, EDGE_EINVAL (type mismatch), EDGE_EOVERFLOW (joined counter out of
 * range), EDGE_ENOMEM. */
EDGE_API int edge_crdt_merge(struct edge_crdt *c, const struct edge_crdt *other, int *out_concurrent);
/* A deep copy (caller destroys). EDGE_OK or EDGE_ENOMEM. */
EDGE_API int edge_crdt_clone(const struct edge_crdt *c, struct edge_crdt **out);

/* ---- reading ---- */
/* G-Counter (any value) or PN-Counter (non-negative values). EDGE_EINVAL on other types,
 * EDGE_EOVERFLOW for a negative PN-Counter. */
EDGE_API int edge_crdt_value_u64(const struct edge_crdt *c, uint64_t *out_value);
/* PN-Counter, or a G-Counter whose value fits. EDGE_EINVAL, EDGE_EOVERFLOW. */
EDGE_API int edge_crdt_value_i64(const struct edge_crdt *c, int64_t *out_value);
/* OR-Set: number of elements (0 for other types). */
EDGE_API size_t edge_crdt_size(const struct edge_crdt *c);
typedef int (*edge_crdt_elem_cb)(void *ud, const uint8_t *elem, size_t len);
/* OR-Set: call cb for each element in ascending bytewise order (shorter prefix first);
 * a non-zero return from cb stops the walk and is returned. EDGE_EINVAL, EDGE_ENOMEM. */
EDGE_API int edge_crdt_foreach(const struct edge_crdt *c, edge_crdt_elem_cb cb, void *ud);
/* OR-Set membership: 1 or 0. */
EDGE_API int edge_crdt_contains(const struct edge_crdt *c, const void *elem, size_t len);
/* LWW-Register: the current value (borrowed, valid until the next change), its timestamp
 * and writer region (borrowed). Out-pointers may be NULL. EDGE_ENOTFOUND if never set,
 * EDGE_EINVAL on other types. */
EDGE_API int edge_crdt_get(const struct edge_crdt *c, const uint8_t **out_value, size_t *out_len,
                           uint64_t *out_hlc, const char **out_region);
typedef int (*edge_crdt_vclock_cb)(void *ud, const char *region, uint64_t n);
/* Walk the object's vector clock in region order; a non-zero cb return stops it. */
EDGE_API int edge_crdt_vclock_foreach(const struct edge_crdt *c, edge_crdt_vclock_cb cb, void *ud);

/* ---- binary format ----
 * Version 1: 0xEC, 0x01, type byte, vector clock, type payload; canonical (equal states
 * encode to equal bytes). */
/* Encode the full state. *out_buf is caller-freed with edge_free. EDGE_OK, EDGE_ENOMEM. */
EDGE_API int edge_crdt_encode(const struct edge_crdt *c, uint8_t **out_buf, size_t *out_len);
/* Decode a full state (buf borrowed). Rejects truncated, trailing, non-canonical or
 * otherwise malformed input with EDGE_ECORRUPT and never reads outside buf[0..len).
 * EDGE_OK, EDGE_ECORRUPT, EDGE_ENOMEM. */
EDGE_API int edge_crdt_decode(const uint8_t *buf, size_t len, struct edge_crdt **out);

#endif
