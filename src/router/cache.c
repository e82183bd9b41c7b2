/* SPDX-License-Identifier: MIT */
/* The hot-read cache (router.h): a hash table of entries with an LRU list, a
 * direct-mapped admission counter, and per-table generations (atomic, by a hash of the
 * lower-cased table name into EDGE_ROUTER_CACHE_GENS slots: two tables sharing a slot
 * only invalidate each other more often, never less). One mutex guards the entries;
 * the generations need none. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "router/router.h"

#define ADMIT_SLOTS 8192

struct centry {
    char *key;
    size_t klen;
    char *val;
    size_t vlen;
    uint64_t hash;
    struct edge_router_cache_gens g;
    struct centry *hnext;          /* hash chain */
    struct centry *lprev, *lnext;  /* LRU: head = most recent */
};

struct admit {
    uint64_t hash;
    uint64_t window_start;
    int uses;
};

struct edge_router_cache {
    pthread_mutex_t mu;
    size_t max_bytes, bytes;
    int admit_after;
    uint64_t window_ms;
    _Atomic uint64_t gens[EDGE_ROUTER_CACHE_GENS];
    _Atomic uint64_t global;
    _Atomic uint32_t busy[EDGE_ROUTER_CACHE_GENS]; /* commits in flight per slot */
    _Atomic uint32_t busy_all;                     /* ... that may write anything */
    struct centry **buckets;
    size_t n_buckets, n;
    struct centry *lru_head, *lru_tail;
    struct admit *admit;
    uint64_t hits, misses, fills, dropped_fills, evictions, stale;
};

static uint64_t hash_bytes(const char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) h = (h ^ (unsigned char)p[i]) * 1099511628211ull;
    return h;
}

static uint32_t table_slot(const char *name, size_t len)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)name[i];
        if (ch >= 'A' && ch <= 'Z') ch = (unsigned char)(ch - 'A' + 'a');
        h = (h ^ ch) * 1099511628211ull;
    }
    return (uint32_t)(h % EDGE_ROUTER_CACHE_GENS);
}

int edge_router_cache_new(size_t max_bytes, int admit_after, uint64_t window_ms, struct edge_router_cache **out)
{
    struct edge_router_cache *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) return EDGE_ENOMEM;
    c->n_buckets = 4096;
    c->buckets = edge_calloc(c->n_buckets, sizeof(*c->buckets));
    c->admit = edge_calloc(ADMIT_SLOTS, sizeof(*c->admit));
    if (c->buckets == NULL || c->admit == NULL) {
        edge_free(c->buckets);
        edge_free(c->admit);
        edge_free(c);
        return EDGE_ENOMEM;
    }
    c->max_bytes = max_bytes;
    c->admit_after = admit_after > 0 ? admit_after : 1;
    c->window_ms = window_ms > 0 ? window_ms : 10000;
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return EDGE_OK;
}

static size_t entry_cost(const struct centry *e)
{
    return e->klen + e->vlen + sizeof(*e);
}

static void lru_unlink(struct edge_router_cache *c, struct centry *e)
{
    if (e->lprev) e->lprev->lnext = e->lnext; else c->lru_head = e->lnext;
    if (e->lnext) e->lnext->lprev = e->lprev; else c->lru_tail = e->lprev;
    e->lprev = e->lnext = NULL;
}

static void lru_front(struct edge_router_cache *c, struct centry *e)
{
    e->lnext = c->lru_head;
    e->lprev = NULL;
    if (c->lru_head) c->lru_head->lprev = e;
    c->lru_head = e;
    if (c->lru_tail == NULL) c->lru_tail = e;
}

static void drop(struct edge_router_cache *c, struct centry *e)
{
    struct centry **pp = &c->buckets[e->hash % c->n_buckets];
    while (*pp != NULL && *pp != e) pp = &(*pp)->hnext;
    if (*pp == e) *pp = e->hnext;
    lru_unlink(c, e);
    c->bytes -= entry_cost(e);
    c->n--;
    edge_free(e->key);
    edge_free(e->val);
    edge_free(e);
}

void edge_router_cache_free(struct edge_router_cache *c)
{
    if (c == NULL) return;
    while (c->lru_head != NULL) drop(c, c->lru_head);
    edge_free(c->buckets);
    edge_free(c->admit);
    pthread_mutex_destroy(&c->mu);
    edge_free(c);
}

void edge_router_cache_bump(struct edge_router_cache *c, const char *name, size_t len)
{
    if (c == NULL) return;
    atomic_fetch_add(&c->gens[table_slot(name, len)], 1);
}

void edge_router_cache_bump_all(struct edge_router_cache *c)
{
    if (c == NULL) return;
    atomic_fetch_add(&c->global, 1);
}

uint32_t edge_router_cache_slot(const char *name, size_t len)
{
    return table_slot(name, len);
}

/* Both orders matter: enter marks before it bumps, leave bumps before it unmarks, so a
 * fill that sees a slot out of flight also sees every bump of the commit that left it
 * (sequentially consistent atomics). */
void edge_router_cache_enter(struct edge_router_cache *c, uint32_t slot)
{
    if (c == NULL) return;
    if (slot == EDGE_ROUTER_CACHE_ALL) {
        atomic_fetch_add(&c->busy_all, 1);
        atomic_fetch_add(&c->global, 1);
    } else {
        atomic_fetch_add(&c->busy[slot % EDGE_ROUTER_CACHE_GENS], 1);
        atomic_fetch_add(&c->gens[slot % EDGE_ROUTER_CACHE_GENS], 1);
    }
}

