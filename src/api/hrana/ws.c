/* SPDX-License-Identifier: MIT */
/* Hrana over WebSocket: one session per connection, its streams, its queue. */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

void edge__api_ws_unref(struct ws_session *s)
{
    if (--s->refs > 0) return;
    struct edge_node *n = s->loop->node;
    while (s->q_head != NULL) {
        struct ws_msg *m = s->q_head;
        s->q_head = m->next;
        json_decref(m->msg);
        edge_free(m);
    }
    for (size_t i = 0; i < s->n_streams; i++) {
        edge__api_pool_release(n, s->streams[i].txn, s->streams[i].readonly_txn);
    }
    atomic_fetch_sub(&n->m.ws_streams, (int64_t)s->n_streams);
    edge_free(s->streams);
    edge__api_ws_cursors_free(s);
    hrana_sqlmap_free(&s->sqls);
    edge_http_conn_unref(s->conn);
    edge_free(s);
}

static void ws_fatal(struct ws_session *s, uint16_t code, const char *reason)
{
    EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_API, "ws: closing: %s", reason);
    edge_http_ws_close(s->conn, code, reason);
    s->closed = true;
}

static void ws_send_error(struct ws_session *s, int64_t request_id, const char *msg, const char *code)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    hrana_write_response_error(&b, request_id, msg, code);
    edge_http_ws_send(s->conn, 1, b.data, b.len);
    edge_buf_free(&b);
}

static void ws_send_ok(struct ws_session *s, int64_t request_id, const char *type)
{
    char b[256];
    int len = snprintf(b, sizeof(b), "{\"type\":\"response_ok\",\"request_id\":%lld,\"response\":{\"type\":\"%s\"}}",
                       (long long)request_id, type);
    edge_http_ws_send(s->conn, 1, b, (size_t)len);
}

/* Refuse a request; an open_cursor refused keeps its cursor id (with the error). */
static void ws_refuse(struct ws_session *s, struct ws_cursor *wc, int64_t request_id, const char *msg,
                      const char *code)
{
    if (wc != NULL) edge__api_ws_cursor_failed(wc, msg, code);
    ws_send_error(s, request_id, msg, code);
}

static struct ws_stream *ws_find(struct ws_session *s, int32_t id)
{
    for (size_t i = 0; i < s->n_streams; i++) {
        if (s->streams[i].id == id) return &s->streams[i];
    }
    return NULL;
}

/* The bookmark of an answer (docs/router.md, "Bookmarks over WebSocket"): one more member
 * of the response_ok message, after "response", which Hrana clients ignore. */
static void ws_add_bookmark(struct edge_buf *out, const char *bm)
{
    static const char ok[] = "{\"type\":\"response_ok\"";
    if (out->len < sizeof(ok) || memcmp(out->data, ok, sizeof(ok) - 1) != 0 || out->data[out->len - 1] != '}') return;
    size_t len = out->len;
    out->len--;
    int rv = edge_buf_puts(out, ",\"bookmark\":");
    if (rv == EDGE_OK) rv = edge_buf_json_cstr(out, bm);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '}');
    if (rv != EDGE_OK) {
        out->len = len; /* too large with it: the answer goes without */
        out->data[len - 1] = '}';
        out->data[len] = '\0';
    }
}

