/* SPDX-License-Identifier: MIT */
/* POST /v1/events (publish a change by primary key, with an optional compare-and-set
 * version), POST /v1/broadcast/{channel} and the relay of broadcasts between regions
 * (docs/realtime.md). */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/httpc.h"
#include "net/httpc_async.h"
#include "realtime/rt.h"
#include "repl/http_auth.h"
#include "store/sql.h"

/* ---------------------------------------------------------------------------------- */
/* Broadcast                                                                          */
/* ---------------------------------------------------------------------------------- */

static void relay_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    (void)ud;
    (void)resp;
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_API, "broadcast relay failed: %s (at most once: dropped)", edge_strerror(rv));
    }
}

void edge__api_broadcast_relay(struct edge_node *n, int loop, const char *channel, const char *payload_json,
                               size_t len)
{
    const struct edge_conf *conf = n->cfg.conf;
    struct loop *l = &n->loops[loop];
    if (!n->repl.cluster || conf == NULL || conf->cluster_secret == NULL || l->stopping) return;
    /* the path as the callee decodes it is what is signed; on the wire every byte of the
     * channel but the unreserved ones is %-escaped, so it decodes to exactly that */
    char path[256], wire[512], hdr[512];
    static const char hex[] = "0123456789ABCDEF";
    int plen = snprintf(path, sizeof(path), "/v1/broadcast-relay/%s", channel);
    size_t w = (size_t)snprintf(wire, sizeof(wire), "/v1/broadcast-relay/");
    for (const unsigned char *p = (const unsigned char *)channel; *p != '\0' && w + 4 < sizeof(wire); p++) {
        if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || strchr("-._~", *p)) {
            wire[w++] = (char)*p;
        } else {
            wire[w++] = '%';
            wire[w++] = hex[*p >> 4];
            wire[w++] = hex[*p & 15];
        }
    }
    wire[w] = '\0';
    if (plen <= 0 || (size_t)plen >= sizeof(path)) return;
    int k = 0;
    for (size_t i = 0; i < conf->n_regions && k < EDGE_REPL_MAX_PEERS; i++) {
        const struct edge_conf_region *r = &conf->regions[i];
        if (strcmp(r->id, n->region) == 0 || r->url == NULL) continue;
        /* signed for this region alone, over this very payload (repl/proto.h) */
        if (edge_repl_http_sig_header(conf, n->region, r->id, "POST", path, payload_json, len, hdr, sizeof(hdr)) !=
            EDGE_OK) {
            k++;
            continue;
        }
        if (l->bcast[k] == NULL) {
            if (edge__api_peer_pool(l, r->url, 4, 5000, &l->bcast[k]) != EDGE_OK) {
                l->bcast[k] = NULL;
                k++;
                continue;
            }
        }
        edge_httpca_request(l->bcast[k], "POST", wire, hdr, payload_json, len, 2000, 4096, relay_done, NULL);
        k++;
    }
}

/* POST /v1/broadcast/{channel} with {"payload": ...} (or the relay of another region,
 * which carries the payload alone and is delivered here only). */
void edge__api_broadcast_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                                const char *channel, bool relayed)
{
    struct edge_node *n = l->node;
    const char *why = NULL;
    if (relayed && !edge__api_auth_cluster_signed(n, req, &why)) {
        edge__api_respond_error(n, c, req, EP_OTHER, 401, "AUTH_CLUSTER", why);
        return;
    }
    if (!edge_rt_channel_ok(channel)) {
        edge__api_respond_error(n, c, req, EP_OTHER, 400, "BAD_CHANNEL",
                                "a channel name is 1..128 bytes without spaces or '/'");
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_DECODE_ANY, &jerr);
    json_t *payload = relayed ? body : json_is_object(body) ? json_object_get(body, "payload") : NULL;
    if (payload == NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_OTHER, 400, "BAD_REQUEST", "the body must be {\"payload\": <JSON>}");
        return;
    }
    char *pj = json_dumps(payload, JSON_COMPACT | JSON_ENCODE_ANY);
    json_decref(body);
    if (pj == NULL) {
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
        return;
    }
    if (relayed) edge_rt_broadcast(n->rt, channel, pj, strlen(pj));
    else edge__api_broadcast_publish(n, l->idx, channel, pj, strlen(pj));
    free(pj);
    static const char ok[] = "{\"ok\":true}";
    edge__api_respond(n, c, req, EP_OTHER, 200, "application/json", NULL, ok, sizeof(ok) - 1);
}

