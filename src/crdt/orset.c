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
 * O(1) and a full merge is linear in the two sizes. Merges build the result on the side
 * and swap it in, so they are atomic; local add/remove allocate everything first and
 * then mutate without failing. */
#include "crdt/crdt.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"

void edge_crdt_orset_init(struct edge_crdt_orset *s)
{
    memset(s, 0, sizeof(*s));
    edge_vclock_init(&s->ctx);
}

void edge_crdt_orset_close(struct edge_crdt_orset *s)
{
    for (size_t i = 0; i < s->n_ents; i++) {
        edge_free(s->ents[i].elem);
        edge_free(s->ents[i].dots);
    }
    edge_free(s->ents);
    edge_free(s->slots);
    for (size_t i = 0; i < s->n_regions; i++) {
        edge_free(s->regions[i]);
    }
    edge_free(s->regions);
    edge_vclock_close(&s->ctx);
    edge_free(s->cloud);
    edge_crdt_orset_init(s);
}

/* ---- helpers ---- */

static uint64_t hash_bytes(const uint8_t *p, size_t n)
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

static int bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl;
}

static int dot_cmp(const struct edge_crdt_dot *a, const struct edge_crdt_dot *b)
{
    int c = strcmp(a->region, b->region);
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

static void slot_insert(struct edge_crdt_orset *s, size_t idx)
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

/* Room for n entries; may rehash. Never changes the set's content. */
static int reserve(struct edge_crdt_orset *s, size_t n)
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
        for (size_t i = 0; i < s->n_ents; i++) {
            slot_insert(s, i);
        }
    }
    return EDGE_OK;
}

/* Append an entry (storage reserved beforehand); takes ownership of elem and dots. */
static void append(struct edge_crdt_orset *s, uint8_t *elem, size_t len, uint64_t h,
                   struct edge_crdt_dot *dots, size_t n_dots)
{
    struct edge__orset_entry *e = &s->ents[s->n_ents];
    e->elem = elem;
    e->len = len;
    e->hash = h;
    e->dots = dots;
    e->n_dots = n_dots;
    slot_insert(s, s->n_ents);
    s->n_ents++;
}

