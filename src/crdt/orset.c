/* SPDX-License-Identifier: MIT */
/* Add-wins observed-remove set, optimized form (Bieniusa et al., "An optimized
 * conflict-free replicated set", 2012; Almeida et al., "Delta state replicated data
 * types", 2018, §7 "causal CRDTs").
 *
 * DESIGN: state = {(element, dots)} + causal context. A dot (region, n) names the n-th
 * add made at region. The context records every dot this replica has seen, as a vector
 * clock (contiguous prefixes) plus a sorted "cloud" of the dots beyond them; merges
 * compact the cloud into the clock whenever it becomes contiguous, so a removed element
 * leaves nothing behind except the clock entry of its region: no per-element tombstones.
 * Join: a dot survives if both sides hold it, or if one side holds it and the other
 * side's context has not seen it (then it is new to that side, not removed there).
 * Elements live in a dense array indexed by an open-addressing hash table so lookups are
 * O(1). Every operation allocates first and then mutates without failing, so it is
 * atomic; a merge plans its changes, then applies them in place, touching only the
 * entries that change (a one-element delta into a 100k set copies nothing).
 *
 * PERFORMANCE: one HTTP update decodes the stored state, changes one element and
 * encodes it again, so decode and encode are the hot paths. Decode allocates one arena
 * for all element bytes and keeps single dots inline (no per-element allocation);
 * removal marks entries dead instead of moving them (compaction is amortised), and
 * the array remembers how long a prefix is in canonical order, so encoding a decoded
 * set that gained a few elements sorts only those few and merges them in. */
#include "crdt/orset_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void edge_crdt_orset_init(struct edge_crdt_orset *s)
{
    memset(s, 0, sizeof(*s));
    edge_vclock_init(&s->ctx);
}

static void ent_free(struct edge__orset_entry *e)
{
    if (e->owned) {
        edge_free((void *)e->elem);
    }
    edge_free(e->dots);
    e->elem = NULL;
    e->dots = NULL;
    e->n_dots = 0;
}

void edge_crdt_orset_close(struct edge_crdt_orset *s)
{
    for (size_t i = 0; i < s->n_ents; i++) {
        if (!s->ents[i].dead) {
            ent_free(&s->ents[i]);
        }
    }
    edge_free(s->ents);
    edge_free(s->slots);
    edge_free(s->arena);
    for (size_t i = 0; i < s->n_regions; i++) {
        edge_free(s->regions[i]);
    }
    edge_free(s->regions);
    edge_vclock_close(&s->ctx);
    edge_free(s->cloud);
    edge_crdt_orset_init(s);
}

size_t edge_crdt_orset_size(const struct edge_crdt_orset *s) { return s->n_ents - s->n_dead; }

/* ---- helpers ---- */

const struct edge_crdt_dot *edge__orset_dots_of(const struct edge__orset_entry *e)
{
    return e->n_dots == 1 ? &e->one : e->dots;
}

/* Give e the dots of v (ownership moves; e's old dots must be freed already). */
void edge__orset_ent_set_dots(struct edge__orset_entry *e, struct dotv *v)
{
    e->n_dots = v->n;
    if (v->n == 1) {
        e->one = v->one;
        e->dots = NULL;
    } else {
        e->dots = v->many;
    }
    v->many = NULL;
    v->n = 0;
}

uint64_t edge__orset_hash_bytes(const uint8_t *p, size_t n)
{
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a, then a murmur finaliser for the low bits */
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3u;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
    return h;
}

int edge__orset_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl;
}

int edge__orset_dot_cmp(const struct edge_crdt_dot *a, const struct edge_crdt_dot *b)
{
    int c = a->region == b->region ? 0 : strcmp(a->region, b->region);
    if (c != 0) {
        return c;
    }
    return a->n < b->n ? -1 : a->n > b->n;
}

