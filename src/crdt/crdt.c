/* SPDX-License-Identifier: MIT */
/* The generic handle: a type tag, the object's vector clock and the typed state.
 * Operations stamp the clock and delegate; merges join the clock too and report
 * concurrency; encode/decode add the versioned header around the typed payload. */
#include "crdt/crdt.h"

#include <string.h>

#include "core/alloc.h"

#define CRDT_MAGIC 0xEC
#define CRDT_VERSION 1

struct edge_crdt {
    enum edge_crdt_type type;
    struct edge_vclock vc; /* region -> local operations made there */
    union {
        struct edge_crdt_gcounter g;
        struct edge_crdt_pncounter pn;
        struct edge_crdt_orset set;
        struct edge_crdt_lww lww;
    } u;
};

static const char *const type_names[] = {NULL, "g-counter", "pn-counter", "or-set", "lww-register"};

const char *edge_crdt_type_name(int type)
{
    if (type < EDGE_CRDT_GCOUNTER || type > EDGE_CRDT_LWW) {
        return "?";
    }
    return type_names[type];
}

int edge_crdt_type_parse(const char *name, enum edge_crdt_type *out_type)
{
    for (int t = EDGE_CRDT_GCOUNTER; name != NULL && t <= EDGE_CRDT_LWW; t++) {
        if (strcmp(name, type_names[t]) == 0) {
            *out_type = (enum edge_crdt_type)t;
            return EDGE_OK;
        }
    }
    return EDGE_EINVAL;
}

int edge_crdt_create(int type, struct edge_crdt **out)
{
    if (type < EDGE_CRDT_GCOUNTER || type > EDGE_CRDT_LWW) {
        return EDGE_EINVAL;
    }
    struct edge_crdt *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) {
        return EDGE_ENOMEM;
    }
    c->type = (enum edge_crdt_type)type;
    edge_vclock_init(&c->vc);
    switch (c->type) {
    case EDGE_CRDT_GCOUNTER:
        edge_crdt_gcounter_init(&c->u.g);
        break;
    case EDGE_CRDT_PNCOUNTER:
        edge_crdt_pncounter_init(&c->u.pn);
        break;
    case EDGE_CRDT_ORSET:
        edge_crdt_orset_init(&c->u.set);
        break;
    case EDGE_CRDT_LWW:
        edge_crdt_lww_init(&c->u.lww);
        break;
    }
    *out = c;
    return EDGE_OK;
}

void edge_crdt_destroy(struct edge_crdt *c)
{
    if (c == NULL) {
        return;
    }
    switch (c->type) {
    case EDGE_CRDT_GCOUNTER:
        edge_crdt_gcounter_close(&c->u.g);
        break;
    case EDGE_CRDT_PNCOUNTER:
        edge_crdt_pncounter_close(&c->u.pn);
        break;
    case EDGE_CRDT_ORSET:
        edge_crdt_orset_close(&c->u.set);
        break;
    case EDGE_CRDT_LWW:
        edge_crdt_lww_close(&c->u.lww);
        break;
    }
    edge_vclock_close(&c->vc);
    edge_free(c);
}

enum edge_crdt_type edge_crdt_type_of(const struct edge_crdt *c) { return c->type; }

const struct edge_vclock *edge_crdt_vclock(const struct edge_crdt *c) { return &c->vc; }

/* ---- local operations ---- */

/* Shared shape of every local op: the typed change writes into delta's state (if any),
 * then the clock is stamped. The stamp is the last fallible step, and is prepared on a
 * copy so that a failure after the typed change can be undone by not swapping. */
struct op {
    int kind; /* 'i' increment, 'd' decrement, 'a' add, 'r' remove, 's' set */
    uint64_t amount;
    uint64_t hlc;
    const void *data;
    size_t len;
};

