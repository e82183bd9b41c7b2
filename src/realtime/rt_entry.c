/* SPDX-License-Identifier: MIT */
/* The real-time engine (see rt.h): bookmarks, and feed entries rendered once into the
 * event fragments every subscriber shares. */
#include "realtime/rt_int.h"

#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/err.h"
#include "core/log.h"
#include "repl/feed.h"
#include "store/store.h"

/* ---------------------------------------------------------------------------------- */
/* Bookmarks                                                                          */
/* ---------------------------------------------------------------------------------- */

int edge_rt_bookmark_format(const struct edge_vclock *vv, struct edge_buf *out)
{
    int rv = EDGE_OK;
    for (size_t i = 0; i < vv->n_entries && rv == EDGE_OK; i++) {
        rv = edge_buf_printf(out, "%s%s:%llu", i ? "," : "", vv->entries[i].region,
                             (unsigned long long)vv->entries[i].n);
    }
    return rv;
}

int edge_rt_bookmark_parse(const char *s, size_t len, struct edge_vclock *out)
{
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && s[j] != ',') j++;
        /* one pair s[i..j) */
        size_t colon = j;
        for (size_t k = j; k > i; k--) {
            if (s[k - 1] == ':') {
                colon = k - 1;
                break;
            }
        }
        if (colon == j || colon == i || colon - i > EDGE_VCLOCK_REGION_MAX || colon + 1 == j || j - colon > 21) {
            return EDGE_EINVAL;
        }
        char region[EDGE_VCLOCK_REGION_MAX + 1];
        memcpy(region, s + i, colon - i);
        region[colon - i] = '\0';
        uint64_t v = 0;
        for (size_t k = colon + 1; k < j; k++) {
            if (s[k] < '0' || s[k] > '9') return EDGE_EINVAL;
            uint64_t d = (uint64_t)(s[k] - '0');
            if (v > (UINT64_MAX - d) / 10) return EDGE_EINVAL;
            v = v * 10 + d;
        }
        if (!edge_vclock_region_valid(region) || edge_vclock_get(out, region) != 0) return EDGE_EINVAL;
        if (v > 0 && edge_vclock_set(out, region, v) != EDGE_OK) return EDGE_ENOMEM;
        i = j + 1;
        if (j + 1 == len && s[j] == ',') return EDGE_EINVAL; /* trailing comma */
    }
    return EDGE_OK;
}

/* pos covered by b (every counter of a at most b's)? */
bool edge__rt_vv_le(const struct edge_vclock *a, const struct edge_vclock *b)
{
    for (size_t i = 0; i < a->n_entries; i++) {
        if (a->entries[i].n > edge_vclock_get(b, a->entries[i].region)) return false;
    }
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* Entries                                                                            */
/* ---------------------------------------------------------------------------------- */

void edge__rt_entry_unref(struct rt_entry *e)
{
    if (e == NULL || atomic_fetch_sub(&e->refs, 1) != 1) return;
    edge_free(e->arena);
    edge_free(e->ops);
    edge_free(e->cols);
    edge_free(e);
}

static const char *kind_name(int k)
{
    return k == EDGE_FEED_INSERT ? "insert" : k == EDGE_FEED_UPDATE ? "update" : k == EDGE_FEED_DELETE ? "delete" : "ddl";
}

static int put_conflict(struct edge_buf *b, const struct edge_feed_conflict *c)
{
    int rv = edge_buf_printf(b, ",\"conflict\":{\"resolved_for\":\"%s\",\"kind\":", c->this_won ? "this" : "other");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->kind ? c->kind : "row");
    if (rv == EDGE_OK) rv = edge_buf_puts(b, ",\"winner\":{\"origin\":");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->winner_origin);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"seq\":%llu,\"hlc\":\"%llu\"},\"loser\":{\"origin\":", (unsigned long long)c->winner_seq,
                             (unsigned long long)c->winner_hlc);
    }
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(b, c->loser_origin);
    if (rv == EDGE_OK) {
        rv = edge_buf_printf(b, ",\"seq\":%llu,\"hlc\":\"%llu\",\"deleted\":%s,\"row\":", (unsigned long long)c->loser_seq,
                             (unsigned long long)c->loser_hlc, c->loser_deleted ? "true" : "false");
    }
    if (rv == EDGE_OK) rv = edge_repl_image_json(c->loser_image, c->loser_image_len, b);
    if (rv == EDGE_OK) rv = edge_buf_puts(b, "}}");
    return rv;
}

/* Only row changes are events: schema changes and /v1/crdt objects (EDGE_FEED_CRDT) are not. */
static bool row_op(int kind)
{
    return kind == EDGE_FEED_INSERT || kind == EDGE_FEED_UPDATE || kind == EDGE_FEED_DELETE;
}