static long find(const struct edge_crdt_orset *s, const void *elem, size_t len, uint64_t h)
{
    if (s->n_slots == 0) {
        return -1;
    }
    size_t mask = s->n_slots - 1;
    size_t i = h & mask;
    for (size_t k = 0; k < s->n_slots; k++, i = (i + 1) & mask) {
        uint32_t v = s->slots[i];
        if (v == 0) {
            return -1;
        }
        const struct edge__orset_entry *e = &s->ents[v - 1];
        if (e->hash == h && e->len == len && (len == 0 || memcmp(e->elem, elem, len) == 0)) {
            return (long)v - 1;
        }
    }
    return -1;
}

void edge__orset_slot_insert(struct edge_crdt_orset *s, size_t idx)
{
    size_t mask = s->n_slots - 1;
    size_t i = s->ents[idx].hash & mask;
    for (size_t k = 0; k < s->n_slots && s->slots[i] != 0; k++) {
        i = (i + 1) & mask;
    }
    s->slots[i] = (uint32_t)idx + 1;
}

static size_t slot_of(const struct edge_crdt_orset *s, size_t idx)
{
    size_t mask = s->n_slots - 1;
    size_t i = s->ents[idx].hash & mask;
    for (size_t k = 0; k < s->n_slots && s->slots[i] != idx + 1; k++) {
        i = (i + 1) & mask;
    }
    return i;
}

/* Linear-probing deletion by backward shift (Knuth 6.4, algorithm R): no tombstones. */
static void slot_delete(struct edge_crdt_orset *s, size_t pos)
{
    size_t mask = s->n_slots - 1;
    size_t i = pos, j = pos;
    for (size_t k = 0; k < s->n_slots; k++) {
        j = (j + 1) & mask;
        if (s->slots[j] == 0) {
            break;
        }
        size_t home = s->ents[s->slots[j] - 1].hash & mask;
        /* Move j back into the hole at i unless its home lies cyclically in (i, j]. */
        int in_range = i <= j ? (home > i && home <= j) : (home > i || home <= j);
        if (!in_range) {
            s->slots[i] = s->slots[j];
            i = j;
        }
    }
    s->slots[i] = 0;
}

static void rehash(struct edge_crdt_orset *s)
{
    memset(s->slots, 0, s->n_slots * sizeof(*s->slots));
    for (size_t i = 0; i < s->n_ents; i++) {
        if (!s->ents[i].dead) {
            edge__orset_slot_insert(s, i);
        }
    }
}

/* Room for n entries (dead included); may rehash. Never changes the set's content. */
int edge__orset_reserve(struct edge_crdt_orset *s, size_t n)
{
    if (n >= UINT32_MAX / 2) {
        return EDGE_EOVERFLOW;
    }
    if (n > s->cap_ents) {
        size_t cap = s->cap_ents ? s->cap_ents : 8;
        while (cap < n) {
            cap *= 2;
        }
        struct edge__orset_entry *e = edge_realloc(s->ents, cap * sizeof(*e));
        if (e == NULL) {
            return EDGE_ENOMEM;
        }
        s->ents = e;
        s->cap_ents = cap;
    }
    if (n * 2 > s->n_slots) {
        size_t ns = s->n_slots ? s->n_slots : 16;
        while (ns < n * 2) {
            ns *= 2;
        }
        uint32_t *slots = edge_calloc(ns, sizeof(*slots));
        if (slots == NULL) {
            return EDGE_ENOMEM;
        }
        edge_free(s->slots);
        s->slots = slots;
        s->n_slots = ns;
        rehash(s);
    }
    return EDGE_OK;
}

/* Append an entry (storage reserved beforehand); takes ownership of dots (and of elem
 * when owned). Extends the sorted prefix when the element sorts after every other. */