static int typed_apply(struct edge_crdt *c, const char *region, const struct op *op, struct edge_crdt *delta)
{
    switch (c->type) {
    case EDGE_CRDT_GCOUNTER:
        if (op->kind != 'i') {
            return EDGE_EINVAL;
        }
        return edge_crdt_gcounter_increment(&c->u.g, region, op->amount, delta ? &delta->u.g : NULL);
    case EDGE_CRDT_PNCOUNTER:
        if (op->kind != 'i' && op->kind != 'd') {
            return EDGE_EINVAL;
        }
        return edge_crdt_pncounter_add(&c->u.pn, region, op->kind == 'i' ? 1 : -1, op->amount,
                                       delta ? &delta->u.pn : NULL);
    case EDGE_CRDT_ORSET:
        if (op->kind == 'a') {
            return edge_crdt_orset_add(&c->u.set, region, op->data, op->len, delta ? &delta->u.set : NULL);
        }
        if (op->kind == 'r') {
            return edge_crdt_orset_remove(&c->u.set, op->data, op->len, delta ? &delta->u.set : NULL);
        }
        return EDGE_EINVAL;
    case EDGE_CRDT_LWW:
        if (op->kind != 's') {
            return EDGE_EINVAL;
        }
        return edge_crdt_lww_set(&c->u.lww, region, op->hlc, op->data, op->len, delta ? &delta->u.lww : NULL);
    }
    return EDGE_EINVAL;
}

static int apply(struct edge_crdt *c, const char *region, const struct op *op, struct edge_crdt **out_delta)
{
    struct edge_crdt *delta = NULL;
    struct edge_vclock vc;
    int rv;

    edge_vclock_init(&vc);
    if (out_delta != NULL) {
        *out_delta = NULL;
    }
    if (!edge_vclock_region_valid(region)) {
        return EDGE_EINVAL;
    }
    if ((rv = edge_vclock_copy(&vc, &c->vc)) != EDGE_OK || (rv = edge_vclock_increment(&vc, region, NULL)) != EDGE_OK) {
        goto out;
    }
    if (out_delta != NULL) {
        if ((rv = edge_crdt_create(c->type, &delta)) != EDGE_OK ||
            (rv = edge_vclock_copy(&delta->vc, &vc)) != EDGE_OK) {
            goto out;
        }
    }
    /* Last fallible step: the typed op is atomic itself. */
    if ((rv = typed_apply(c, region, op, delta)) != EDGE_OK) {
        goto out;
    }
    struct edge_vclock t = c->vc;
    c->vc = vc;
    vc = t;
    if (out_delta != NULL) {
        *out_delta = delta;
        delta = NULL;
    }
out:
    edge_vclock_close(&vc);
    edge_crdt_destroy(delta);
    return rv;
}

int edge_crdt_increment(struct edge_crdt *c, const char *region, uint64_t amount, struct edge_crdt **out_delta)
{
    struct op op = {.kind = 'i', .amount = amount};
    return apply(c, region, &op, out_delta);
}

int edge_crdt_decrement(struct edge_crdt *c, const char *region, uint64_t amount, struct edge_crdt **out_delta)
{
    struct op op = {.kind = 'd', .amount = amount};
    return apply(c, region, &op, out_delta);
}

int edge_crdt_add(struct edge_crdt *c, const char *region, const void *elem, size_t len,
                  struct edge_crdt **out_delta)
{
    struct op op = {.kind = 'a', .data = elem, .len = len};
    return apply(c, region, &op, out_delta);
}

int edge_crdt_remove(struct edge_crdt *c, const char *region, const void *elem, size_t len,
                     struct edge_crdt **out_delta)
{
    struct op op = {.kind = 'r', .data = elem, .len = len};
    return apply(c, region, &op, out_delta);
}

int edge_crdt_set(struct edge_crdt *c, const char *region, uint64_t hlc, const void *value, size_t len,
                  struct edge_crdt **out_delta)
{
    struct op op = {.kind = 's', .hlc = hlc, .data = value, .len = len};
    return apply(c, region, &op, out_delta);
}

/* ---- merge ---- */