void edge_router_cache_leave(struct edge_router_cache *c, uint32_t slot)
{
    if (c == NULL) return;
    if (slot == EDGE_ROUTER_CACHE_ALL) {
        atomic_fetch_add(&c->global, 1);
        atomic_fetch_sub(&c->busy_all, 1);
    } else {
        atomic_fetch_add(&c->gens[slot % EDGE_ROUTER_CACHE_GENS], 1);
        atomic_fetch_sub(&c->busy[slot % EDGE_ROUTER_CACHE_GENS], 1);
    }
}

bool edge_router_cache_busy(struct edge_router_cache *c, const struct edge_router_cache_gens *g)
{
    if (atomic_load(&c->busy_all) != 0) return true;
    for (int i = 0; i < g->n; i++) {
        if (atomic_load(&c->busy[g->slot[i]]) != 0) return true;
    }
    return false;
}

static bool current(struct edge_router_cache *c, const struct edge_router_cache_gens *g)
{
    if (atomic_load(&c->global) != g->global) return false;
    for (int i = 0; i < g->n; i++) {
        if (atomic_load(&c->gens[g->slot[i]]) != g->gen[i]) return false;
    }
    return true;
}

static struct centry *find(struct edge_router_cache *c, const char *key, size_t klen, uint64_t h)
{
    for (struct centry *e = c->buckets[h % c->n_buckets]; e != NULL; e = e->hnext) {
        if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
    }
    return NULL;
}

static struct centry *lookup_current(struct edge_router_cache *c, const char *key, size_t klen)
{
    uint64_t h = hash_bytes(key, klen);
    struct centry *e = find(c, key, klen, h);
    if (e != NULL && !current(c, &e->g)) {
        c->stale++;
        drop(c, e); /* a table it read changed: gone for good */
        e = NULL;
    }
    return e;
}

bool edge_router_cache_get(struct edge_router_cache *c, const char *key, size_t klen, struct edge_buf *out)
{
    pthread_mutex_lock(&c->mu);
    struct centry *e = lookup_current(c, key, klen);
    bool ok = e != NULL && edge_buf_append(out, e->val, e->vlen) == EDGE_OK;
    if (ok) {
        c->hits++;
        lru_unlink(c, e);
        lru_front(c, e);
    } else {
        c->misses++;
    }
    pthread_mutex_unlock(&c->mu);
    return ok;
}

bool edge_router_cache_has(struct edge_router_cache *c, const char *key, size_t klen)
{
    pthread_mutex_lock(&c->mu);
    bool ok = lookup_current(c, key, klen) != NULL;
    pthread_mutex_unlock(&c->mu);
    return ok;
}

bool edge_router_cache_admit(struct edge_router_cache *c, const char *key, size_t klen, uint64_t now_ms)
{
    uint64_t h = hash_bytes(key, klen);
    pthread_mutex_lock(&c->mu);
    struct admit *a = &c->admit[h % ADMIT_SLOTS];
    if (a->hash != h || now_ms - a->window_start > c->window_ms) {
        a->hash = h;
        a->window_start = now_ms;
        a->uses = 0;
    }
    a->uses++;
    bool yes = a->uses >= c->admit_after;
    pthread_mutex_unlock(&c->mu);
    return yes;
}

void edge_router_cache_gens(struct edge_router_cache *c, char (*tables)[EDGE_ROUTER_NAME_MAX], int n,
                            struct edge_router_cache_gens *g)
{
    memset(g, 0, sizeof(*g));
    g->global = atomic_load(&c->global);
    for (int i = 0; i < n && i < EDGE_ROUTER_MAX_TABLES; i++) {
        g->slot[g->n] = table_slot(tables[i], strlen(tables[i]));
        g->gen[g->n] = atomic_load(&c->gens[g->slot[g->n]]);
        g->n++;
    }
}

bool edge_router_cache_put(struct edge_router_cache *c, const char *key, size_t klen,
                           const struct edge_router_cache_gens *g, const char *val, size_t vlen)
{
    pthread_mutex_lock(&c->mu);
    bool kept = false;
    /* one entry may take at most an eighth of the cache */
    if (edge_router_cache_busy(c, g) || !current(c, g) || klen + vlen + sizeof(struct centry) > c->max_bytes / 8) {
        c->dropped_fills++;
        goto out;
    }
    uint64_t h = hash_bytes(key, klen);
    struct centry *old = find(c, key, klen, h);
    if (old != NULL) drop(c, old);
    struct centry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) goto out;
    e->key = edge_malloc(klen + 1);
    e->val = edge_malloc(vlen + 1);
    if (e->key == NULL || e->val == NULL) {
        edge_free(e->key);
        edge_free(e->val);
        edge_free(e);
        goto out;
    }
    memcpy(e->key, key, klen);
    memcpy(e->val, val, vlen);
    e->klen = klen;
    e->vlen = vlen;
    e->hash = h;
    e->g = *g;
    while (c->lru_tail != NULL && c->bytes + entry_cost(e) > c->max_bytes) {
        drop(c, c->lru_tail);
        c->evictions++;
    }
    e->hnext = c->buckets[h % c->n_buckets];
    c->buckets[h % c->n_buckets] = e;
    lru_front(c, e);
    c->bytes += entry_cost(e);
    c->n++;
    c->fills++;
    kept = true;
out:
    pthread_mutex_unlock(&c->mu);
    return kept;
}

void edge_router_cache_stats(struct edge_router_cache *c, struct edge_router_cache_stats *out)
{
    pthread_mutex_lock(&c->mu);
    out->hits = c->hits;
    out->misses = c->misses;
    out->fills = c->fills;
    out->dropped_fills = c->dropped_fills;
    out->evictions = c->evictions;
    out->stale = c->stale;
    out->entries = c->n;
    out->bytes = c->bytes;
    out->max_bytes = c->max_bytes;
    pthread_mutex_unlock(&c->mu);
}