static void append(struct edge_crdt_orset *s, const uint8_t *elem, size_t len, uint64_t h, int owned,
                   struct dotv *dots)
{
    struct edge__orset_entry *e = &s->ents[s->n_ents];
    int in_order = 0;
    if (s->n_sorted == s->n_ents) {
        size_t k = s->n_ents;
        while (k > 0 && s->ents[k - 1].dead) {
            k--;
        }
        in_order = k == 0 || edge__orset_bytes_cmp(s->ents[k - 1].elem, s->ents[k - 1].len, elem, len) < 0;
    }
    memset(e, 0, sizeof(*e));
    e->elem = elem;
    e->len = len;
    e->hash = h;
    e->owned = (uint8_t)(owned != 0);
    edge__orset_ent_set_dots(e, dots);
    edge__orset_slot_insert(s, s->n_ents);
    s->n_ents++;
    if (in_order) {
        s->n_sorted = s->n_ents;
    }
}

static void remove_at(struct edge_crdt_orset *s, size_t idx)
{
    slot_delete(s, slot_of(s, idx));
    ent_free(&s->ents[idx]);
    s->ents[idx].dead = 1;
    s->n_dead++;
}

/* Drop dead entries once they are the majority (amortised O(1) per removal); keeps the
 * order of the rest, so the sorted prefix stays sorted. */
static void maybe_compact(struct edge_crdt_orset *s)
{
    if (s->n_dead == 0 || (s->n_dead < 64 && s->n_dead != s->n_ents) || s->n_dead * 2 < s->n_ents) {
        return;
    }
    size_t w = 0, sorted = 0;
    for (size_t i = 0; i < s->n_ents; i++) {
        if (s->ents[i].dead) {
            continue;
        }
        if (i < s->n_sorted) {
            sorted++;
        }
        s->ents[w++] = s->ents[i];
    }
    s->n_ents = w;
    s->n_dead = 0;
    s->n_sorted = sorted;
    if (s->n_slots > 0) {
        rehash(s);
    }
}

