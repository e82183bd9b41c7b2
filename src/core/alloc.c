/* SPDX-License-Identifier: MIT */
/* The allocation hooks, with a countdown fault injector (raft test/lib/fault.h,
 * SQLite faultsimStep) so that every ENOMEM path can be exercised by a test. */
#include "core/alloc.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static void *libc_malloc(void *ud, size_t n) { (void)ud; return malloc(n); }
static void *libc_realloc(void *ud, void *p, size_t n) { (void)ud; return realloc(p, n); }
static void libc_free(void *ud, void *p) { (void)ud; free(p); }

static struct edge_allocator heap = {1, NULL, libc_malloc, libc_realloc, libc_free};

static atomic_int fault_delay = -1;
static atomic_int fault_repeat = 0;

void edge_set_allocator(const struct edge_allocator *a)
{
    if (a == NULL) {
        heap = (struct edge_allocator){1, NULL, libc_malloc, libc_realloc, libc_free};
    } else {
        heap = *a;
    }
}

void edge__alloc_fault_config(int delay, int repeat)
{
    atomic_store(&fault_repeat, repeat);
    atomic_store(&fault_delay, delay);
}

static int should_fail(void)
{
    int d = atomic_load(&fault_delay);
    if (d < 0) {
        return 0;
    }
    if (d > 0) {
        atomic_fetch_sub(&fault_delay, 1);
        return 0;
    }
    int r = atomic_load(&fault_repeat);
    if (r == 0) {
        atomic_store(&fault_delay, -1);
        return 0;
    }
    if (r > 0) {
        atomic_fetch_sub(&fault_repeat, 1);
    }
    return 1;
}

void *edge_malloc(size_t n)
{
    if (should_fail()) {
        return NULL;
    }
    return heap.malloc_fn(heap.ud, n == 0 ? 1 : n);
}

void *edge_calloc(size_t count, size_t size)
{
    if (size != 0 && count > (size_t)-1 / size) {
        return NULL;
    }
    void *p = edge_malloc(count * size);
    if (p != NULL) {
        memset(p, 0, count * size);
    }
    return p;
}

void *edge_realloc(void *p, size_t n)
{
    if (should_fail()) {
        return NULL;
    }
    return heap.realloc_fn(heap.ud, p, n == 0 ? 1 : n);
}

void edge_free(void *p)
{
    if (p != NULL) {
        heap.free_fn(heap.ud, p);
    }
}

char *edge_strndup(const char *s, size_t n)
{
    if (s == NULL) {
        return NULL;
    }
    char *d = edge_malloc(n + 1);
    if (d != NULL) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

char *edge_strdup(const char *s)
{
    return s == NULL ? NULL : edge_strndup(s, strlen(s));
}