/* Render a feed entry once: per op, its event fields and what filters look at. */
struct rt_entry *edge__rt_entry_build(const struct edge_feed_entry *fe, const struct edge_vclock *after)
{
    struct rt_entry *e = edge_calloc(1, sizeof(*e));
    if (e == NULL) return NULL;
    atomic_store(&e->refs, 1);
    e->type = ENT_CHANGE;
    snprintf(e->origin, sizeof(e->origin), "%s", fe->origin);
    e->seq = fe->seq;
    size_t ncols = 0, nops = 0;
    for (size_t i = 0; i < fe->n_ops; i++) {
        if (!row_op(fe->ops[i].kind)) continue;
        nops++;
        ncols += (size_t)fe->ops[i].ncols;
    }
    e->ops = edge_calloc(nops ? nops : 1, sizeof(*e->ops));
    e->cols = edge_calloc(ncols ? ncols : 1, sizeof(*e->cols));
    struct edge_buf a;
    edge_buf_init(&a, (size_t)1 << 30);
    int rv = e->ops && e->cols ? EDGE_OK : EDGE_ENOMEM;
    size_t k = 0, cc = 0;
    for (size_t i = 0; i < fe->n_ops && rv == EDGE_OK; i++) {
        const struct edge_feed_op *op = &fe->ops[i];
        if (!row_op(op->kind)) continue;
        struct rt_op *o = &e->ops[k++];
        o->kind = op->kind;
        o->table_off = (uint32_t)a.len;
        o->table_len = (uint32_t)op->table_len;
        rv = edge_buf_append(&a, op->table, op->table_len);
        o->pk_off = (uint32_t)a.len;
        if (rv == EDGE_OK) rv = edge_feed_pk_json(op, &a);
        o->pk_len = (uint32_t)(a.len - o->pk_off);
        o->col0 = (uint32_t)cc;
        o->ncols = (uint32_t)op->ncols;
        for (int j = 0; j < op->ncols && rv == EDGE_OK; j++) {
            struct rt_col *c = &e->cols[cc++];
            c->name_off = (uint32_t)a.len;
            c->name_len = (uint32_t)op->cols[j].name_len;
            rv = edge_buf_append(&a, op->cols[j].name, op->cols[j].name_len);
            c->val_off = (uint32_t)a.len;
            if (rv == EDGE_OK) rv = edge_feed_value_json(op->cols[j].val, op->cols[j].val_len, &a);
            c->val_len = (uint32_t)(a.len - c->val_off);
            for (int p = 0; p < op->npk; p++) c->pk = c->pk || op->pk[p] == j;
        }
        o->frag_off = (uint32_t)a.len;
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, "\"table\":");
        if (rv == EDGE_OK) rv = edge_buf_json_str(&a, op->table, op->table_len);
        if (rv == EDGE_OK) rv = edge_buf_printf(&a, ",\"op\":\"%s\",\"pk\":", kind_name(op->kind));
        if (rv == EDGE_OK) rv = edge_feed_pk_json(op, &a);
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, ",\"row\":");
        if (rv == EDGE_OK) rv = op->kind == EDGE_FEED_DELETE ? edge_buf_puts(&a, "null") : edge_feed_row_json(op, &a);
        if (rv == EDGE_OK && op->old != NULL) {
            /* the row before the change, as the origin had it (capture_old.c) */
            struct edge_feed_op img = {.ncols = op->nold, .cols = op->old};
            rv = edge_buf_puts(&a, ",\"old\":");
            if (rv == EDGE_OK) rv = edge_feed_row_json(&img, &a);
        }
        if (rv == EDGE_OK) rv = edge_buf_puts(&a, ",\"origin\":");
        if (rv == EDGE_OK) rv = edge_buf_json_cstr(&a, fe->origin);
        if (rv == EDGE_OK) {
            rv = edge_buf_printf(&a, ",\"seq\":%llu,\"hlc\":\"%llu\",\"version\":\"%s:%llu\"", (unsigned long long)fe->seq,
                                 (unsigned long long)fe->hlc, fe->origin, (unsigned long long)fe->seq);
        }
        if (rv == EDGE_OK && op->conflict != NULL) rv = put_conflict(&a, op->conflict);
        o->frag_len = (uint32_t)(a.len - o->frag_off);
    }
    e->n_ops = k;
    e->bm_off = (uint32_t)a.len;
    if (rv == EDGE_OK) rv = edge_rt_bookmark_format(after, &a);
    e->bm_len = (uint32_t)(a.len - e->bm_off);
    if (rv == EDGE_OK) rv = edge_buf_putc(&a, '\0');
    if (rv != EDGE_OK) {
        edge_buf_free(&a);
        edge_free(e->ops);
        edge_free(e->cols);
        edge_free(e);
        return NULL;
    }
    size_t len;
    e->arena = edge_buf_steal(&a, &len);
    return e;
}