/* The pooled copy of region, added if missing; NULL on ENOMEM. */
static const char *intern(struct edge_crdt_orset *s, const char *region)
{
    size_t lo = 0, hi = s->n_regions;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(s->regions[mid], region);
        if (c == 0) {
            return s->regions[mid];
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    char **r = edge_realloc(s->regions, (s->n_regions + 1) * sizeof(*r));
    if (r == NULL) {
        return NULL;
    }
    s->regions = r;
    char *copy = edge_strdup(region);
    if (copy == NULL) {
        return NULL;
    }
    memmove(&r[lo + 1], &r[lo], (s->n_regions - lo) * sizeof(*r));
    r[lo] = copy;
    s->n_regions++;
    return copy;
}

/* Index in s's pool of a pooled region pointer (pools are a handful of regions). */
size_t edge__orset_pool_index(const struct edge_crdt_orset *s, const char *region)
{
    for (size_t i = 0; i < s->n_regions; i++) {
        if (s->regions[i] == region) {
            return i;
        }
    }
    return s->n_regions; /* not reached for pooled pointers */
}

long edge__orset_cloud_find(const struct edge_crdt_orset *s, const struct edge_crdt_dot *d)
{
    size_t lo = 0, hi = s->n_cloud;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = edge__orset_dot_cmp(&s->cloud[mid], d);
        if (c == 0) {
            return (long)mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return -1;
}

/* Has s's causal context seen dot d? */
static int covers(const struct edge_crdt_orset *s, const struct edge_crdt_dot *d)
{
    return edge_vclock_get(&s->ctx, d->region) >= d->n || edge__orset_cloud_find(s, d) >= 0;
}

/* Largest counter seen for region (clock or cloud). */
static uint64_t max_seen(const struct edge_crdt_orset *s, const char *region)
{
    uint64_t m = edge_vclock_get(&s->ctx, region);
    for (size_t i = 0; i < s->n_cloud; i++) {
        if (strcmp(s->cloud[i].region, region) == 0 && s->cloud[i].n > m) {
            m = s->cloud[i].n;
        }
    }
    return m;
}

/* Fold cloud dots that have become contiguous into the clock, drop covered ones.
 * Only touches regions already in the clock or sets existing entries, except for a
 * region whose first dot arrives: that needs an allocation (EDGE_ENOMEM possible, with
 * the context still valid, just less compact). */
static int compact(struct edge_crdt_orset *s)
{
    size_t w = 0;
    int rv = EDGE_OK;
    for (size_t i = 0; i < s->n_cloud; i++) {
        struct edge_crdt_dot d = s->cloud[i];
        uint64_t have = edge_vclock_get(&s->ctx, d.region);
        if (d.n <= have) {
            continue;
        }
        if (rv == EDGE_OK && d.n == have + 1) {
            rv = edge_vclock_set(&s->ctx, d.region, d.n);
            if (rv == EDGE_OK) {
                continue;
            }
        }
        s->cloud[w++] = d;
    }
    s->n_cloud = w;
    return rv;
}

/* Record dot (region pooled in s) as seen. */
static int ctx_add(struct edge_crdt_orset *s, const char *region, uint64_t n)
{
    struct edge_crdt_dot d = {region, n};
    if (covers(s, &d)) {
        return EDGE_OK;
    }
    if (edge_vclock_get(&s->ctx, region) + 1 == n) {
        int rv = edge_vclock_set(&s->ctx, region, n);
        if (rv != EDGE_OK) {
            return rv;
        }
        return compact(s);
    }
    struct edge_crdt_dot *c = edge_realloc(s->cloud, (s->n_cloud + 1) * sizeof(*c));
    if (c == NULL) {
        return EDGE_ENOMEM;
    }
    s->cloud = c;
    size_t i = s->n_cloud;
    while (i > 0 && edge__orset_dot_cmp(&c[i - 1], &d) > 0) {
        c[i] = c[i - 1];
        i--;
    }
    c[i] = d;
    s->n_cloud++;
    return EDGE_OK;
}

/* Build a delta holding (elem, new_dot) if with_entry, and a context of new_dot plus
 * the given observed dots. */
static int make_delta(struct edge_crdt_orset *delta, const void *elem, size_t len, uint64_t h,
                      int with_entry, const struct edge_crdt_dot *new_dot,
                      const struct edge_crdt_dot *seen, size_t n_seen)
{
    int rv = EDGE_ENOMEM;
    uint8_t *copy = NULL;
    const char *r;

    for (size_t i = 0; i < n_seen; i++) {
        if ((r = intern(delta, seen[i].region)) == NULL) {
            goto out;
        }
        if ((rv = ctx_add(delta, r, seen[i].n)) != EDGE_OK) {
            goto out;
        }
    }
    rv = EDGE_ENOMEM;
    if (with_entry) {
        if ((r = intern(delta, new_dot->region)) == NULL) {
            goto out;
        }
        if ((rv = ctx_add(delta, r, new_dot->n)) != EDGE_OK) {
            goto out;
        }
        rv = EDGE_ENOMEM;
        copy = edge_malloc(len ? len : 1);
        if (copy == NULL || edge__orset_reserve(delta, 1) != EDGE_OK) {
            goto out;
        }
        if (len) {
            memcpy(copy, elem, len);
        }
        struct dotv d = {{r, new_dot->n}, NULL, 1};
        append(delta, copy, len, h, 1, &d);
        copy = NULL;
    }
    rv = EDGE_OK;
out:
    edge_free(copy);
    if (rv != EDGE_OK) {
        edge_crdt_orset_close(delta);
    }
    return rv;
}

/* ---- operations ---- */

int edge_crdt_orset_add(struct edge_crdt_orset *s, const char *region, const void *elem, size_t len,
                        struct edge_crdt_orset *out_delta)
{
    int rv = EDGE_ENOMEM;
    uint8_t *copy = NULL;

    if (!edge_vclock_region_valid(region) || len > EDGE_CRDT_VALUE_MAX || (len && elem == NULL)) {
        return EDGE_EINVAL;
    }
    uint64_t n = max_seen(s, region);
    if (n == UINT64_MAX) {
        return EDGE_EOVERFLOW;
    }
    n++;
    uint64_t h = edge__orset_hash_bytes(elem, len);
    long idx = find(s, elem, len, h);
    /* Fallible steps first; none of them changes what the set contains. */
    const char *r = intern(s, region);
    if (r == NULL) {
        goto out;
    }
    if (idx < 0) {
        copy = edge_malloc(len ? len : 1);
        if (copy == NULL) {
            goto out;
        }
        if (len) {
            memcpy(copy, elem, len);
        }
        if ((rv = edge__orset_reserve(s, s->n_ents + 1)) != EDGE_OK) {
            goto out;
        }
    }
    if (out_delta != NULL) {
        const struct edge__orset_entry *e = idx >= 0 ? &s->ents[idx] : NULL;
        struct edge_crdt_dot nd = {r, n};
        rv = make_delta(out_delta, elem, len, h, 1, &nd, e ? edge__orset_dots_of(e) : NULL, e ? e->n_dots : 0);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    rv = ctx_add(s, r, n);
    if (rv != EDGE_OK) {
        if (out_delta != NULL) {
            edge_crdt_orset_close(out_delta);
        }
        goto out;
    }
    /* The new dot supersedes every dot of elem this replica has observed. */
    struct dotv d = {{r, n}, NULL, 1};
    if (idx >= 0) {
        edge_free(s->ents[idx].dots);
        edge__orset_ent_set_dots(&s->ents[idx], &d);
    } else {
        append(s, copy, len, h, 1, &d);
        copy = NULL;
    }
    rv = EDGE_OK;
out:
    edge_free(copy);
    return rv;
}

int edge_crdt_orset_remove(struct edge_crdt_orset *s, const void *elem, size_t len,
                           struct edge_crdt_orset *out_delta)
{
    if (len > EDGE_CRDT_VALUE_MAX || (len && elem == NULL)) {
        return EDGE_EINVAL;
    }
    uint64_t h = edge__orset_hash_bytes(elem, len);
    long idx = find(s, elem, len, h);
    if (idx < 0) {
        return EDGE_OK;
    }
    if (out_delta != NULL) {
        const struct edge__orset_entry *e = &s->ents[idx];
        int rv = make_delta(out_delta, elem, len, h, 0, NULL, edge__orset_dots_of(e), e->n_dots);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    /* The removed dots stay in the context, which is what makes the remove stick. */
    remove_at(s, (size_t)idx);
    maybe_compact(s);
    return EDGE_OK;
}

int edge_crdt_orset_contains(const struct edge_crdt_orset *s, const void *elem, size_t len)
{
    return find(s, elem, len, edge__orset_hash_bytes(elem, len)) >= 0;
}

static int ent_ptr_cmp(const void *a, const void *b)
{
    const struct edge__orset_entry *x = *(const struct edge__orset_entry *const *)a;
    const struct edge__orset_entry *y = *(const struct edge__orset_entry *const *)b;
    return edge__orset_bytes_cmp(x->elem, x->len, y->elem, y->len);
}

/* Live entries in canonical order, as pointers (caller frees the array): the sorted
 * prefix as is, merged with the rest sorted on its own, so O(n + t log t) for a tail
 * of t entries appended since the set was decoded. */
int edge__orset_sorted_ptrs(const struct edge_crdt_orset *s, const struct edge__orset_entry ***out)
{
    size_t live = s->n_ents - s->n_dead, np = 0;
    const struct edge__orset_entry **v = edge_malloc((live ? live : 1) * sizeof(*v));
    if (v == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < s->n_sorted; i++) {
        np += !s->ents[i].dead;
    }
    size_t nt = np;
    for (size_t i = s->n_sorted; i < s->n_ents; i++) {
        if (!s->ents[i].dead) {
            v[nt++] = &s->ents[i];
        }
    }
    qsort(v + np, nt - np, sizeof(*v), ent_ptr_cmp);
    /* Forward merge into v itself: the write index i + j never passes the tail's read
     * index np + j, so no unread tail pointer is overwritten. */
    size_t j = np, w = 0;
    const struct edge__orset_entry *p = s->ents, *pend = s->ents ? s->ents + s->n_sorted : NULL;
    while (p < pend && p->dead) {
        p++;
    }
    while (p < pend || j < nt) {
        if (j == nt || (p < pend && ent_ptr_cmp(&p, &v[j]) < 0)) {
            v[w++] = p++;
            while (p < pend && p->dead) {
                p++;
            }
        } else {
            v[w++] = v[j++];
        }
    }
    *out = v;
    return EDGE_OK;
}

int edge_crdt_orset_foreach(const struct edge_crdt_orset *s, edge_crdt_elem_cb cb, void *ud)
{
    const struct edge__orset_entry **v = NULL;
    int rv = edge__orset_sorted_ptrs(s, &v);
    if (rv != EDGE_OK) {
        return rv;
    }
    size_t live = s->n_ents - s->n_dead;
    for (size_t i = 0; rv == EDGE_OK && i < live; i++) {
        rv = cb(ud, v[i]->elem, v[i]->len);
    }
    edge_free(v);
    return rv;
}

/* ---- merge ---- */

void edge__orset_dotv_free(struct dotv *v)
{
    edge_free(v->many);
    v->many = NULL;
    v->n = 0;
}

/* The dots of a (an entry of s, may be NULL) and b (an entry of o) that survive the
 * join, with regions pooled in s: map[i] is s's copy of o->regions[i]. */
static int join_dots(const struct edge_crdt_orset *s, const struct edge__orset_entry *a,
                     const struct edge_crdt_orset *o, const struct edge__orset_entry *b,
                     const char *const *map, struct dotv *out)
{
    size_t na = a ? a->n_dots : 0, nb = b->n_dots, n = 0, i = 0, j = 0;
    const struct edge_crdt_dot *da = a ? edge__orset_dots_of(a) : NULL, *db = edge__orset_dots_of(b);
    struct edge_crdt_dot buf[8], *v = buf;

    memset(out, 0, sizeof(*out));
    if (na + nb > 8 && (v = edge_malloc((na + nb) * sizeof(*v))) == NULL) {
        return EDGE_ENOMEM;
    }
    while (i < na || j < nb) {
        int c = i == na ? 1 : j == nb ? -1 : edge__orset_dot_cmp(&da[i], &db[j]);
        if (c == 0) {
            v[n++] = da[i++];
            j++;
        } else if (c < 0) {
            if (!covers(o, &da[i])) {
                v[n++] = da[i];
            }
            i++;
        } else {
            if (!covers(s, &db[j])) {
                v[n].region = map[edge__orset_pool_index(o, db[j].region)];
                v[n++].n = db[j].n;
            }
            j++;
        }
    }
    out->n = n;
    if (n == 1) {
        out->one = v[0];
    } else if (n > 1 && v != buf) {
        out->many = v;
        v = buf;
    } else if (n > 1) {
        if ((out->many = edge_malloc(n * sizeof(*v))) == NULL) {
            out->n = 0;
            return EDGE_ENOMEM;
        }
        memcpy(out->many, v, n * sizeof(*v));
    }
    if (v != buf) {
        edge_free(v);
    }
    return EDGE_OK;
}

static int same_dots(const struct edge__orset_entry *a, const struct dotv *d)
{
    if (a->n_dots != d->n) {
        return 0;
    }
    const struct edge_crdt_dot *x = edge__orset_dots_of(a), *y = d->n == 1 ? &d->one : d->many;
    for (size_t k = 0; k < d->n; k++) {
        if (x[k].region != y[k].region || x[k].n != y[k].n) {
            return 0;
        }
    }
    return 1;
}

/* One change to an entry of s, prepared before anything is mutated. */
struct plan {
    long idx;                          /* entry of s, or -1 for a new entry */
    const struct edge__orset_entry *b; /* o's entry */
    struct dotv d;                     /* joined dots; none drops the entry */
    uint8_t *copy;                     /* element bytes of a new entry */
};

/* Has o's context seen d (a dot pooled in s)? thr/in_cloud are per s pool index. */
static int seen_by(const struct edge_crdt_orset *s, const struct edge_crdt_orset *o, const uint64_t *thr,
                   const uint8_t *in_cloud, const struct edge_crdt_dot *d)
{
    size_t pi = edge__orset_pool_index(s, d->region);
    return d->n <= thr[pi] || (in_cloud[pi] && edge__orset_cloud_find(o, d) >= 0);
}

int edge_crdt_orset_merge(struct edge_crdt_orset *s, const struct edge_crdt_orset *o)
{
    struct edge_crdt_orset nc; /* the joined causal context, built on the side */
    struct plan *plans = NULL;
    const char **map = NULL;
    uint64_t *thr = NULL;
    uint8_t *in_cloud = NULL;
    size_t n_plans = 0, n_new = 0;
    int rv = EDGE_ENOMEM;

    if (s == o) {
        return EDGE_OK; /* idempotent */
    }
    edge_crdt_orset_init(&nc);
    map = edge_malloc((o->n_regions + 1) * sizeof(*map));
    plans = edge_malloc((o->n_ents - o->n_dead + 1) * sizeof(*plans));
    if (map == NULL || plans == NULL) {
        goto out;
    }
    /* Interning only grows the pool; unused pooled regions are invisible. */
    for (size_t i = 0; i < o->n_regions; i++) {
        if ((map[i] = intern(s, o->regions[i])) == NULL) {
            goto out;
        }
    }
    if ((rv = edge_vclock_copy(&nc.ctx, &s->ctx)) != EDGE_OK || (rv = edge_vclock_merge(&nc.ctx, &o->ctx)) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_ENOMEM;
    if (s->n_cloud + o->n_cloud > 0 &&
        (nc.cloud = edge_malloc((s->n_cloud + o->n_cloud) * sizeof(*nc.cloud))) == NULL) {
        goto out;
    }
    for (size_t i = 0, j = 0; i < s->n_cloud || j < o->n_cloud;) {
        int c = i == s->n_cloud ? 1 : j == o->n_cloud ? -1 : edge__orset_dot_cmp(&s->cloud[i], &o->cloud[j]);
        if (c <= 0) {
            nc.cloud[nc.n_cloud] = s->cloud[i];
        } else {
            nc.cloud[nc.n_cloud].region = map[edge__orset_pool_index(o, o->cloud[j].region)];
            nc.cloud[nc.n_cloud].n = o->cloud[j].n;
        }
        nc.n_cloud++;
        i += c <= 0;
        j += c >= 0;
    }
    if ((rv = compact(&nc)) != EDGE_OK) {
        goto out;
    }
    /* Plans for o's elements; unchanged ones need none. */
    for (size_t j = 0; j < o->n_ents; j++) {
        const struct edge__orset_entry *b = &o->ents[j];
        if (b->dead) {
            continue;
        }
        long a = find(s, b->elem, b->len, b->hash);
        struct plan *pl = &plans[n_plans];
        pl->idx = a;
        pl->b = b;
        pl->copy = NULL;
        if ((rv = join_dots(s, a >= 0 ? &s->ents[a] : NULL, o, b, map, &pl->d)) != EDGE_OK) {
            goto out;
        }
        if (a >= 0 ? same_dots(&s->ents[a], &pl->d) : pl->d.n == 0) {
            edge__orset_dotv_free(&pl->d);
            continue;
        }
        if (a < 0) {
            if ((pl->copy = edge_malloc(b->len ? b->len : 1)) == NULL) {
                edge__orset_dotv_free(&pl->d);
                rv = EDGE_ENOMEM;
                goto out;
            }
            if (b->len) {
                memcpy(pl->copy, b->elem, b->len);
            }
            n_new++;
        }
        n_plans++;
    }
    if ((rv = edge__orset_reserve(s, s->n_ents + n_new)) != EDGE_OK) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    /* Elements of s that o lacks lose the dots o's context has seen (removed there). */
    int filter = (o->ctx.n_entries > 0 || o->n_cloud > 0) && s->n_regions > 0;
    if (filter) {
        rv = EDGE_ENOMEM;
        thr = edge_malloc(s->n_regions * sizeof(*thr));
        in_cloud = edge_calloc(s->n_regions, 1);
        if (thr == NULL || in_cloud == NULL) {
            goto out;
        }
        for (size_t i = 0; i < s->n_regions; i++) {
            thr[i] = edge_vclock_get(&o->ctx, s->regions[i]);
        }
        for (size_t i = 0; i < o->n_cloud; i++) {
            in_cloud[edge__orset_pool_index(s, map[edge__orset_pool_index(o, o->cloud[i].region)])] = 1;
        }
    }

    /* ---- nothing below fails ---- */
    for (size_t i = 0, n_old = s->n_ents; filter && i < n_old; i++) {
        struct edge__orset_entry *e = &s->ents[i];
        if (e->dead) {
            continue;
        }
        struct edge_crdt_dot *d = e->n_dots == 1 ? &e->one : e->dots;
        size_t k = 0;
        while (k < e->n_dots && !seen_by(s, o, thr, in_cloud, &d[k])) {
            k++;
        }
        if (k == e->n_dots || find(o, e->elem, e->len, e->hash) >= 0) {
            continue; /* untouched, or joined by its plan */
        }
        size_t w = 0;
        for (k = 0; k < e->n_dots; k++) {
            if (!seen_by(s, o, thr, in_cloud, &d[k])) {
                d[w++] = d[k];
            }
        }
        if (w == 0) {
            remove_at(s, i);
        } else if (w == 1 && e->n_dots > 1) {
            e->one = d[0];
            edge_free(e->dots);
            e->dots = NULL;
            e->n_dots = 1;
        } else {
            e->n_dots = w;
        }
    }
    for (size_t i = 0; i < n_plans; i++) {
        struct plan *pl = &plans[i];
        if (pl->idx < 0) {
            append(s, pl->copy, pl->b->len, pl->b->hash, 1, &pl->d);
            pl->copy = NULL;
        } else if (pl->d.n == 0) {
            remove_at(s, (size_t)pl->idx);
        } else {
            edge_free(s->ents[pl->idx].dots);
            edge__orset_ent_set_dots(&s->ents[pl->idx], &pl->d);
        }
    }
    n_plans = 0;
    struct edge_vclock tctx = s->ctx;
    s->ctx = nc.ctx;
    nc.ctx = tctx;
    struct edge_crdt_dot *tcloud = s->cloud;
    size_t tn = s->n_cloud;
    s->cloud = nc.cloud;
    s->n_cloud = nc.n_cloud;
    nc.cloud = tcloud;
    nc.n_cloud = tn;
    maybe_compact(s);
    rv = EDGE_OK;
out:
    for (size_t i = 0; i < n_plans; i++) {
        edge__orset_dotv_free(&plans[i].d);
        edge_free(plans[i].copy);
    }
    edge_free(plans);
    edge_free(map);
    edge_free(thr);
    edge_free(in_cloud);
    edge_crdt_orset_close(&nc); /* owns no regions: its dots borrow s's pool */
    return rv;
}
