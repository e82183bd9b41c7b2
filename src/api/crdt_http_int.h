/* SPDX-License-Identifier: MIT */
/* Shared by the /v1/crdt handler files: crdt_http.c (routing, updates, merges, batches)
 * and crdt_read.c (the JSON form of objects, GET, list, stats). */
#ifndef EDGE_API_CRDT_HTTP_INT_H
#define EDGE_API_CRDT_HTTP_INT_H

#include <sqlite3.h>
#include <stdio.h>

#include "api/crdt_http.h"
#include "crdt/crdt.h"
#include "edgelite/crdt.h"

#define NAME_MAX_LEN 128

/* An object that updates of one batch share: loaded once, saved once (batch_flush). */
struct bobj {
    char name[NAME_MAX_LEN + 1];
    struct edge_crdt *c;
    uint64_t conflicts;
    int dirty; /* changed since loaded: to save */
};

/* The requests handed over together (edge_crdt_http_handle_batch). */
struct batch {
    sqlite3 *db;
    const struct edge_clock *clock;
    struct bobj *objs;
    size_t n, cap;
    int failed;   /* a store error that takes the whole batch back; EDGE_OK while none */
    uint64_t ops, merges, conflicts; /* for the totals, once the batch is kept */
};

/* A request in flight: where the answer goes and, for errors, what it says. */
struct hreq {
    struct batch *bt;
    sqlite3 *db;
    struct edge_capture *cap; /* the writer's change capture; NULL on a single node */
    const char *region;
    const struct edge_clock *clock;
    int status;
    const char *err_code; /* NULL while no error */
    char err_msg[160];
    struct edge_buf *b;
};

static inline int edge__crdt_fail(struct hreq *r, int status, const char *code, const char *msg)
{
    r->status = status;
    r->err_code = code;
    snprintf(r->err_msg, sizeof(r->err_msg), "%s", msg);
    return EDGE_OK;
}

/* {"name","type","value"} plus, when full, "vclock", "conflicts" and "state". */
int edge__crdt_put_object(struct edge_buf *b, const char *name, const struct edge_crdt *c, int full,
                          uint64_t conflicts);
/* The whole object, with its merge statistics, into r->b. */
int edge__crdt_put_full(struct hreq *r, const char *name, const struct edge_crdt *c, uint64_t conflicts);
/* GET /v1/crdt/{name}, GET /v1/crdt/stats, GET /v1/crdt. */
int edge__crdt_get(struct hreq *r, const char *name);
int edge__crdt_stats(struct hreq *r);
int edge__crdt_list(struct hreq *r);

#endif
