/* SPDX-License-Identifier: MIT */
/* Last-writer-wins register: (value, hlc, region); the larger (hlc, region) pair wins,
 * regions compared with strcmp. Two writes with the same pair can only come from a
 * misbehaving writer; the larger value (bytewise) wins then so merge stays commutative. */
#include "crdt/crdt.h"

#include <string.h>

#include "core/alloc.h"

void edge_crdt_lww_init(struct edge_crdt_lww *l)
{
    l->value = NULL;
    l->len = 0;
    l->hlc = 0;
    l->region = NULL;
}

void edge_crdt_lww_close(struct edge_crdt_lww *l)
{
    edge_free(l->value);
    edge_free(l->region);
    edge_crdt_lww_init(l);
}

static int lww_bytes_cmp(const uint8_t *a, size_t al, const uint8_t *b, size_t bl)
{
    size_t n = al < bl ? al : bl;
    int c = n ? memcmp(a, b, n) : 0;
    if (c != 0) {
        return c;
    }
    return al < bl ? -1 : al > bl;
}

/* > 0 when a wins over b. An unset register loses to everything. */
static int lww_cmp(const struct edge_crdt_lww *a, const struct edge_crdt_lww *b)
{
    if (a->region == NULL || b->region == NULL) {
        return (a->region != NULL) - (b->region != NULL);
    }
    if (a->hlc != b->hlc) {
        return a->hlc > b->hlc ? 1 : -1;
    }
    int c = strcmp(a->region, b->region);
    if (c != 0) {
        return c;
    }
    return lww_bytes_cmp(a->value, a->len, b->value, b->len);
}

/* Replace l's content with a copy of (value, hlc, region); unchanged on ENOMEM. */
static int assign(struct edge_crdt_lww *l, const char *region, uint64_t hlc, const void *value, size_t len)
{
    char *r = edge_strdup(region);
    uint8_t *v = edge_malloc(len ? len : 1); /* non-NULL even for an empty value */
    if (r == NULL || v == NULL) {
        edge_free(r);
        edge_free(v);
        return EDGE_ENOMEM;
    }
    if (len) {
        memcpy(v, value, len);
    }
    edge_crdt_lww_close(l);
    l->region = r;
    l->value = v;
    l->len = len;
    l->hlc = hlc;
    return EDGE_OK;
}

int edge_crdt_lww_set(struct edge_crdt_lww *l, const char *region, uint64_t hlc, const void *value,
                      size_t len, struct edge_crdt_lww *out_delta)
{
    if (!edge_vclock_region_valid(region) || len > EDGE_CRDT_VALUE_MAX || (len && value == NULL)) {
        return EDGE_EINVAL;
    }
    if (l->region != NULL && hlc <= l->hlc) {
        if (l->hlc == UINT64_MAX) {
            return EDGE_EOVERFLOW;
        }
        hlc = l->hlc + 1;
    }
    if (out_delta != NULL) {
        int rv = assign(out_delta, region, hlc, value, len);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    int rv = assign(l, region, hlc, value, len);
    if (rv != EDGE_OK && out_delta != NULL) {
        edge_crdt_lww_close(out_delta);
    }
    return rv;
}

int edge_crdt_lww_merge(struct edge_crdt_lww *l, const struct edge_crdt_lww *o)
{
    if (lww_cmp(o, l) <= 0) {
        return EDGE_OK;
    }
    return assign(l, o->region, o->hlc, o->value, o->len);
}

/* Payload: 0 (unset) | 1, varint hlc, varint region length, region, varint value
 * length, value. */
int edge__crdt_lww_encode(const struct edge_crdt_lww *l, struct edge_buf *out)
{
    if (l->region == NULL) {
        return edge_buf_putc(out, 0);
    }
    size_t rl = strlen(l->region);
    int rv = edge_buf_putc(out, 1);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, l->hlc);
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, rl);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, l->region, rl);
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, l->len);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, l->value, l->len);
    }
    return rv;
}

int edge__crdt_lww_decode(struct edge_crdt_lww *l, const uint8_t *p, size_t len, size_t *out_used)
{
    size_t off = 1, used;
    uint64_t hlc, rl, vl;
    char region[EDGE_VCLOCK_REGION_MAX + 1];

    if (len < 1 || p[0] > 1) {
        return EDGE_ECORRUPT;
    }
    if (p[0] == 0) {
        *out_used = 1;
        return EDGE_OK;
    }
    if (edge__uvarint_get(p + off, len - off, &hlc, &used) != EDGE_OK) {
        return EDGE_ECORRUPT;
    }
    off += used;
    if (edge__uvarint_get(p + off, len - off, &rl, &used) != EDGE_OK) {
        return EDGE_ECORRUPT;
    }
    off += used;
    if (rl > EDGE_VCLOCK_REGION_MAX || rl > len - off) {
        return EDGE_ECORRUPT;
    }
    memcpy(region, p + off, (size_t)rl);
    region[rl] = '\0';
    off += (size_t)rl;
    if (!edge_vclock_region_valid(region) || strlen(region) != rl) {
        return EDGE_ECORRUPT;
    }
    if (edge__uvarint_get(p + off, len - off, &vl, &used) != EDGE_OK) {
        return EDGE_ECORRUPT;
    }
    off += used;
    if (vl > EDGE_CRDT_VALUE_MAX || vl > len - off) {
        return EDGE_ECORRUPT;
    }
    int rv = assign(l, region, hlc, p + off, (size_t)vl);
    if (rv != EDGE_OK) {
        return rv;
    }
    *out_used = off + (size_t)vl;
    return EDGE_OK;
}