bool edge__api_ws_handle(struct ws_session *s, json_t *msg)
{
    struct edge_node *n = s->loop->node;
    const char *type = json_string_value(json_object_get(msg, "type"));
    if (type == NULL) {
        ws_fatal(s, 1002, "message without a type");
        return false;
    }
    if (strcmp(type, "hello") == 0) {
        json_t *jwt = json_object_get(msg, "jwt");
        const char *code = NULL;
        enum hrana_access access;
        if (jwt != NULL && !json_is_null(jwt) && !json_is_string(jwt)) {
            ws_fatal(s, 1002, "hello: jwt must be a string or null");
            return false;
        }
        const char *tok = json_is_string(jwt) ? json_string_value(jwt) : "";
        if (n->keys != NULL && !json_is_string(jwt)) {
            code = "AUTH_JWT_INVALID";
        }
        if (code == NULL && edge__api_auth_token(n, tok, strlen(tok), &access, &code)) {
            s->authed = true;
            s->access = access;
            const char ok[] = "{\"type\":\"hello_ok\"}";
            edge_http_ws_send(s->conn, 1, ok, sizeof(ok) - 1);
        } else {
            struct edge_buf b;
            edge_buf_init(&b, 1024);
            edge_buf_puts(&b, "{\"type\":\"hello_error\",\"error\":");
            hrana_write_error(&b, strcmp(code, "AUTH_JWT_EXPIRED") == 0 ? "The JWT has expired" : "The JWT is invalid",
                              code);
            edge_buf_putc(&b, '}');
            edge_http_ws_send(s->conn, 1, b.data, b.len);
            edge_buf_free(&b);
            ws_fatal(s, 3000, "authentication failed");
        }
        return false;
    }
    if (strcmp(type, "request") != 0) {
        ws_fatal(s, 1002, "unknown message type");
        return false;
    }
    json_t *rid = json_object_get(msg, "request_id");
    if (!json_is_integer(rid)) {
        ws_fatal(s, 1002, "request without an integer request_id");
        return false;
    }
    int64_t request_id = json_integer_value(rid);
    if (!s->authed) {
        ws_fatal(s, 1002, "request before hello");
        return false;
    }
    json_t *req = json_object_get(msg, "request");
    char err[256];
    if (hrana_validate_request(req, s->version >= 3 ? 3 : 2, true, err, sizeof(err)) != EDGE_OK) {
        ws_send_error(s, request_id, err, "HRANA_PROTO_ERROR");
        return false;
    }
    json_t *jbm = json_object_get(msg, "bookmark");
    if (jbm != NULL && !json_is_null(jbm)) {
        /* Wait until this region has applied it, as X-Edge-Bookmark does over HTTP. */
        int brv = json_is_string(jbm) && json_string_length(jbm) > 0 && json_string_length(jbm) < EDGE_API_BOOKMARK_MAX
                      ? edge__api_wait_bookmark_ws(s, msg, request_id, json_string_value(jbm))
                      : EDGE_EINVAL;
        if (brv == EDGE_EAGAIN) return true;
        if (brv != EDGE_OK) {
            ws_send_error(s, request_id,
                          brv == EDGE_EINVAL ? "bookmark must be a string REGION:SEQ or REGION:SEQ,REGION:SEQ,..."
                                             : "out of memory",
                          brv == EDGE_EINVAL ? "BOOKMARK_INVALID" : "INTERNAL");
            return false;
        }
    }
    const char *t = json_string_value(json_object_get(req, "type"));
    int32_t sid = (int32_t)json_integer_value(json_object_get(req, "stream_id"));
    if (strcmp(t, "open_stream") == 0) {
        if (ws_find(s, sid) != NULL) {
            ws_send_error(s, request_id, "a stream with this id is already open", "STREAM_EXISTS");
            return false;
        }
        if (s->n_streams >= 1024) {
            ws_send_error(s, request_id, "too many open streams", "STREAM_TOO_MANY");
            return false;
        }
        struct ws_stream *p = edge_realloc(s->streams, (s->n_streams + 1) * sizeof(*p));
        if (p == NULL) {
            ws_send_error(s, request_id, "out of memory", "INTERNAL");
            return false;
        }
        s->streams = p;
        s->streams[s->n_streams++] = (struct ws_stream){sid, NULL, false, false};
        atomic_fetch_add(&n->m.ws_streams, 1);
        ws_send_ok(s, request_id, "open_stream");
        return false;
    }
    if (strcmp(t, "close_stream") == 0) {
        struct ws_stream *st = ws_find(s, sid);
        if (st != NULL) {
            edge__api_pool_release(n, st->txn, st->readonly_txn);
            edge__api_ws_cursors_of_stream(s, sid);
            *st = s->streams[--s->n_streams];
            atomic_fetch_sub(&n->m.ws_streams, 1);
        }
        ws_send_ok(s, request_id, "close_stream");
        return false;
    }
    if (strcmp(t, "fetch_cursor") == 0) {
        edge__api_ws_cursor_fetch(s, req, request_id);
        return false;
    }
    if (strcmp(t, "close_cursor") == 0) {
        edge__api_ws_cursor_close(s, (int32_t)json_integer_value(json_object_get(req, "cursor_id")));
        ws_send_ok(s, request_id, "close_cursor");
        return false;
    }
    struct ws_cursor *wc = NULL;
    if (strcmp(t, "open_cursor") == 0 && (wc = edge__api_ws_cursor_open(s, req, request_id)) == NULL) {
        return false;
    }
    struct unit *u = edge__api_unit_new(s->loop, s->conn, json_incref(msg));
    if (u == NULL) {
        ws_refuse(s, wc, request_id, "out of memory", "INTERNAL");
        return false;
    }
    if (wc != NULL) {
        u->wcursor = wc;
        u->cursor = &wc->entries;
    }
    u->ws = s;
    u->requests = req;
    u->n = 1;
    u->request_id = request_id;
    u->ctx.sqls = &s->sqls;
    u->ctx.access = s->access;
    u->ctx.version = s->version >= 3 ? 3 : 2;
    if (strcmp(t, "store_sql") == 0 || strcmp(t, "close_sql") == 0) {
        u->route = HRANA_ROUTE_READ; /* touches only the session's map */
    } else {
        u->wss = ws_find(s, sid);
        if (u->wss == NULL) {
            edge__api_unit_free(u);
            ws_refuse(s, wc, request_id, "no stream with this id is open", "STREAM_NOT_FOUND");
            return false;
        }
        struct hrana_tables tables = {.n = 0};
        u->route = hrana_classify(req, 1, s->loop->rconn, &s->sqls, u->wss->txn != NULL, n->repl.cluster ? &tables : NULL);
        if (u->route == HRANA_ROUTE_WRITE && s->access == HRANA_ACCESS_RO) {
            u->route = HRANA_ROUTE_READ;
        }
        int consistency = edge__api_unit_consistency(n, NULL, &tables);
        if (u->wss->txn != NULL && u->wss->txn_strong) consistency = 1; /* see http.c */
        const char *why = NULL, *why_code = NULL;
        if (edge__api_strong_route(n, u->route, consistency, tables.ddl, false, false, true, &why_code, &why) !=
            STRONG_LOCAL) {
            edge__api_unit_free(u);
            ws_refuse(s, wc, request_id, why, why_code);
            return false;
        }
        edge__api_unit_repl_setup(u, consistency);
    }
    s->busy = true;
    s->refs++;
    edge__api_unit_dispatch(u);
    return true;
}