int edge_crdt_merge(struct edge_crdt *c, const struct edge_crdt *other, int *out_concurrent)
{
    struct edge_vclock vc;
    int rv;

    if (c->type != other->type) {
        return EDGE_EINVAL;
    }
    edge_vclock_init(&vc);
    if ((rv = edge_vclock_copy(&vc, &c->vc)) != EDGE_OK || (rv = edge_vclock_merge(&vc, &other->vc)) != EDGE_OK) {
        goto out;
    }
    int concurrent = edge_vclock_compare(&c->vc, &other->vc) == EDGE_VCLOCK_CONCURRENT;
    switch (c->type) {
    case EDGE_CRDT_GCOUNTER:
        rv = edge_crdt_gcounter_merge(&c->u.g, &other->u.g);
        break;
    case EDGE_CRDT_PNCOUNTER:
        rv = edge_crdt_pncounter_merge(&c->u.pn, &other->u.pn);
        break;
    case EDGE_CRDT_ORSET:
        rv = edge_crdt_orset_merge(&c->u.set, &other->u.set);
        break;
    case EDGE_CRDT_LWW:
        rv = edge_crdt_lww_merge(&c->u.lww, &other->u.lww);
        break;
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    struct edge_vclock t = c->vc;
    c->vc = vc;
    vc = t;
    if (out_concurrent != NULL) {
        *out_concurrent = concurrent;
    }
out:
    edge_vclock_close(&vc);
    return rv;
}

int edge_crdt_clone(const struct edge_crdt *c, struct edge_crdt **out)
{
    struct edge_crdt *n = NULL;
    int rv = edge_crdt_create(c->type, &n);
    if (rv == EDGE_OK) {
        rv = edge_crdt_merge(n, c, NULL);
    }
    if (rv != EDGE_OK) {
        edge_crdt_destroy(n);
        return rv;
    }
    *out = n;
    return EDGE_OK;
}

/* ---- reading ---- */

int edge_crdt_value_u64(const struct edge_crdt *c, uint64_t *out_value)
{
    if (c->type == EDGE_CRDT_GCOUNTER) {
        *out_value = edge_crdt_gcounter_value(&c->u.g);
        return EDGE_OK;
    }
    if (c->type == EDGE_CRDT_PNCOUNTER) {
        int64_t v = edge_crdt_pncounter_value(&c->u.pn);
        if (v < 0) {
            return EDGE_EOVERFLOW;
        }
        *out_value = (uint64_t)v;
        return EDGE_OK;
    }
    return EDGE_EINVAL;
}

int edge_crdt_value_i64(const struct edge_crdt *c, int64_t *out_value)
{
    if (c->type == EDGE_CRDT_PNCOUNTER) {
        *out_value = edge_crdt_pncounter_value(&c->u.pn);
        return EDGE_OK;
    }
    if (c->type == EDGE_CRDT_GCOUNTER) {
        uint64_t v = edge_crdt_gcounter_value(&c->u.g);
        if (v > (uint64_t)INT64_MAX) {
            return EDGE_EOVERFLOW;
        }
        *out_value = (int64_t)v;
        return EDGE_OK;
    }
    return EDGE_EINVAL;
}

size_t edge_crdt_size(const struct edge_crdt *c) { return c->type == EDGE_CRDT_ORSET ? edge_crdt_orset_size(&c->u.set) : 0; }

int edge_crdt_foreach(const struct edge_crdt *c, edge_crdt_elem_cb cb, void *ud)
{
    if (c->type != EDGE_CRDT_ORSET) {
        return EDGE_EINVAL;
    }
    return edge_crdt_orset_foreach(&c->u.set, cb, ud);
}

int edge_crdt_contains(const struct edge_crdt *c, const void *elem, size_t len)
{
    return c->type == EDGE_CRDT_ORSET && edge_crdt_orset_contains(&c->u.set, elem, len);
}

int edge_crdt_get(const struct edge_crdt *c, const uint8_t **out_value, size_t *out_len, uint64_t *out_hlc,
                  const char **out_region)
{
    if (c->type != EDGE_CRDT_LWW) {
        return EDGE_EINVAL;
    }
    if (c->u.lww.region == NULL) {
        return EDGE_ENOTFOUND;
    }
    if (out_value != NULL) {
        *out_value = c->u.lww.value;
    }
    if (out_len != NULL) {
        *out_len = c->u.lww.len;
    }
    if (out_hlc != NULL) {
        *out_hlc = c->u.lww.hlc;
    }
    if (out_region != NULL) {
        *out_region = c->u.lww.region;
    }
    return EDGE_OK;
}

int edge_crdt_vclock_foreach(const struct edge_crdt *c, edge_crdt_vclock_cb cb, void *ud)
{
    for (size_t i = 0; i < c->vc.n_entries; i++) {
        int rv = cb(ud, c->vc.entries[i].region, c->vc.entries[i].n);
        if (rv != 0) {
            return rv;
        }
    }
    return EDGE_OK;
}

/* ---- binary format ---- */

int edge_crdt_encode(const struct edge_crdt *c, uint8_t **out_buf, size_t *out_len)
{
    struct edge_buf b;
    uint8_t hdr[3] = {CRDT_MAGIC, CRDT_VERSION, (uint8_t)c->type};
    int rv;

    edge_buf_init(&b, SIZE_MAX / 2);
    rv = edge_buf_append(&b, hdr, sizeof(hdr));
    if (rv == EDGE_OK) {
        rv = edge_vclock_encode(&c->vc, &b);
    }
    if (rv == EDGE_OK) {
        switch (c->type) {
        case EDGE_CRDT_GCOUNTER:
            rv = edge__crdt_gcounter_encode(&c->u.g, &b);
            break;
        case EDGE_CRDT_PNCOUNTER:
            rv = edge__crdt_pncounter_encode(&c->u.pn, &b);
            break;
        case EDGE_CRDT_ORSET:
            rv = edge__crdt_orset_encode(&c->u.set, &b);
            break;
        case EDGE_CRDT_LWW:
            rv = edge__crdt_lww_encode(&c->u.lww, &b);
            break;
        }
    }
    if (rv != EDGE_OK) {
        edge_buf_free(&b);
        return rv == EDGE_ETOOBIG ? EDGE_ENOMEM : rv;
    }
    *out_buf = (uint8_t *)edge_buf_steal(&b, out_len);
    return EDGE_OK;
}

int edge_crdt_decode(const uint8_t *buf, size_t len, struct edge_crdt **out)
{
    struct edge_crdt *c = NULL;
    size_t off = 3, used = 0;
    int rv = EDGE_ECORRUPT;

    if (buf == NULL || len < 3 || buf[0] != CRDT_MAGIC || buf[1] != CRDT_VERSION ||
        buf[2] < EDGE_CRDT_GCOUNTER || buf[2] > EDGE_CRDT_LWW) {
        goto out;
    }
    if ((rv = edge_crdt_create(buf[2], &c)) != EDGE_OK) {
        goto out;
    }
    if ((rv = edge_vclock_decode(&c->vc, buf + off, len - off, &used)) != EDGE_OK) {
        goto out;
    }
    off += used;
    switch (c->type) {
    case EDGE_CRDT_GCOUNTER:
        rv = edge__crdt_gcounter_decode(&c->u.g, buf + off, len - off, &used);
        break;
    case EDGE_CRDT_PNCOUNTER:
        rv = edge__crdt_pncounter_decode(&c->u.pn, buf + off, len - off, &used);
        break;
    case EDGE_CRDT_ORSET:
        rv = edge__crdt_orset_decode(&c->u.set, buf + off, len - off, &used);
        break;
    case EDGE_CRDT_LWW:
        rv = edge__crdt_lww_decode(&c->u.lww, buf + off, len - off, &used);
        break;
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    if (off + used != len) {
        rv = EDGE_ECORRUPT; /* trailing bytes */
        goto out;
    }
    *out = c;
    c = NULL;
out:
    edge_crdt_destroy(c);
    return rv;
}
