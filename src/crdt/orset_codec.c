/* SPDX-License-Identifier: MIT */
/* The canonical encoding of an observed-remove set (see orset.c for the design). */
#include "crdt/orset_int.h"

#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/vclock.h"

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

static uint8_t *put_uv(uint8_t *p, uint64_t v)
{
    do {
        uint8_t b = (uint8_t)(v & 0x7f);
        v >>= 7;
        *p++ = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v != 0);
    return p;
}

int edge__crdt_orset_encode(const struct edge_crdt_orset *s, struct edge_buf *out)
{
    const char **table = NULL;
    size_t *ptab = NULL;
    const struct edge__orset_entry **ents = NULL;
    size_t nt = 0, live = s->n_ents - s->n_dead;
    int rv = EDGE_ENOMEM;

    /* Region table: the regions of the context (clock and cloud); dots only use those. */
    table = edge_malloc((s->ctx.n_entries + s->n_cloud + 1) * sizeof(*table));
    ptab = edge_malloc((s->n_regions + 1) * sizeof(*ptab));
    if (table == NULL || ptab == NULL) {
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
    /* Dots name pooled regions: translate pool index -> table index once. */
    for (size_t i = 0; i < s->n_regions; i++) {
        ptab[i] = table_index(table, nt, s->regions[i]);
    }
    if ((rv = edge__orset_sorted_ptrs(s, &ents)) != EDGE_OK) {
        goto out;
    }
    /* Exact upper bound, then plain stores: no per-field capacity checks. */
    size_t bound = 40 + nt * (10 + EDGE_VCLOCK_REGION_MAX) + (s->ctx.n_entries + s->n_cloud) * 20;
    for (size_t i = 0; i < live; i++) {
        bound += 20 + ents[i]->len + ents[i]->n_dots * 20;
    }
    if ((rv = edge_buf_reserve(out, bound)) != EDGE_OK) {
        goto out;
    }
    uint8_t *base = (uint8_t *)out->data + out->len, *p = base;
    p = put_uv(p, nt);
    for (size_t i = 0; i < nt; i++) {
        size_t l = strlen(table[i]);
        p = put_uv(p, l);
        memcpy(p, table[i], l);
        p += l;
    }
    p = put_uv(p, s->ctx.n_entries);
    for (size_t i = 0; i < s->ctx.n_entries; i++) {
        p = put_uv(p, table_index(table, nt, s->ctx.entries[i].region));
        p = put_uv(p, s->ctx.entries[i].n);
    }
    p = put_uv(p, s->n_cloud);
    for (size_t i = 0; i < s->n_cloud; i++) {
        p = put_uv(p, ptab[edge__orset_pool_index(s, s->cloud[i].region)]);
        p = put_uv(p, s->cloud[i].n);
    }
    p = put_uv(p, live);
    for (size_t i = 0; i < live; i++) {
        const struct edge__orset_entry *e = ents[i];
        const struct edge_crdt_dot *d = edge__orset_dots_of(e);
        p = put_uv(p, e->len);
        if (e->len) {
            memcpy(p, e->elem, e->len);
        }
        p += e->len;
        p = put_uv(p, e->n_dots);
        for (size_t k = 0; k < e->n_dots; k++) {
            p = put_uv(p, ptab[edge__orset_pool_index(s, d[k].region)]);
            p = put_uv(p, d[k].n);
        }
    }
    out->len += (size_t)(p - base);
    out->data[out->len] = '\0';
    rv = EDGE_OK;
out:
    edge_free(table);
    edge_free(ptab);
    edge_free(ents);
    return rv;
}

/* A count of items of at least min_size bytes each that the rest of the input can hold. */
static int rd_count(struct edge__rd *r, size_t min_size, uint64_t *out)
{
    if (edge__uvarint_read(r, out) != EDGE_OK || *out > (r->len - r->off) / min_size) {
        return EDGE_ECORRUPT;
    }
    return EDGE_OK;
}

static int rd_dot(struct edge__rd *r, const struct edge_crdt_orset *s, struct edge_crdt_dot *out, size_t *out_idx)
{
    uint64_t idx;
    if (edge__uvarint_read(r, &idx) != EDGE_OK || idx >= s->n_regions || edge__uvarint_read(r, &out->n) != EDGE_OK ||
        out->n == 0) {
        return EDGE_ECORRUPT;
    }
    out->region = s->regions[idx];
    *out_idx = (size_t)idx;
    return EDGE_OK;
}

int edge__crdt_orset_decode(struct edge_crdt_orset *s, const uint8_t *p, size_t len, size_t *out_used)
{
    struct edge__rd r = {p, len, 0};
    uint64_t cnt, v;
    uint8_t *used_region = NULL;
    uint64_t *clk = NULL; /* clock value per region index, for the coverage checks */
    struct dotv dv = {{NULL, 0}, NULL, 0};
    size_t ri;
    int rv = EDGE_ECORRUPT;

    /* region table */
    if (rd_count(&r, 2, &cnt) != EDGE_OK) {
        goto out;
    }
    rv = EDGE_ENOMEM;
    if (cnt > 0 && ((s->regions = edge_calloc((size_t)cnt, sizeof(*s->regions))) == NULL ||
                    (used_region = edge_calloc((size_t)cnt, 1)) == NULL ||
                    (clk = edge_calloc((size_t)cnt, sizeof(*clk))) == NULL)) {
        goto out;
    }
    for (uint64_t i = 0; i < cnt; i++) {
        char buf[EDGE_VCLOCK_REGION_MAX + 1];
        rv = EDGE_ECORRUPT;
        if (edge__uvarint_read(&r, &v) != EDGE_OK || v > EDGE_VCLOCK_REGION_MAX || v > r.len - r.off) {
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
        if (rd_dot(&r, s, &d, &ri) != EDGE_OK ||
            (s->ctx.n_entries > 0 && strcmp(s->ctx.entries[s->ctx.n_entries - 1].region, d.region) >= 0)) {
            goto out;
        }
        used_region[ri] = 1;
        clk[ri] = d.n;
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
        /* Canonical: beyond clock + 1 (that one would have been folded into the clock).
         * Written as n - 1 (n >= 1 here) so a clock at UINT64_MAX cannot wrap the bound
         * to 0 and let covered dots in, which merge would then compact away. */
        if (rd_dot(&r, s, &d, &ri) != EDGE_OK || d.n - 1 <= clk[ri] ||
            (s->n_cloud > 0 && edge__orset_dot_cmp(&s->cloud[s->n_cloud - 1], &d) >= 0)) {
            goto out;
        }
        used_region[ri] = 1;
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
    if ((rv = edge__orset_reserve(s, (size_t)cnt)) != EDGE_OK) {
        rv = rv == EDGE_EOVERFLOW ? EDGE_ECORRUPT : rv;
        goto out;
    }
    /* One block for every element's bytes: the rest of the input bounds their total. */
    size_t arena_off = 0;
    if (cnt > 0 && (s->arena = edge_malloc(r.len - r.off)) == NULL) {
        rv = EDGE_ENOMEM;
        goto out;
    }
    const struct edge__orset_entry *prev = NULL;
    for (uint64_t i = 0; i < cnt; i++) {
        uint64_t nd;
        rv = EDGE_ECORRUPT;
        if (edge__uvarint_read(&r, &v) != EDGE_OK || v > EDGE_CRDT_VALUE_MAX || v > r.len - r.off) {
            goto out;
        }
        const uint8_t *elem = r.p + r.off;
        size_t elen = (size_t)v;
        r.off += elen;
        if (prev != NULL && edge__orset_bytes_cmp(prev->elem, prev->len, elem, elen) >= 0) {
            goto out;
        }
        if (rd_count(&r, 2, &nd) != EDGE_OK || nd == 0) {
            goto out;
        }
        struct edge_crdt_dot *dots = &dv.one;
        if (nd > 1) {
            rv = EDGE_ENOMEM;
            if ((dv.many = edge_malloc((size_t)nd * sizeof(*dv.many))) == NULL) {
                goto out;
            }
            dots = dv.many;
        }
        dv.n = (size_t)nd;
        for (uint64_t k = 0; k < nd; k++) {
            rv = EDGE_ECORRUPT;
            if (rd_dot(&r, s, &dots[k], &ri) != EDGE_OK ||
                (dots[k].n > clk[ri] && edge__orset_cloud_find(s, &dots[k]) < 0) ||
                (k > 0 && edge__orset_dot_cmp(&dots[k - 1], &dots[k]) >= 0)) {
                goto out;
            }
        }
        uint8_t *copy = s->arena + arena_off;
        if (elen) {
            memcpy(copy, elem, elen);
        }
        arena_off += elen;
        struct edge__orset_entry *e = &s->ents[s->n_ents];
        memset(e, 0, sizeof(*e));
        e->elem = copy;
        e->len = elen;
        e->hash = edge__orset_hash_bytes(elem, elen);
        edge__orset_ent_set_dots(e, &dv);
        edge__orset_slot_insert(s, s->n_ents);
        s->n_ents++;
        prev = e;
    }
    s->n_sorted = s->n_ents; /* checked ascending above */
    *out_used = r.off;
    rv = EDGE_OK;
out:
    edge_free(used_region);
    edge_free(clk);
    edge__orset_dotv_free(&dv);
    if (rv != EDGE_OK) {
        edge_crdt_orset_close(s);
    }
    return rv;
}