/* Process queued messages in order, one unit of work at a time. */
void edge__api_ws_process(struct ws_session *s)
{
    while (!s->busy && !s->closed && s->q_head != NULL) {
        struct ws_msg *m = s->q_head;
        s->q_head = m->next;
        if (s->q_head == NULL) s->q_tail = NULL;
        s->q_len--;
        edge__api_ws_handle(s, m->msg);
        json_decref(m->msg);
        edge_free(m);
    }
}

void edge__api_ws_on_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct ws_session *s = edge_http_conn_ud(c);
    if (s == NULL || s->closed) return;
    edge__api_sessions_flush(ud);
    if (opcode != 1) {
        ws_fatal(s, 1003, "only text frames are supported");
        return;
    }
    json_error_t jerr;
    json_t *msg = json_loadb((const char *)data, len, JSON_ALLOW_NUL, &jerr);
    if (msg == NULL || !json_is_object(msg)) {
        json_decref(msg);
        ws_fatal(s, 1007, "malformed JSON message");
        return;
    }
    if (s->q_len >= 1024) {
        json_decref(msg);
        ws_fatal(s, 1008, "too many requests in flight");
        return;
    }
    struct ws_msg *m = edge_calloc(1, sizeof(*m));
    if (m == NULL) {
        json_decref(msg);
        ws_fatal(s, 1011, "out of memory");
        return;
    }
    m->msg = msg;
    if (s->q_tail) s->q_tail->next = m; else s->q_head = m;
    s->q_tail = m;
    s->q_len++;
    edge__api_ws_process(s);
}