/* ---------------------------------------------------------------------------------- */
/* Publish                                                                            */
/* ---------------------------------------------------------------------------------- */

struct pub_job {
    struct edge_writer_job wjob;
    struct edge_task task;
    struct loop *l;
    struct edge_http_conn *c;
    struct edge_http_req *req;
    json_t *body;
    char table[256];
    int kind; /* 0 upsert, 1 delete */
    bool strong; /* answered once a majority of regions holds the entry */
    int status;
    char code[32];
    char msg[512];
};

static void pub_fail(struct pub_job *j, int status, const char *code, const char *fmt, const char *arg)
{
    j->status = status;
    snprintf(j->code, sizeof(j->code), "%s", code);
    snprintf(j->msg, sizeof(j->msg), fmt, arg);
}

static int bind_json(sqlite3_stmt *st, int idx, json_t *v)
{
    if (json_is_string(v)) return sqlite3_bind_text64(st, idx, json_string_value(v), json_string_length(v), SQLITE_TRANSIENT, SQLITE_UTF8);
    if (json_is_integer(v)) return sqlite3_bind_int64(st, idx, (sqlite3_int64)json_integer_value(v));
    if (json_is_real(v)) return sqlite3_bind_double(st, idx, json_real_value(v));
    if (json_is_true(v)) return sqlite3_bind_int(st, idx, 1);
    if (json_is_false(v)) return sqlite3_bind_int(st, idx, 0);
    if (json_is_null(v) || v == NULL) return sqlite3_bind_null(st, idx);
    char *t = json_dumps(v, JSON_COMPACT); /* objects and arrays are stored as JSON text */
    int rc = t ? sqlite3_bind_text(st, idx, t, -1, free) : SQLITE_NOMEM;
    return rc;
}

/* The primary key columns in key order (pragma_table_info's pk is the 1-based position). */
#define PUB_MAX_PK 32
struct pkcol {
    char name[PUB_MAX_PK][256];
    const char *names[PUB_MAX_PK];
    int n;
    bool too_many;
};

static void pk_cb(void *ud, int cid, const char *name, int pk)
{
    (void)cid;
    struct pkcol *p = ud;
    if (pk <= 0) return;
    if (pk > PUB_MAX_PK) {
        p->too_many = true;
        return;
    }
    snprintf(p->name[pk - 1], sizeof(p->name[0]), "%s", name);
    p->names[pk - 1] = p->name[pk - 1];
    p->n++;
}

static bool is_pk(const struct pkcol *pk, const char *col)
{
    for (int i = 0; i < pk->n; i++) {
        if (strcasecmp(pk->names[i], col) == 0) return true;
    }
    return false;
}

/* The key values of recordId: the value itself for a one-column key, an array of the
 * values in key order for a composite one (as the events' "pk"). false: it does not fit. */
static bool pk_values(const struct pkcol *pk, json_t *id, json_t **out)
{
    if (pk->n == 1) {
        out[0] = id;
        return !json_is_array(id);
    }
    if (!json_is_array(id) || json_array_size(id) != (size_t)pk->n) return false;
    for (int i = 0; i < pk->n; i++) {
        out[i] = json_array_get(id, (size_t)i);
        if (json_is_array(out[i]) || json_is_object(out[i]) || json_is_null(out[i])) return false;
    }
    return true;
}

