/* SPDX-License-Identifier: MIT */
/* Sessions: each loop's cache of decoded records, so that a GET of a session that has not
 * changed since its last read skips the XChaCha20-Poly1305 open and the zstd frame.
 *
 * An entry keeps the sealed blob it was opened from, next to the plaintext. A GET still
 * reads the row (the version, the expiry, the home are always the stored ones); it uses
 * the entry only when the row's blob is byte for byte the one the entry was opened from,
 * under the same key id, for the same id. Opening is deterministic in (key, id, key id,
 * blob), so the plaintext is the one edge_sess_open would give: no invalidation is
 * needed, and a record changed by any path (a write here, a peer's entry, a GC) simply
 * misses.
 *
 * Bound and policy: SESS_CACHE_SLOTS entries per loop, direct-mapped by the id's hash (a
 * new record replaces the one in its slot), none with more than SESS_CACHE_MAX_PLAIN
 * bytes of plaintext; so at most about SESS_CACHE_SLOTS * (2 * SESS_CACHE_MAX_PLAIN +
 * 128) bytes per loop. The loop owns its cache: no lock. Plaintext is wiped when an entry
 * is replaced and when the loop ends. Metrics: edgelite_sessions_read_cache_{hits,
 * misses,evictions}_total, _entries and _bytes. */
#include "api/sessions_int.h"

#include <sodium.h>
#include <string.h>

#include "core/alloc.h"

static size_t slot_of(const char *id)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) h = (h ^ *p) * 16777619u;
    return h & (SESS_CACHE_SLOTS - 1);
}

static size_t entry_bytes(const struct sess_centry *e)
{
    return sizeof(*e) + strlen(e->id) + 1 + e->blob_len + e->plain_len + 1;
}

static void entry_drop(struct edge__sess *s, struct sess_centry *e)
{
    if (e == NULL) return;
    atomic_fetch_sub(&s->cache_entries, 1);
    atomic_fetch_sub(&s->cache_bytes, (int64_t)entry_bytes(e));
    sodium_memzero(e->plain, e->plain_len);
    edge_free(e);
}

static void keep(struct loop *l, size_t slot, const char *id, uint32_t key_id, const void *blob, size_t len,
                 const struct edge_buf *plain)
{
    struct edge__sess *s = l->node->sess;
    struct edge__sess_loop *sl = l->sess;
    if (plain->len > SESS_CACHE_MAX_PLAIN || len > 2 * SESS_CACHE_MAX_PLAIN) return;
    size_t idlen = strlen(id);
    struct sess_centry *e = edge_malloc(sizeof(*e) + idlen + 1 + len + plain->len + 1);
    if (e == NULL) return; /* not kept: the next GET opens it again */
    e->key_id = key_id;
    e->id = (char *)(e + 1);
    memcpy(e->id, id, idlen + 1);
    e->blob = (uint8_t *)e->id + idlen + 1;
    memcpy(e->blob, blob, len);
    e->blob_len = len;
    e->plain = (char *)e->blob + len;
    memcpy(e->plain, plain->data, plain->len);
    e->plain[plain->len] = '\0';
    e->plain_len = plain->len;
    if (sl->cache[slot] != NULL) {
        atomic_fetch_add(&s->cache_evictions, 1);
        entry_drop(s, sl->cache[slot]);
    }
    sl->cache[slot] = e;
    atomic_fetch_add(&s->cache_entries, 1);
    atomic_fetch_add(&s->cache_bytes, (int64_t)entry_bytes(e));
}

int edge__sess_cache_open(struct loop *l, const char *id, uint32_t key_id, const void *blob, size_t len,
                          struct edge_buf *plain)
{
    struct edge__sess *s = l->node->sess;
    struct edge__sess_loop *sl = l->sess;
    if (sl->cache == NULL) sl->cache = edge_calloc(SESS_CACHE_SLOTS, sizeof(*sl->cache));
    size_t slot = slot_of(id);
    struct sess_centry *e = sl->cache != NULL ? sl->cache[slot] : NULL;
    if (e != NULL && e->key_id == key_id && e->blob_len == len && strcmp(e->id, id) == 0 &&
        memcmp(e->blob, blob, len) == 0) {
        atomic_fetch_add(&s->cache_hits, 1);
        edge_buf_reset(plain);
        return edge_buf_append(plain, e->plain, e->plain_len);
    }
    atomic_fetch_add(&s->cache_misses, 1);
    int rv = edge_sess_open(&s->keys, id, key_id, blob, len, (size_t)1 << 26, plain);
    if (rv == EDGE_OK && sl->cache != NULL) keep(l, slot, id, key_id, blob, len, plain);
    return rv;
}

void edge__sess_cache_free(struct loop *l)
{
    struct edge__sess_loop *sl = l->sess;
    if (sl == NULL || sl->cache == NULL) return;
    struct edge__sess *s = l->node->sess;
    for (size_t i = 0; i < SESS_CACHE_SLOTS; i++) {
        if (sl->cache[i] == NULL) continue;
        if (s != NULL) {
            entry_drop(s, sl->cache[i]);
        } else {
            sodium_memzero(sl->cache[i]->plain, sl->cache[i]->plain_len);
            edge_free(sl->cache[i]);
        }
    }
    edge_free(sl->cache);
    sl->cache = NULL;
}