static void remove_at(struct edge_crdt_orset *s, size_t idx)
{
    edge_free(s->ents[idx].elem);
    edge_free(s->ents[idx].dots);
    slot_delete(s, slot_of(s, idx));
    size_t last = s->n_ents - 1;
    if (idx != last) {
        s->slots[slot_of(s, last)] = (uint32_t)idx + 1;
        s->ents[idx] = s->ents[last];
    }
    s->n_ents--;
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

static long cloud_find(const struct edge_crdt_orset *s, const struct edge_crdt_dot *d)
{
    size_t lo = 0, hi = s->n_cloud;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = dot_cmp(&s->cloud[mid], d);
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
    return edge_vclock_get(&s->ctx, d->region) >= d->n || cloud_find(s, d) >= 0;
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
    while (i > 0 && dot_cmp(&c[i - 1], &d) > 0) {
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
    struct edge_crdt_dot *dots = NULL;
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
        dots = edge_malloc(sizeof(*dots));
        if (copy == NULL || dots == NULL || reserve(delta, 1) != EDGE_OK) {
            goto out;
        }
        if (len) {
            memcpy(copy, elem, len);
        }
        dots[0].region = r;
        dots[0].n = new_dot->n;
        append(delta, copy, len, h, dots, 1);
        copy = NULL;
        dots = NULL;
    }
    rv = EDGE_OK;
out:
    edge_free(copy);
    edge_free(dots);
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
    struct edge_crdt_dot *dots = NULL;

    if (!edge_vclock_region_valid(region) || len > EDGE_CRDT_VALUE_MAX || (len && elem == NULL)) {
        return EDGE_EINVAL;
    }
    uint64_t n = max_seen(s, region);
    if (n == UINT64_MAX) {
        return EDGE_EOVERFLOW;
    }
    n++;
    uint64_t h = hash_bytes(elem, len);
    long idx = find(s, elem, len, h);
    /* Fallible steps first; none of them changes what the set contains. */
    const char *r = intern(s, region);
    dots = edge_malloc(sizeof(*dots));
    if (r == NULL || dots == NULL) {
        goto out;
    }
    dots[0].region = r;
    dots[0].n = n;
    if (idx < 0) {
        copy = edge_malloc(len ? len : 1);
        if (copy == NULL) {
            goto out;
        }
        if (len) {
            memcpy(copy, elem, len);
        }
        if ((rv = reserve(s, s->n_ents + 1)) != EDGE_OK) {
            goto out;
        }
    }
    if (out_delta != NULL) {
        const struct edge__orset_entry *e = idx >= 0 ? &s->ents[idx] : NULL;
        rv = make_delta(out_delta, elem, len, h, 1, &dots[0], e ? e->dots : NULL, e ? e->n_dots : 0);
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
    if (idx >= 0) {
        edge_free(s->ents[idx].dots);
        s->ents[idx].dots = dots;
        s->ents[idx].n_dots = 1;
    } else {
        append(s, copy, len, h, dots, 1);
        copy = NULL;
    }
    dots = NULL;
    rv = EDGE_OK;
out:
    edge_free(copy);
    edge_free(dots);
    return rv;
}

int edge_crdt_orset_remove(struct edge_crdt_orset *s, const void *elem, size_t len,
                           struct edge_crdt_orset *out_delta)
{
    if (len > EDGE_CRDT_VALUE_MAX || (len && elem == NULL)) {
        return EDGE_EINVAL;
    }
    uint64_t h = hash_bytes(elem, len);
    long idx = find(s, elem, len, h);
    if (idx < 0) {
        return EDGE_OK;
    }
    if (out_delta != NULL) {
        int rv = make_delta(out_delta, elem, len, h, 0, NULL, s->ents[idx].dots, s->ents[idx].n_dots);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    /* The removed dots stay in the context, which is what makes the remove stick. */
    remove_at(s, (size_t)idx);
    return EDGE_OK;
}

int edge_crdt_orset_contains(const struct edge_crdt_orset *s, const void *elem, size_t len)
{
    return find(s, elem, len, hash_bytes(elem, len)) >= 0;
}

static int ent_ptr_cmp(const void *a, const void *b)
{
    const struct edge__orset_entry *x = *(const struct edge__orset_entry *const *)a;
    const struct edge__orset_entry *y = *(const struct edge__orset_entry *const *)b;
    return bytes_cmp(x->elem, x->len, y->elem, y->len);
}

/* Entries in canonical order, as pointers (caller frees the array). */
static int sorted_ptrs(const struct edge_crdt_orset *s, const struct edge__orset_entry ***out)
{
    const struct edge__orset_entry **v = edge_malloc((s->n_ents ? s->n_ents : 1) * sizeof(*v));
    if (v == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < s->n_ents; i++) {
        v[i] = &s->ents[i];
    }
    qsort(v, s->n_ents, sizeof(*v), ent_ptr_cmp);
    *out = v;
    return EDGE_OK;
}

int edge_crdt_orset_sorted(const struct edge_crdt_orset *s, size_t **out_idx)
{
    const struct edge__orset_entry **v;
    int rv = sorted_ptrs(s, &v);
    if (rv != EDGE_OK) {
        return rv;
    }
    /* Reuse the storage: a size_t is as wide as a pointer on every target we build. */
    _Static_assert(sizeof(size_t) == sizeof(void *), "index and pointer widths");
    size_t *idx = (size_t *)(void *)v;
    for (size_t i = 0; i < s->n_ents; i++) {
        idx[i] = (size_t)(v[i] - s->ents);
    }
    *out_idx = idx;
    return EDGE_OK;
}

/* ---- merge ---- */

/* Copy the dots of a (from set sa) and b (from set sb) that survive the join into a new
 * array whose regions are pooled in res. Either side may be NULL. */
static int join_dots(struct edge_crdt_orset *res, const struct edge_crdt_orset *sa,
                     const struct edge__orset_entry *a, const struct edge_crdt_orset *sb,
                     const struct edge__orset_entry *b, struct edge_crdt_dot **out, size_t *out_n)
{
    size_t na = a ? a->n_dots : 0, nb = b ? b->n_dots : 0;
    struct edge_crdt_dot *v = edge_malloc((na + nb) * sizeof(*v));
    size_t n = 0, i = 0, j = 0;
    if (v == NULL) {
        return EDGE_ENOMEM;
    }
    while (i < na || j < nb) {
        const struct edge_crdt_dot *keep = NULL;
        int c = i == na ? 1 : j == nb ? -1 : dot_cmp(&a->dots[i], &b->dots[j]);
        if (c == 0) {
            keep = &a->dots[i++];
            j++;
        } else if (c < 0) {
            if (!covers(sb, &a->dots[i])) {
                keep = &a->dots[i];
            }
            i++;
        } else {
            if (!covers(sa, &b->dots[j])) {
                keep = &b->dots[j];
            }
            j++;
        }
        if (keep != NULL) {
            const char *r = intern(res, keep->region); /* present: pools were unioned */
            if (r == NULL) {
                edge_free(v);
                return EDGE_ENOMEM;
            }
            v[n].region = r;
            v[n].n = keep->n;
            n++;
        }
    }
    if (n == 0) {
        edge_free(v);
        v = NULL;
    }
    *out = v;
    *out_n = n;
    return EDGE_OK;
}

static int add_joined(struct edge_crdt_orset *res, const struct edge_crdt_orset *sa,
                      const struct edge__orset_entry *a, const struct edge_crdt_orset *sb,
                      const struct edge__orset_entry *b)
{
    struct edge_crdt_dot *dots;
    size_t n;
    const struct edge__orset_entry *src = a ? a : b;
    int rv = join_dots(res, sa, a, sb, b, &dots, &n);
    if (rv != EDGE_OK || n == 0) {
        return rv;
    }
    uint8_t *copy = edge_malloc(src->len ? src->len : 1);
    if (copy == NULL) {
        edge_free(dots);
        return EDGE_ENOMEM;
    }
    if (src->len) {
        memcpy(copy, src->elem, src->len);
    }
    append(res, copy, src->len, src->hash, dots, n);
    return EDGE_OK;
}

int edge_crdt_orset_merge(struct edge_crdt_orset *s, const struct edge_crdt_orset *o)
{
    struct edge_crdt_orset res;
    int rv = EDGE_ENOMEM;

    edge_crdt_orset_init(&res);
    for (size_t i = 0; i < s->n_regions; i++) {
        if (intern(&res, s->regions[i]) == NULL) {
            goto out;
        }
    }
    for (size_t i = 0; i < o->n_regions; i++) {
        if (intern(&res, o->regions[i]) == NULL) {
            goto out;
        }
    }
    if ((rv = reserve(&res, s->n_ents + o->n_ents)) != EDGE_OK) {
        goto out;
    }
    for (size_t i = 0; i < s->n_ents; i++) {
        const struct edge__orset_entry *a = &s->ents[i];
        long j = find(o, a->elem, a->len, a->hash);
        rv = add_joined(&res, s, a, o, j >= 0 ? &o->ents[j] : NULL);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    for (size_t j = 0; j < o->n_ents; j++) {
        const struct edge__orset_entry *b = &o->ents[j];
        if (find(s, b->elem, b->len, b->hash) >= 0) {
            continue;
        }
        if ((rv = add_joined(&res, s, NULL, o, b)) != EDGE_OK) {
            goto out;
        }
    }
    /* Context: union of clocks and clouds, then compaction. */
    if ((rv = edge_vclock_copy(&res.ctx, &s->ctx)) != EDGE_OK ||
        (rv = edge_vclock_merge(&res.ctx, &o->ctx)) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_ENOMEM;
    if (s->n_cloud + o->n_cloud > 0) {
        res.cloud = edge_malloc((s->n_cloud + o->n_cloud) * sizeof(*res.cloud));
        if (res.cloud == NULL) {
            goto out;
        }
    }
    for (size_t i = 0, j = 0; i < s->n_cloud || j < o->n_cloud;) {
        int c = i == s->n_cloud ? 1 : j == o->n_cloud ? -1 : dot_cmp(&s->cloud[i], &o->cloud[j]);
        const struct edge_crdt_dot *d = c <= 0 ? &s->cloud[i] : &o->cloud[j];
        i += c <= 0;
        j += c >= 0;
        res.cloud[res.n_cloud].region = intern(&res, d->region);
        res.cloud[res.n_cloud].n = d->n;
        res.n_cloud++;
    }
    if ((rv = compact(&res)) != EDGE_OK) {
        goto out;
    }
    struct edge_crdt_orset t = *s;
    *s = res;
    res = t;
    rv = EDGE_OK;
out:
    edge_crdt_orset_close(&res);
    return rv;
}

/* ---- encoding ---- */

/* Index of region in the sorted table (present by construction). */
static size_t table_index(const char *const *table, size_t n, const char *region)
{
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(table[mid], region);
        if (c == 0) {
            return mid;
        }
        if (c < 0) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

int edge__crdt_orset_encode(const struct edge_crdt_orset *s, struct edge_buf *out)
{
    const char **table = NULL;
    const struct edge__orset_entry **ents = NULL;
    size_t nt = 0;
    int rv = EDGE_ENOMEM;

    /* Region table: the regions of the context (clock and cloud); dots only use those. */
    table = edge_malloc((s->ctx.n_entries + s->n_cloud + 1) * sizeof(*table));
    if (table == NULL) {
        goto out;
    }
    for (size_t i = 0, j = 0; i < s->ctx.n_entries || j < s->n_cloud;) {
        const char *r;
        if (j == s->n_cloud || (i < s->ctx.n_entries && strcmp(s->ctx.entries[i].region, s->cloud[j].region) <= 0)) {
            r = s->ctx.entries[i++].region;
        } else {
            r = s->cloud[j++].region;
        }
        if (nt == 0 || strcmp(table[nt - 1], r) != 0) {
            table[nt++] = r;
        }
    }
    if ((rv = sorted_ptrs(s, &ents)) != EDGE_OK) {
        goto out;
    }
    rv = edge__uvarint_put(out, nt);
    for (size_t i = 0; rv == EDGE_OK && i < nt; i++) {
        size_t l = strlen(table[i]);
        rv = edge__uvarint_put(out, l);
        if (rv == EDGE_OK) {
            rv = edge_buf_append(out, table[i], l);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, s->ctx.n_entries);
    }
    for (size_t i = 0; rv == EDGE_OK && i < s->ctx.n_entries; i++) {
        rv = edge__uvarint_put(out, table_index(table, nt, s->ctx.entries[i].region));
        if (rv == EDGE_OK) {
            rv = edge__uvarint_put(out, s->ctx.entries[i].n);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, s->n_cloud);
    }
    for (size_t i = 0; rv == EDGE_OK && i < s->n_cloud; i++) {
        rv = edge__uvarint_put(out, table_index(table, nt, s->cloud[i].region));
        if (rv == EDGE_OK) {
            rv = edge__uvarint_put(out, s->cloud[i].n);
        }
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, s->n_ents);
    }
    for (size_t i = 0; rv == EDGE_OK && i < s->n_ents; i++) {
        const struct edge__orset_entry *e = ents[i];
        rv = edge__uvarint_put(out, e->len);
        if (rv == EDGE_OK) {
            rv = edge_buf_append(out, e->elem, e->len);
        }
        if (rv == EDGE_OK) {
            rv = edge__uvarint_put(out, e->n_dots);
        }
        for (size_t k = 0; rv == EDGE_OK && k < e->n_dots; k++) {
            rv = edge__uvarint_put(out, table_index(table, nt, e->dots[k].region));
            if (rv == EDGE_OK) {
                rv = edge__uvarint_put(out, e->dots[k].n);
            }
        }
    }
out:
    edge_free(table);
    edge_free(ents);
    return rv;
}

struct reader {
    const uint8_t *p;
    size_t len;
    size_t off;
};

static int rd_varint(struct reader *r, uint64_t *out)
{
    size_t used;
    if (edge__uvarint_get(r->p + r->off, r->len - r->off, out, &used) != EDGE_OK) {
        return EDGE_ECORRUPT;
    }
    r->off += used;
    return EDGE_OK;
}

/* A count of items of at least min_size bytes each that the rest of the input can hold. */
static int rd_count(struct reader *r, size_t min_size, uint64_t *out)
{
    if (rd_varint(r, out) != EDGE_OK || *out > (r->len - r->off) / min_size) {
        return EDGE_ECORRUPT;
    }
    return EDGE_OK;
}

static int rd_dot(struct reader *r, const struct edge_crdt_orset *s, struct edge_crdt_dot *out)
{
    uint64_t idx;
    if (rd_varint(r, &idx) != EDGE_OK || idx >= s->n_regions || rd_varint(r, &out->n) != EDGE_OK ||
        out->n == 0) {
        return EDGE_ECORRUPT;
    }
    out->region = s->regions[idx];
    return EDGE_OK;
}

int edge__crdt_orset_decode(struct edge_crdt_orset *s, const uint8_t *p, size_t len, size_t *out_used)
{
    struct reader r = {p, len, 0};
    uint64_t cnt, v;
    uint8_t *used_region = NULL;
    struct edge_crdt_dot *dots = NULL;
    int rv = EDGE_ECORRUPT;

    /* region table */
    if (rd_count(&r, 2, &cnt) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_ENOMEM;
    if (cnt > 0 && ((s->regions = edge_calloc((size_t)cnt, sizeof(*s->regions))) == NULL ||
                    (used_region = edge_calloc((size_t)cnt, 1)) == NULL)) {
        goto out;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        char buf[EDGE_VCLOCK_REGION_MAX + 1];
        rv = EDGE_ECORRUPT;
        if (rd_varint(&r, &v) != EDGE_OK || v > EDGE_VCLOCK_REGION_MAX || v > r.len - r.off) {
            goto out;
        }
        memcpy(buf, r.p + r.off, (size_t)v);
        buf[v] = '\0';
        r.off += (size_t)v;
        if (strlen(buf) != v || !edge_vclock_region_valid(buf) ||
            (i > 0 && strcmp(s->regions[i - 1], buf) >= 0)) {
            goto out;
        }
        rv = EDGE_ENOMEM;
        if ((s->regions[i] = edge_strdup(buf)) == NULL) {
            goto out;
        }
        s->n_regions++;
    }
    /* clock */
    rv = EDGE_ECORRUPT;
    if (rd_count(&r, 2, &cnt) != EDGE_OK) {
        goto out;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        struct edge_crdt_dot d;
        rv = EDGE_ECORRUPT;
        if (rd_dot(&r, s, &d) != EDGE_OK ||
            (s->ctx.n_entries > 0 && strcmp(s->ctx.entries[s->ctx.n_entries - 1].region, d.region) >= 0)) {
            goto out;
        }
        used_region[table_index((const char *const *)s->regions, s->n_regions, d.region)] = 1;
        if ((rv = edge_vclock_set(&s->ctx, d.region, d.n)) != EDGE_OK) {
            goto out;
        }
    }
    /* cloud */
    rv = EDGE_ECORRUPT;
    if (rd_count(&r, 2, &cnt) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_ENOMEM;
    if (cnt > 0 && (s->cloud = edge_malloc((size_t)cnt * sizeof(*s->cloud))) == NULL) {
        goto out;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        struct edge_crdt_dot d;
        rv = EDGE_ECORRUPT;
        if (rd_dot(&r, s, &d) != EDGE_OK || d.n <= edge_vclock_get(&s->ctx, d.region) + 1 ||
            (s->n_cloud > 0 && dot_cmp(&s->cloud[s->n_cloud - 1], &d) >= 0)) {
            goto out;
        }
        used_region[table_index((const char *const *)s->regions, s->n_regions, d.region)] = 1;
        s->cloud[s->n_cloud++] = d;
    }
    rv = EDGE_ECORRUPT;
    for (size_t i = 0; i < s->n_regions; i++) {
        if (!used_region[i]) {
            goto out;
        }
    }
    /* entries */
    if (rd_count(&r, 4, &cnt) != EDGE_OK) {
        goto out;
    }
    if ((rv = reserve(s, (size_t)cnt)) != EDGE_OK) {
        rv = rv == EDGE_EOVERFLOW ? EDGE_ECORRUPT : rv;
        goto out;
    }
    const struct edge__orset_entry *prev = NULL;
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t nd;
        rv = EDGE_ECORRUPT;
        if (rd_varint(&r, &v) != EDGE_OK || v > EDGE_CRDT_VALUE_MAX || v > r.len - r.off) {
            goto out;
        }
        const uint8_t *elem = r.p + r.off;
        size_t elen = (size_t)v;
        r.off += elen;
        if (prev != NULL && bytes_cmp(prev->elem, prev->len, elem, elen) >= 0) {
            goto out;
        }
        if (rd_count(&r, 2, &nd) != EDGE_OK || nd == 0) {
            goto out;
        }
        rv = EDGE_ENOMEM;
        if ((dots = edge_malloc((size_t)nd * sizeof(*dots))) == NULL) {
            goto out;
        }
        for (uint64_t k = 0; k < nd; k++) {
            rv = EDGE_ECORRUPT;
            if (rd_dot(&r, s, &dots[k]) != EDGE_OK || !covers(s, &dots[k]) ||
                (k > 0 && dot_cmp(&dots[k - 1], &dots[k]) >= 0)) {
                goto out;
            }
        }
        rv = EDGE_ENOMEM;
        uint8_t *copy = edge_malloc(elen ? elen : 1);
        if (copy == NULL) {
            goto out;
        }
        if (elen) {
            memcpy(copy, elem, elen);
        }
        append(s, copy, elen, hash_bytes(elem, elen), dots, (size_t)nd);
        dots = NULL;
        prev = &s->ents[s->n_ents - 1];
    }
    *out_used = r.off;
    rv = EDGE_OK;
out:
    edge_free(used_region);
    edge_free(dots);
    if (rv != EDGE_OK) {
        edge_crdt_orset_close(s);
    }
    return rv;
}