static void pk_describe(const struct pkcol *pk, char *buf, size_t len)
{
    size_t off = 0;
    for (int i = 0; i < pk->n && off < len; i++) {
        off += (size_t)snprintf(buf + off, len - off, "%s%s", i ? ", " : "", pk->names[i]);
    }
}

/* Writer thread, inside the group: check the version, write the row. */
static int pub_run(struct edge_writer_job *job, struct edge_store_conn *conn)
{
    struct pub_job *j = (struct pub_job *)job;
    sqlite3 *db = edge_store_db(conn);
    json_t *id = json_object_get(j->body, "recordId"), *data = json_object_get(j->body, "data");
    json_t *ver = json_object_get(j->body, "version");
    struct pkcol pk;
    memset(&pk, 0, sizeof(pk));
    int ncols = edge_store_table_columns(db, j->table, pk_cb, &pk);
    if (ncols <= 0) {
        pub_fail(j, 404, "NO_SUCH_TABLE", "no table %s", j->table);
        return EDGE_ENOTFOUND;
    }
    if (pk.n == 0 || pk.too_many) {
        pub_fail(j, 400, "PRIMARY_KEY", "table %s needs a PRIMARY KEY (of at most 32 columns) for /v1/events",
                 j->table);
        return EDGE_EINVAL;
    }
    json_t *keys[PUB_MAX_PK];
    if (!pk_values(&pk, id, keys)) {
        char cols[200];
        pk_describe(&pk, cols, sizeof(cols));
        j->status = 400;
        snprintf(j->code, sizeof(j->code), "PRIMARY_KEY");
        snprintf(j->msg, sizeof(j->msg), "the primary key of %.150s is (%s): recordId must be %s", j->table, cols,
                 pk.n == 1 ? "its value" : "an array of its values in that order");
        return EDGE_EINVAL;
    }
    if (ver != NULL && !json_is_null(ver)) {
        char origin[EDGE_VCLOCK_REGION_MAX + 1] = "";
        uint64_t seq = 0;
        sqlite3_stmt *k = NULL;
        struct edge_buf q;
        edge_buf_init(&q, 1 << 12);
        int rv = edge_buf_puts(&q, "SELECT ");
        for (int i = 0; i < pk.n && rv == EDGE_OK; i++) rv = edge_buf_printf(&q, "%s?%d", i ? "," : "", i + 1);
        if (rv == EDGE_OK) rv = edge_buf_putc(&q, '\0');
        if (rv == EDGE_OK) rv = sqlite3_prepare_v2(db, q.data, -1, &k, NULL) == SQLITE_OK ? EDGE_OK : EDGE_ESTORE;
        edge_buf_free(&q);
        for (int i = 0; rv == EDGE_OK && i < pk.n; i++) bind_json(k, i + 1, keys[i]);
        if (rv == EDGE_OK && sqlite3_step(k) == SQLITE_ROW) {
            sqlite3_value *kv[PUB_MAX_PK];
            for (int i = 0; i < pk.n; i++) kv[i] = sqlite3_column_value(k, i);
            rv = edge_repl_row_version(db, j->table, pk.names, pk.n, kv, origin, sizeof(origin), &seq);
        } else if (rv == EDGE_OK) {
            rv = EDGE_ESTORE;
        }
        sqlite3_finalize(k);
        char now[128];
        if (rv == EDGE_OK) snprintf(now, sizeof(now), "%s:%llu", origin, (unsigned long long)seq);
        else snprintf(now, sizeof(now), "none");
        if (rv != EDGE_OK || !json_is_string(ver) || strcmp(json_string_value(ver), now) != 0) {
            pub_fail(j, 409, "VERSION_CONFLICT", "the row's version is now %s", now);
            return EDGE_ECONFLICT;
        }
    }
    struct edge_buf sql;
    edge_buf_init(&sql, 1 << 20);
    const char *names[256 + PUB_MAX_PK];
    json_t *vals[256 + PUB_MAX_PK];
    int nv = 0;
    for (int i = 0; i < pk.n; i++) {
        names[nv] = pk.names[i];
        vals[nv++] = keys[i];
    }
    if (j->kind == 1) {
        edge_buf_puts(&sql, "DELETE FROM ");
        edge_store_quote_ident(&sql, j->table);
        for (int i = 0; i < pk.n; i++) {
            edge_buf_puts(&sql, i ? " AND " : " WHERE ");
            edge_store_quote_ident(&sql, pk.names[i]);
            edge_buf_printf(&sql, " = ?%d", i + 1);
        }
    } else {
        const char *k;
        json_t *v;
        json_object_foreach(data, k, v)
        {
            if (is_pk(&pk, k)) continue; /* the key is recordId */
            if (nv >= pk.n + 256) break;
            names[nv] = k;
            vals[nv++] = v;
        }
        edge_buf_puts(&sql, "INSERT INTO ");
        edge_store_quote_ident(&sql, j->table);
        edge_buf_putc(&sql, '(');
        for (int i = 0; i < nv; i++) {
            if (i) edge_buf_putc(&sql, ',');
            edge_store_quote_ident(&sql, names[i]);
        }
        edge_buf_puts(&sql, ") VALUES (");
        for (int i = 0; i < nv; i++) edge_buf_printf(&sql, "%s?%d", i ? "," : "", i + 1);
        edge_buf_puts(&sql, ") ON CONFLICT(");
        for (int i = 0; i < pk.n; i++) {
            if (i) edge_buf_putc(&sql, ',');
            edge_store_quote_ident(&sql, pk.names[i]);
        }
        if (nv == pk.n) {
            edge_buf_puts(&sql, ") DO NOTHING");
        } else {
            edge_buf_puts(&sql, ") DO UPDATE SET ");
            for (int i = pk.n; i < nv; i++) {
                if (i > pk.n) edge_buf_putc(&sql, ',');
                edge_store_quote_ident(&sql, names[i]);
                edge_buf_puts(&sql, " = excluded.");
                edge_store_quote_ident(&sql, names[i]);
            }
        }
    }
    edge_buf_putc(&sql, '\0');
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql.data, -1, &st, NULL);
    edge_buf_free(&sql);
    if (rc == SQLITE_OK) {
        int nb = j->kind == 1 ? pk.n : nv;
        for (int i = 0; i < nb; i++) bind_json(st, i + 1, vals[i]);
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        pub_fail(j, 400, "SQL_ERROR", "%s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return EDGE_EINVAL;
    }
    sqlite3_finalize(st);
    return EDGE_OK;
}

