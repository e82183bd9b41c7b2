/* SPDX-License-Identifier: MIT */
/* Internals of the observed-remove set shared by orset.c (operations, merge) and
 * orset_codec.c (the canonical encoding). */
#ifndef EDGE_CRDT_ORSET_INT_H
#define EDGE_CRDT_ORSET_INT_H

#include <stddef.h>
#include <stdint.h>

#include "crdt/crdt.h"

/* A list of dots: inline when there is one, an owned array when more. */
struct dotv {
    struct edge_crdt_dot one;
    struct edge_crdt_dot *many;
    size_t n;
};

int edge__orset_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl);
long edge__orset_cloud_find(const struct edge_crdt_orset *s, const struct edge_crdt_dot *d);
int edge__orset_dot_cmp(const struct edge_crdt_dot *a, const struct edge_crdt_dot *b);
const struct edge_crdt_dot *edge__orset_dots_of(const struct edge__orset_entry *e);
void edge__orset_dotv_free(struct dotv *v);
void edge__orset_ent_set_dots(struct edge__orset_entry *e, struct dotv *v);
uint64_t edge__orset_hash_bytes(const uint8_t *p, size_t n);
size_t edge__orset_pool_index(const struct edge_crdt_orset *s, const char *region);
int edge__orset_reserve(struct edge_crdt_orset *s, size_t n);
void edge__orset_slot_insert(struct edge_crdt_orset *s, size_t idx);
int edge__orset_sorted_ptrs(const struct edge_crdt_orset *s, const struct edge__orset_entry ***out);

#endif
