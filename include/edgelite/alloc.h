/* SPDX-License-Identifier: MIT */
/* Allocation hooks. Everything edgelite allocates goes through these, so tests can
 * inject failures and embedders can supply their own heap (cf. raft_heap_set). */
#ifndef EDGELITE_ALLOC_H
#define EDGELITE_ALLOC_H

#include <stddef.h>

#include "edgelite/errors.h"

struct edge_allocator {
    int version; /* 1 */
    void *ud;
    void *(*malloc_fn)(void *ud, size_t n);
    void *(*realloc_fn)(void *ud, void *p, size_t n);
    void (*free_fn)(void *ud, void *p);
};

/* Install an allocator (copied, not retained); NULL restores the libc heap. Call before
 * any other edgelite function; not thread-safe against concurrent allocation. */
EDGE_API void edge_set_allocator(const struct edge_allocator *a);

EDGE_API void *edge_malloc(size_t n);
EDGE_API void *edge_calloc(size_t count, size_t size);
EDGE_API void *edge_realloc(void *p, size_t n);
EDGE_API void edge_free(void *p);
/* Copy of s (NULL if s is NULL or on OOM); caller frees with edge_free. */
EDGE_API char *edge_strdup(const char *s);
EDGE_API char *edge_strndup(const char *s, size_t n);

#endif