static void pub_answer(struct edge_task *t)
{
    struct pub_job *j = (struct pub_job *)(void *)((char *)t - offsetof(struct pub_job, task));
    struct edge_node *n = j->l->node;
    if (!edge_http_conn_is_closed(j->c)) {
        if (j->status == 200) {
            char body[256], hdr[160];
            if (j->wjob.seq != 0) {
                snprintf(body, sizeof(body), "{\"ok\":true,\"bookmark\":\"%s:%llu\",\"version\":\"%s:%llu\"}", n->region,
                         (unsigned long long)j->wjob.seq, n->region, (unsigned long long)j->wjob.seq);
                snprintf(hdr, sizeof(hdr), "X-Edge-Bookmark: %s:%llu\r\n", n->region, (unsigned long long)j->wjob.seq);
            } else {
                snprintf(body, sizeof(body), "{\"ok\":true,\"bookmark\":null,\"version\":null}");
                hdr[0] = '\0';
            }
            if (j->strong && n->repl.cluster && j->wjob.seq != 0) {
                /* A strong table: as a strong SQL write, the answer waits for a majority. */
                struct edge_buf b;
                edge_buf_init(&b, sizeof(body));
                edge_buf_puts(&b, body);
                edge__api_wait_majority(j->l, j->c, j->wjob.seq, &b, PIPE_EVENTS, j->req->start_ns);
                edge_buf_free(&b);
            } else {
                edge__api_respond(n, j->c, j->req, EP_OTHER, 200, "application/json", hdr[0] ? hdr : NULL, body,
                                  strlen(body));
            }
        } else {
            edge__api_respond_error(n, j->c, j->req, EP_OTHER, j->status, j->code, j->msg);
        }
    }
    edge_http_conn_unref(j->c);
    json_decref(j->body);
    edge_free(j);
}