void edge__api_ws_on_close(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    struct ws_session *s = edge_http_conn_ud(c);
    if (s != NULL) {
        edge_http_conn_set_ud(c, NULL);
        s->closed = true;
        edge__api_ws_unref(s);
    }
}

void edge__api_ws_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    const char *protos = edge_http_header(req, "sec-websocket-protocol");
    const char *chosen = NULL;
    int version = 1;
    if (edge_http_list_has(protos, "hrana3")) {
        chosen = "hrana3";
        version = 3;
    } else if (edge_http_list_has(protos, "hrana2")) {
        chosen = "hrana2";
        version = 2;
    } else if (edge_http_list_has(protos, "hrana1")) {
        chosen = "hrana1";
    } else if (protos != NULL) {
        edge__api_respond_error(n, c, req, EP_WS, 400, "WS_PROTOCOL_UNSUPPORTED", "no supported WebSocket subprotocol offered");
        return;
    }
    struct ws_session *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) {
        edge__api_respond_error(n, c, req, EP_WS, 503, "INTERNAL", "out of memory");
        return;
    }
    uint64_t start = req->start_ns;
    if (edge_http_ws_accept(c, chosen) != EDGE_OK) {
        edge_free(s);
        edge__api_observe(n, EP_WS, start, true);
        return;
    }
    edge__api_observe(n, EP_WS, start, false);
    s->loop = l;
    s->conn = c;
    edge_http_conn_ref(c);
    s->version = version;
    s->refs = 1;
    hrana_sqlmap_init(&s->sqls, HRANA_MAX_SQL_PER_WS);
    edge_http_conn_set_ud(c, s);
}

void edge__api_ws_finish(struct unit *u)
{
    struct ws_session *s = u->ws;
    struct edge_node *n = u->loop->node;
    /* Taken before a transaction's connection may go back to the pool. */
    char bm_buf[EDGE_API_BOOKMARK_MAX];
    const char *bm = !s->closed && u->commit_status == EDGE_OK && u->ctx.stmts > 0
                         ? edge__api_unit_bookmark(u, bm_buf, sizeof(bm_buf))
                         : NULL;
    if (u->route == HRANA_ROUTE_TXN && u->wss != NULL) {
        edge__api_unit_settle(n, &u->wss->txn, &u->wss->readonly_txn, u->ctx.readonly_txn, s->closed);
    }
    if (u->wss != NULL) {
        if (u->wss->txn == NULL) {
            u->wss->txn_strong = false;
        } else if (u->ctx.consistency == 1) {
            u->wss->txn_strong = true;
        }
    }
    edge__api_unit_count(n, u);
    if (!s->closed) {
        if (u->commit_status != EDGE_OK) {
            edge_buf_reset(&u->out);
            char msg[128];
            if (u->commit_status == EDGE_EAGAIN) {
                snprintf(msg, sizeof(msg), "the writer queue is full (limits.writer_queue); nothing of this request "
                                           "was applied, retry later");
            } else {
                snprintf(msg, sizeof(msg), "the request could not be completed: %s", edge_strerror(u->commit_status));
            }
            hrana_write_response_error(&u->out, u->request_id, msg, edge__api_status_code(u->commit_status));
            if (u->wcursor != NULL) {
                edge__api_ws_cursor_failed(u->wcursor, msg, edge__api_status_code(u->commit_status));
            }
        }
        if (bm != NULL) ws_add_bookmark(&u->out, bm);
        uint64_t seq = u->route == HRANA_ROUTE_WRITE ? u->wjob.seq : u->ctx.seq;
        if (n->repl.cluster && u->commit_status == EDGE_OK && u->ctx.consistency == 1 && seq != 0) {
            /* Strong on the primary: answer once a majority holds the entry. The waiter
             * keeps the session busy (answers stay in order) and its reference. */
            if (edge__api_wait_majority_ws(u, s, seq)) {
                edge__api_unit_free(u);
                return;
            }
        }
        edge_http_ws_send(s->conn, 1, u->out.data, u->out.len);
    }
    edge__api_observe(n, EP_WS, u->start_ns, u->commit_status != EDGE_OK);
    s->busy = false;
    edge__api_unit_free(u);
    edge__api_ws_process(s);
    edge__api_ws_unref(s);
}
