/* SPDX-License-Identifier: MIT */
/* Hrana over HTTP: POST /v2/pipeline and /v3/pipeline (and the answers of /v3-protobuf/pipeline). */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* Answer a pipeline (Hrana form), or its /v1/replicate form. Loop thread. */
void edge__api_pipeline_answer(struct edge_node *n, struct edge_http_conn *c, int mode, const char *origin,
                            uint64_t seq, const char *body, size_t len, uint64_t start_ns)
{
    char bm[EDGE_VCLOCK_REGION_MAX + 32] = "";
    if (origin != NULL && seq != 0) snprintf(bm, sizeof(bm), "%s:%llu", origin, (unsigned long long)seq);
    edge__api_pipeline_answer_bm(n, c, mode, bm[0] ? bm : NULL, body, len, start_ns);
}

void edge__api_pipeline_answer_bm(struct edge_node *n, struct edge_http_conn *c, int mode, const char *bookmark,
                                  const char *body, size_t len, uint64_t start_ns)
{
    char extra[EDGE_API_BOOKMARK_MAX + 32] = "";
    if (bookmark != NULL && bookmark[0] != '\0') snprintf(extra, sizeof(extra), "X-Edge-Bookmark: %s\r\n", bookmark);
    if (mode == PIPE_EVENTS) {
        edge__api_observe(n, EP_OTHER, start_ns, false);
        edge_http_respond(c, 200, "application/json", extra[0] ? extra : NULL, body, len);
        return;
    }
    if (mode == PIPE_PROTOBUF) {
        edge__api_pb_pipeline_answer(n, c, extra[0] ? extra : NULL, body, len, start_ns);
        return;
    }
    if (mode == PIPE_PB_CURSOR) {
        edge__api_pb_cursor_answer(n, c, extra[0] ? extra : NULL, body, len, start_ns);
        return;
    }
    if (mode == PIPE_HRANA || mode == PIPE_CURSOR) {
        edge__api_observe(n, EP_PIPELINE, start_ns, false);
        /* A cursor's body is lines of JSON, not one JSON document. */
        edge_http_respond(c, 200, mode == PIPE_CURSOR ? "text/plain" : "application/json", extra[0] ? extra : NULL,
                          body, len);
        return;
    }
    /* /v1/replicate: the first result says whether the write happened. */
    json_t *doc = json_loadb(body, len, JSON_ALLOW_NUL, NULL);
    json_t *first = json_array_get(json_object_get(doc, "results"), 0);
    const char *type = json_string_value(json_object_get(first, "type"));
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    int status = 200;
    if (type != NULL && strcmp(type, "ok") == 0) {
        json_t *res = json_object_get(json_object_get(json_object_get(first, "response"), "result"), "affected_row_count");
        edge_buf_puts(&b, "{\"region\":");
        edge_buf_json_cstr(&b, n->region);
        edge_buf_puts(&b, ",\"bookmark\":");
        if (bookmark != NULL && bookmark[0] != '\0') {
            edge_buf_json_cstr(&b, bookmark);
        } else {
            edge_buf_puts(&b, "null");
        }
        edge_buf_printf(&b, ",\"affected_row_count\":%lld}", (long long)json_integer_value(res));
    } else {
        json_t *err = json_object_get(first, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        status = code != NULL && strcmp(code, "SQLITE_CONSTRAINT") == 0 ? 409 : 400;
        edge_buf_puts(&b, "{\"error\":");
        edge_buf_json_cstr(&b, msg ? msg : "the write failed");
        edge_buf_puts(&b, ",\"code\":");
        edge_buf_json_cstr(&b, code ? code : "WRITE_FAILED");
        edge_buf_putc(&b, '}');
    }
    json_decref(doc);
    edge__api_observe(n, EP_REPLICATE, start_ns, status >= 400);
    edge_http_respond(c, status, "application/json", extra[0] ? extra : NULL, b.data, b.len);
    edge_buf_free(&b);
}

void edge__api_pipeline_finish(struct unit *u)
{
    struct edge_node *n = u->loop->node;
    struct stream *s = u->stream;
    /* Reads inside a transaction: the bookmark of its snapshot, taken before the
     * connection may go back to the pool. */
    char txn_bm[EDGE_API_BOOKMARK_MAX];
    txn_bm[0] = '\0';
    if (u->route == HRANA_ROUTE_TXN) {
        if (u->ctx.seq == 0 && edge__api_unit_bookmark(u, txn_bm, sizeof(txn_bm)) == NULL) txn_bm[0] = '\0';
        edge__api_unit_settle(n, &s->txn, &s->readonly_txn, u->ctx.readonly_txn, u->close_stream);
    }
    if (s->txn == NULL) {
        s->txn_strong = false;
    } else if (u->ctx.consistency == 1) {
        s->txn_strong = true;
    }
    if (u->close_stream) {
        s->closed = true;
    }
    struct edge_buf resp;
    edge_buf_init(&resp, (size_t)1 << 31);
    int rv = EDGE_OK;
    if (u->commit_status != EDGE_OK) {
        /* Nothing of this unit was kept (failed group commit) or it could not run. */
        s->closed = s->closed || u->route != HRANA_ROUTE_TXN;
        edge__api_stream_checkin(n, s, &resp);
        edge_buf_reset(&resp);
        char msg[128];
        if (u->commit_status == EDGE_ECONFLICT) {
            snprintf(msg, sizeof(msg), "a statement rolled back the whole transaction (OR ROLLBACK or "
                                       "RAISE(ROLLBACK)); nothing of this request was applied");
        } else {
            snprintf(msg, sizeof(msg), "the request could not be completed: %s", edge_strerror(u->commit_status));
        }
        if (u->commit_status == EDGE_EAGAIN) {
            snprintf(msg, sizeof(msg), "the writer queue is full (limits.writer_queue); nothing of this request was "
                                       "applied, retry later");
        }
        if (!edge_http_conn_is_closed(u->conn) && u->commit_status == EDGE_EAGAIN) {
            /* Overload, not failure: tell the client when to come back. */
            edge__api_observe(n, EP_PIPELINE, u->start_ns, true);
            edge_buf_puts(&resp, "{\"error\":");
            edge_buf_json_cstr(&resp, msg);
            edge_buf_puts(&resp, ",\"message\":");
            edge_buf_json_cstr(&resp, msg);
            edge_buf_puts(&resp, ",\"code\":\"WRITER_BUSY\"}");
            edge_http_respond(u->conn, 503, "application/json", "Retry-After: 1\r\n", resp.data, resp.len);
        } else if (!edge_http_conn_is_closed(u->conn)) {
            edge__api_observe(n, EP_PIPELINE, u->start_ns, true);
            edge_http_respond_error(u->conn,
                                    u->commit_status == EDGE_EBUSY       ? 503
                                    : u->commit_status == EDGE_ECONFLICT ? 409
                                                                         : 500,
                                    edge__api_status_code(u->commit_status), msg);
        }
        edge_buf_free(&resp);
        edge__api_unit_free(u);
        return;
    }
    rv = edge_buf_puts(&resp, "{\"baton\":");
    if (rv == EDGE_OK) rv = edge__api_stream_checkin(n, s, &resp);
    if (u->mode == PIPE_CURSOR || u->mode == PIPE_PB_CURSOR) {
        /* The first line, then the entries as they are (one per line). */
        if (rv == EDGE_OK) rv = edge_buf_puts(&resp, ",\"base_url\":null}\n");
        if (rv == EDGE_OK) rv = edge_buf_append(&resp, u->out.data ? u->out.data : "", u->out.len);
    } else {
        if (rv == EDGE_OK) rv = edge_buf_puts(&resp, ",\"base_url\":null,\"results\":[");
        if (rv == EDGE_OK) rv = edge_buf_append(&resp, u->out.data ? u->out.data : "", u->out.len);
        if (rv == EDGE_OK) rv = edge_buf_puts(&resp, "]}");
    }
    edge__api_unit_count(n, u);
    if (!edge_http_conn_is_closed(u->conn)) {
        uint64_t seq = u->route == HRANA_ROUTE_WRITE ? u->wjob.seq : u->ctx.seq;
        if (rv != EDGE_OK) {
            edge__api_observe(n, EP_PIPELINE, u->start_ns, true);
            edge_http_respond_error(u->conn, 500, "RESPONSE_TOO_LARGE", "the response is too large");
        } else if (n->repl.cluster && seq != 0 && u->ctx.consistency == 1) {
            /* Strong: answer once a majority of regions holds the entry. */
            edge__api_wait_majority(u->loop, u->conn, seq, &resp, u->mode, u->start_ns);
        } else {
            if (u->cache_key != NULL && u->ctx.errors == 0) edge__api_cache_fill(u);
            if (u->route == HRANA_ROUTE_READ && seq == 0) {
                /* A read: the vector of the snapshot it ran on (unit.c), so that "read, then
                 * subscribe from this bookmark" has no gap and no duplicate. */
                const char *bm = u->loop->snap_open ? u->loop->snap_bm : NULL;
                edge__api_pipeline_answer_bm(n, u->conn, u->mode, bm, resp.data, resp.len, u->start_ns);
            } else if (u->route == HRANA_ROUTE_TXN && seq == 0 && txn_bm[0] != '\0') {
                /* Inside a transaction (or one that ended without writing): its snapshot's. */
                edge__api_pipeline_answer_bm(n, u->conn, u->mode, txn_bm, resp.data, resp.len, u->start_ns);
            } else {
                edge__api_pipeline_answer(n, u->conn, u->mode, seq ? n->region : NULL, seq, resp.data, resp.len,
                                          u->start_ns);
            }
        }
    }
    edge_buf_free(&resp);
    edge__api_unit_free(u);
}

/* Run a validated pipeline body (takes ownership of body). */
void edge__api_pipeline_run(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                         int version, enum hrana_access access, int mode)
{
    struct edge_node *n = l->node;
    enum endpoint ep = mode == PIPE_REPLICATE ? EP_REPLICATE : EP_PIPELINE;
    const char *code = NULL;
    struct stream *s = NULL;
    json_t *baton = json_object_get(body, "baton");
    if (json_is_string(baton)) {
        const char *msg = NULL;
        s = edge__api_stream_checkout(n, json_string_value(baton), json_string_length(baton), &code, &msg);
        if (s == NULL) {
            json_decref(body);
            edge__api_respond_error(n, c, req, ep, 400, code, msg);
            return;
        }
    } else {
        s = edge_calloc(1, sizeof(*s));
        if (s == NULL) {
            json_decref(body);
            edge__api_respond_error(n, c, req, ep, 503, "INTERNAL", "out of memory");
            return;
        }
        hrana_sqlmap_init(&s->sqls, HRANA_MAX_SQL_PER_STREAM);
        s->busy = true;
    }
    json_t *requests = json_object_get(body, "requests");
    size_t nreq = json_array_size(requests);
    struct hrana_tables tables = {.n = 0};
    enum hrana_route route =
        hrana_classify(requests, nreq, l->rconn, &s->sqls, s->txn != NULL, n->repl.cluster ? &tables : NULL);
    if (route == HRANA_ROUTE_WRITE && access == HRANA_ACCESS_RO) {
        route = HRANA_ROUTE_READ; /* every write will be refused statement by statement */
    }
    int consistency = edge__api_unit_consistency(n, req, &tables);
    /* The strongest level any statement of the open transaction had decides its COMMIT. */
    if (s->txn != NULL && s->txn_strong) consistency = 1;
    const char *why = NULL, *why_code = NULL;
    bool stateless = !json_is_string(baton) && nreq > 0 &&
                     strcmp(json_string_value(json_object_get(json_array_get(requests, nreq - 1), "type")),
                            "close") == 0;
    /* The router (docs/router.md): a read whose bookmark wait is over, or a read asked to be
     * strong, may have to run elsewhere. */
    const char *cons_hdr = edge_http_header(req, "x-edge-consistency");
    bool strong_read = cons_hdr != NULL && strcmp(cons_hdr, "strong") == 0;
    bool bm_over = l->bm_expired == req;
    bool forwarded = edge_http_header(req, "x-edge-forwarded") != NULL;
    if (route == HRANA_ROUTE_READ && n->repl.cluster && s->txn == NULL && strong_read && !bm_over && stateless &&
        !forwarded && !edge_repl_state_is_primary(&n->repl) && l->ri_req != req &&
        (mode == PIPE_HRANA || mode == PIPE_PROTOBUF)) {
        /* Read index: the primary's commit point now, then this read again (router_http.c). */
        edge__api_stream_discard(n, s);
        json_decref(body);
        edge__api_read_index(l, c, req, mode == PIPE_PROTOBUF ? PIPE_V3_PROTOBUF : version, access);
        return;
    }
    if (route == HRANA_ROUTE_READ && n->repl.cluster && s->txn == NULL && (bm_over || strong_read)) {
        struct edge__api_plan_req pr = {.kind = EDGE_ROUTER_READ,
                                        .consistency = strong_read ? EDGE_ROUTER_STRONG : EDGE_ROUTER_EVENTUAL,
                                        .bookmark = bm_over ? edge_http_header(req, "x-edge-bookmark") : NULL,
                                        .waited = true,
                                        .can_forward = stateless,
                                        .forwarded = forwarded,
                                        .ri_done = l->ri_req == req,
                                        .ri_known = l->ri_known,
                                        .ri_seq = l->ri_seq};
        struct edge_router_plan plan;
        edge__api_plan(n, &pr, &plan);
        if (plan.action == EDGE_ROUTE_FORWARD) {
            atomic_fetch_add(&n->m.routed_away, 1);
            edge__api_stream_discard(n, s);
            edge__api_forward_to(l, c, req, body, mode, strong_read, plan.target, true);
            json_decref(body);
            return;
        }
        if (plan.action != EDGE_ROUTE_LOCAL && bm_over) {
            /* no region known to have the write: wait on here for the rest of the timeout */
            edge__api_stream_discard(n, s);
            json_decref(body);
            edge__api_wait_bookmark_rest(l, c, req, mode == PIPE_PROTOBUF ? PIPE_V3_PROTOBUF : version, access);
            return;
        }
        if (plan.action == EDGE_ROUTE_REFUSE) {
            edge__api_stream_discard(n, s);
            json_decref(body);
            edge__api_respond_error(n, c, req, ep, 503, plan.code, "a strong read inside a stream must be sent to the "
                                                                   "primary region directly");
            return;
        }
    }
    char *fill_key = NULL;
    size_t fill_klen = 0;
    struct edge_router_cache_gens fill_gens;
    if (route == HRANA_ROUTE_READ && n->cache != NULL && stateless && s->txn == NULL && !strong_read &&
        (mode == PIPE_HRANA || mode == PIPE_PROTOBUF)) {
        if (edge__api_cache_try(l, c, req, requests, nreq, version, mode, &fill_key, &fill_klen,
                                &fill_gens)) {
            edge__api_stream_discard(n, s);
            json_decref(body);
            return;
        }
    }
    switch (edge__api_strong_route(n, route, consistency, tables.ddl, stateless,
                                  edge_http_header(req, "x-edge-forwarded") != NULL, false, &why_code, &why)) {
    case STRONG_LOCAL: break;
    case STRONG_FORWARD:
        edge_free(fill_key);
        edge__api_stream_discard(n, s);
        edge__api_forward(l, c, req, body, mode, consistency == 1);
        json_decref(body);
        return;
    case STRONG_REFUSE:
        edge_free(fill_key);
        edge__api_stream_discard(n, s);
        json_decref(body);
        edge__api_respond_error(n, c, req, ep, 503, why_code, why);
        return;
    }
    struct unit *u = edge__api_unit_new(l, c, body);
    if (u == NULL) {
        edge_free(fill_key);
        json_decref(body);
        edge__api_stream_discard(n, s);
        edge__api_respond_error(n, c, req, ep, 503, "INTERNAL", "out of memory");
        return;
    }
    u->start_ns = req->start_ns;
    if (fill_key != NULL) {
        /* the key and the generations recorded by edge__api_cache_try */
        u->cache_key = fill_key;
        u->cache_klen = fill_klen;
        u->cache_gens = fill_gens;
    }
    u->requests = requests;
    u->n = nreq;
    u->stream = s;
    u->mode = mode;
    u->ctx.sqls = &s->sqls;
    u->ctx.access = access;
    u->ctx.version = version;
    u->route = route;
    if (mode == PIPE_CURSOR || mode == PIPE_PB_CURSOR) {
        hrana_cursor_json_init(&u->http_cursor, &u->out);
        u->cursor = &u->http_cursor;
    }
    edge__api_unit_repl_setup(u, consistency);
    edge__api_unit_dispatch(u);
}

void edge__api_pipeline_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, int version,
                              enum hrana_access access)
{
    struct edge_node *n = l->node;
    if (version == PIPE_V3_PROTOBUF) {
        edge__api_pb_pipeline_handle(l, c, req, access);
        return;
    }
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    if (body == NULL) {
        char msg[256];
        snprintf(msg, sizeof(msg), "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", msg);
        return;
    }
    char err[256];
    if (hrana_validate_pipeline(body, version, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    edge__api_pipeline_run(l, c, req, body, version, access, PIPE_HRANA);
}

/* POST /v3/cursor {"baton","batch"}: the batch runs as a pipeline of one batch request on
 * the stream of the baton (classified, routed and limited like one), answered as lines. */
void edge__api_cursor_handle(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req,
                            enum hrana_access access)
{
    struct edge_node *n = l->node;
    json_error_t jerr;
    json_t *body = json_loadb(req->body.data ? req->body.data : "", req->body.len, JSON_ALLOW_NUL, &jerr);
    char err[256];
    if (body == NULL) {
        snprintf(err, sizeof(err), "invalid JSON body: %s (line %d, column %d)", jerr.text, jerr.line, jerr.column);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    if (hrana_validate_cursor(body, err, sizeof(err)) != EDGE_OK) {
        json_decref(body);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 400, "HRANA_PROTO_ERROR", err);
        return;
    }
    json_t *baton = json_object_get(body, "baton");
    json_t *pipe = json_pack("{s:O,s:[{s:s,s:O}]}", "baton", baton ? baton : json_null(), "requests", "type", "batch",
                             "batch", json_object_get(body, "batch"));
    json_decref(body);
    if (pipe == NULL) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, "INTERNAL", "out of memory");
        return;
    }
    edge__api_pipeline_run(l, c, req, pipe, 3, access, PIPE_CURSOR);
}