static void pub_complete(struct edge_writer_job *job, int status)
{
    struct pub_job *j = (struct pub_job *)job;
    if (j->status == 200 && status != EDGE_OK) {
        pub_fail(j, status == EDGE_EAGAIN ? 503 : 500, "WRITE_FAILED", "the write did not commit: %s",
                 edge_strerror(status));
    }
    j->task.run = pub_answer;
    edge__api_loop_post(j->l, &j->task);
}

void edge__api_events_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_REJECT_DUPLICATES, &jerr);
    json_t *type = json_object_get(body, "type"), *table = json_object_get(body, "table");
    json_t *id = json_object_get(body, "recordId"), *data = json_object_get(body, "data");
    json_t *ver = json_object_get(body, "version");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    int kind = strcmp(t, "delete") == 0 ? 1 : (strcmp(t, "insert") == 0 || strcmp(t, "update") == 0) ? 0 : -1;
    const char *bad = NULL;
    if (!json_is_object(body)) bad = "the body must be a JSON object";
    else if (kind < 0) bad = "type must be insert, update or delete";
    else if (!json_is_string(table) || json_string_length(table) == 0 || json_string_length(table) > 255 ||
             strncmp(json_string_value(table), "_edge_", 6) == 0 || strncmp(json_string_value(table), "sqlite_", 7) == 0)
        bad = "table must name a table";
    else if (id == NULL || json_is_null(id) || json_is_object(id) || (json_is_array(id) && json_array_size(id) == 0))
        bad = "recordId must be the key's value (an array of values for a composite key)";
    else if (kind == 0 && data != NULL && !json_is_object(data)) bad = "data must be an object {column: value}";
    else if (ver != NULL && !json_is_null(ver) && !json_is_string(ver)) bad = "version must be a string (an event's version)";
    if (bad != NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_OTHER, 400, "BAD_REQUEST", bad);
        return;
    }
    const char *tn = json_string_value(table);
    int cons = edge_repl_consistency(&n->repl, NULL, &tn, 1);
    if (n->repl.cluster && cons == 1) {
        /* A strong table goes the way of a strong SQL write: to the primary, answered once
         * a majority holds it. */
        const char *code = NULL, *msg = NULL;
        bool forwarded = edge_http_header(req, "x-edge-forwarded") != NULL;
        switch (edge__api_strong_route(n, HRANA_ROUTE_WRITE, 1, false, true, forwarded, false, &code, &msg)) {
        case STRONG_LOCAL: break;
        case STRONG_FORWARD:
            edge__api_forward(l, c, req, body, PIPE_EVENTS, true);
            json_decref(body);
            return;
        case STRONG_REFUSE:
            json_decref(body);
            edge__api_respond_error(n, c, req, EP_OTHER, 503, code, msg);
            return;
        }
    }
    struct pub_job *j = edge_calloc(1, sizeof(*j));
    if (j == NULL) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
        return;
    }
    j->l = l;
    j->c = c;
    j->req = req;
    j->body = body;
    j->kind = kind;
    j->strong = n->repl.cluster && cons == 1;
    j->status = 200;
    snprintf(j->table, sizeof(j->table), "%s", tn);
    edge_http_conn_ref(c);
    j->wjob.run = pub_run;
    j->wjob.complete = pub_complete;
    j->wjob.consistency = cons;
    int rv = edge_writer_try_submit(n->writer, &j->wjob);
    if (rv != EDGE_OK) {
        edge_http_conn_unref(c);
        json_decref(body);
        edge_free(j);
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "WRITER_BUSY", "the writer queue is full; retry later");
    }
}
