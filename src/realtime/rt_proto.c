/* SPDX-License-Identifier: MIT */
/* The real-time client protocol (see rt.h, docs/realtime.md): subscribe, unsubscribe, join,
 * broadcast, and the WebSocket and SSE sessions that carry them. */
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
/* Protocol                                                                           */
/* ---------------------------------------------------------------------------------- */

/* Canonical JSON text of a filter value, as the feed renders column values. */
static char *canon_value(json_t *v)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    int rv;
    if (json_is_string(v)) rv = edge_buf_json_str(&b, json_string_value(v), json_string_length(v));
    else if (json_is_integer(v)) rv = edge_buf_printf(&b, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v)) rv = edge_buf_json_double(&b, json_real_value(v));
    else if (json_is_true(v)) rv = edge_buf_puts(&b, "1");
    else if (json_is_false(v)) rv = edge_buf_puts(&b, "0");
    else if (json_is_null(v)) rv = edge_buf_puts(&b, "null");
    else if (json_is_array(v)) {
        /* a composite key */
        rv = edge_buf_putc(&b, '[');
        for (size_t i = 0; i < json_array_size(v) && rv == EDGE_OK; i++) {
            char *e = canon_value(json_array_get(v, i));
            if (e == NULL) rv = EDGE_EINVAL;
            if (rv == EDGE_OK && i > 0) rv = edge_buf_putc(&b, ',');
            if (rv == EDGE_OK) rv = edge_buf_puts(&b, e);
            edge_free(e);
        }
        if (rv == EDGE_OK) rv = edge_buf_putc(&b, ']');
    } else rv = EDGE_EINVAL;
    if (rv == EDGE_OK) rv = edge_buf_putc(&b, '\0');
    if (rv != EDGE_OK) {
        edge_buf_free(&b);
        return NULL;
    }
    size_t n;
    return edge_buf_steal(&b, &n);
}

/* Parse a subscribe request into sub (fields only); false with a message. */
static bool parse_subscribe(struct rt_session *s, json_t *m, struct rt_sub *sub, const char **from, char *err,
                            size_t errlen)
{
    json_t *id = json_object_get(m, "id"), *tables = json_object_get(m, "tables");
    json_t *where = json_object_get(m, "where"), *keys = json_object_get(m, "keys"), *f = json_object_get(m, "from");
    if (!json_is_integer(id)) {
        snprintf(err, errlen, "subscribe needs an integer id");
        return false;
    }
    sub->id = json_integer_value(id);
    for (struct rt_sub *o = s->subs; o != NULL; o = o->next) {
        if (o->id == sub->id) {
            snprintf(err, errlen, "subscription id %lld is in use on this connection", (long long)sub->id);
            return false;
        }
    }
    if (json_is_string(tables)) {
        json_t *one = json_array();
        json_array_append(one, tables);
        json_object_set_new(m, "tables", one);
        tables = one;
    }
    if (!json_is_array(tables) || json_array_size(tables) == 0 || json_array_size(tables) > 64) {
        snprintf(err, errlen, "tables must be a non-empty array of table names (at most 64)");
        return false;
    }
    sub->tables = edge_calloc(json_array_size(tables), sizeof(char *));
    if (sub->tables == NULL) {
        snprintf(err, errlen, "out of memory");
        return false;
    }
    for (size_t i = 0; i < json_array_size(tables); i++) {
        json_t *t = json_array_get(tables, i);
        if (!json_is_string(t) || json_string_length(t) == 0 || json_string_length(t) > 255 ||
            strncmp(json_string_value(t), "_edge_", 6) == 0) {
            snprintf(err, errlen, "tables[%zu] must be the name of a table", i);
            return false;
        }
        sub->tables[sub->n_tables++] = edge_strdup(json_string_value(t));
    }
    if (where != NULL && !json_is_null(where)) {
        if (!json_is_object(where) || json_object_size(where) > 32) {
            snprintf(err, errlen, "where must be an object {column: value} (at most 32 columns)");
            return false;
        }
        sub->where = edge_calloc(json_object_size(where) + 1, sizeof(*sub->where));
        const char *k;
        json_t *v;
        json_object_foreach(where, k, v)
        {
            char *cv = canon_value(v);
            if (cv == NULL || json_is_array(v)) {
                edge_free(cv);
                snprintf(err, errlen, "where.%s must be a string, number, boolean or null", k);
                return false;
            }
            sub->where[sub->n_where].col = edge_strdup(k);
            sub->where[sub->n_where++].val = cv;
        }
    }
    if (keys != NULL && !json_is_null(keys)) {
        if (!json_is_array(keys) || json_array_size(keys) == 0 || json_array_size(keys) > 10000) {
            snprintf(err, errlen, "keys must be a non-empty array of primary keys (at most 10000)");
            return false;
        }
        sub->keys = edge_calloc(json_array_size(keys), sizeof(char *));
        for (size_t i = 0; sub->keys != NULL && i < json_array_size(keys); i++) {
            char *cv = canon_value(json_array_get(keys, i));
            if (cv == NULL) {
                snprintf(err, errlen, "keys[%zu] must be a value or an array of values", i);
                return false;
            }
            sub->keys[sub->n_keys++] = cv;
        }
    }
    if (f != NULL && !json_is_null(f) && !json_is_string(f)) {
        snprintf(err, errlen, "from must be \"now\", \"start\" or a bookmark");
        return false;
    }
    *from = json_is_string(f) ? json_string_value(f) : "now";
    return true;
}

/* from = "start": the oldest entry each origin still has in the log. */
static void start_position(struct rt_loop *rl, struct edge_vclock *pos)
{
    struct edge_store_conn *rc = edge__rt_loop_rconn(rl);
    sqlite3_stmt *st = NULL;
    if (rc == NULL || sqlite3_prepare_v2(edge_store_db(rc), "SELECT origin, seq FROM _edge_vv", -1, &st, NULL) != SQLITE_OK) {
        sqlite3_finalize(st);
        return;
    }
    sqlite3_stmt *mn = NULL;
    sqlite3_prepare_v2(edge_store_db(rc), "SELECT min(seq) FROM _edge_log WHERE origin = ?1", -1, &mn, NULL);
    while (sqlite3_step(st) == SQLITE_ROW) {
        const char *o = (const char *)sqlite3_column_text(st, 0);
        uint64_t have = (uint64_t)sqlite3_column_int64(st, 1), floor = have;
        if (mn != NULL) {
            sqlite3_bind_text(mn, 1, o, -1, SQLITE_TRANSIENT);
            if (sqlite3_step(mn) == SQLITE_ROW && sqlite3_column_type(mn, 0) != SQLITE_NULL) {
                floor = (uint64_t)sqlite3_column_int64(mn, 0) - 1;
            }
            sqlite3_reset(mn);
        }
        if (floor > 0) edge_vclock_set(pos, o, floor);
    }
    sqlite3_finalize(mn);
    sqlite3_finalize(st);
}

static void handle_subscribe(struct rt_session *s, json_t *m)
{
    struct edge_rt *rt = s->rt;
    json_t *id = json_object_get(m, "id");
    if (rt->st == NULL) {
        edge__rt_send_error(s, "NOT_A_CLUSTER", "this node keeps no change log (a single node): only broadcast channels work", id);
        return;
    }
    if (s->n_subs >= rt->lim.max_subscriptions) {
        atomic_fetch_add(&rt->m.refused_subscriptions, 1);
        edge__rt_send_error(s, "TOO_MANY_SUBSCRIPTIONS", "this connection has realtime.max_subscriptions subscriptions", id);
        return;
    }
    struct rt_sub *sub = edge_calloc(1, sizeof(*sub));
    if (sub == NULL) {
        edge__rt_send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    edge_vclock_init(&sub->pos);
    sub->s = s;
    const char *from = "now";
    char err[256];
    if (!parse_subscribe(s, m, sub, &from, err, sizeof(err))) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        edge__rt_send_error(s, "BAD_SUBSCRIBE", err, id);
        edge__rt_sub_free(sub);
        return;
    }
    bool now = strcmp(from, "now") == 0, start = strcmp(from, "start") == 0;
    if (!now && !start && edge_rt_bookmark_parse(from, strlen(from), &sub->pos) != EDGE_OK) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        edge__rt_send_error(s, "BOOKMARK_INVALID", "from must be \"now\", \"start\" or a bookmark REGION:SEQ[,REGION:SEQ...]", id);
        edge__rt_sub_free(sub);
        return;
    }
    edge__rt_loop_activate(s->rl);
    if (start) start_position(s->rl, &sub->pos);
    sub->next = s->subs;
    s->subs = sub;
    s->n_subs++;
    for (int i = 0; i < sub->n_tables; i++) edge__rt_table_count(rt, sub->tables[i], +1);
    atomic_fetch_add(&rt->m.subscriptions, 1);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    if (s->sse) edge_buf_puts(&b, "event: subscribed\ndata: ");
    edge_buf_printf(&b, "{\"type\":\"subscribed\",\"id\":%lld,\"sub\":%lld}", (long long)sub->id, (long long)sub->id);
    if (s->sse) edge_buf_puts(&b, "\n\n");
    edge__rt_send_buf(s, &b);
    edge_buf_free(&b);
    if (now) {
        sub->state = SUB_LIVE;
        edge__rt_send_ready(sub);
        return;
    }
    sub->state = SUB_CATCHUP;
    edge__rt_catchup_count(s->rl, +1);
    edge__rt_sub_catchup_step(sub); /* the first batch at once */
}

static void handle_unsubscribe(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id");
    if (!json_is_integer(id)) {
        edge__rt_send_error(s, "BAD_MESSAGE", "unsubscribe needs the integer id of a subscription", id);
        return;
    }
    for (struct rt_sub *sub = s->subs; sub != NULL; sub = sub->next) {
        if (sub->id == json_integer_value(id)) {
            edge__rt_sub_remove(sub);
            char out[96];
            int n = snprintf(out, sizeof(out), "{\"type\":\"unsubscribed\",\"id\":%lld}", (long long)json_integer_value(id));
            edge__rt_send_text(s, out, (size_t)n);
            return;
        }
    }
    edge__rt_send_error(s, "NO_SUCH_SUBSCRIPTION", "no subscription with this id on this connection", id);
}

bool edge_rt_channel_ok(const char *c)
{
    size_t n = strlen(c);
    if (n == 0 || n > 128) return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)c[i];
        if (ch <= 0x20 || ch == 0x7f || ch == '/') return false;
    }
    return true;
}

static void handle_join(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id"), *ch = json_object_get(m, "channel");
    if (!json_is_string(ch) || !edge_rt_channel_ok(json_string_value(ch))) {
        edge__rt_send_error(s, "BAD_MESSAGE", "join needs a channel name (1..128 bytes, no spaces or '/')", id);
        return;
    }
    for (int i = 0; i < s->n_channels; i++) {
        if (strcmp(s->channels[i], json_string_value(ch)) == 0) goto answer;
    }
    if (s->n_channels >= s->rt->lim.max_subscriptions) {
        edge__rt_send_error(s, "TOO_MANY_SUBSCRIPTIONS", "this connection has realtime.max_subscriptions channels", id);
        return;
    }
    char **g = edge_realloc(s->channels, (size_t)(s->n_channels + 1) * sizeof(*g));
    if (g == NULL) {
        edge__rt_send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    s->channels = g;
    s->channels[s->n_channels++] = edge_strdup(json_string_value(ch));
answer:;
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    edge_buf_puts(&b, "{\"type\":\"joined\",\"channel\":");
    edge_buf_json_cstr(&b, json_string_value(ch));
    if (json_is_integer(id)) edge_buf_printf(&b, ",\"id\":%lld", (long long)json_integer_value(id));
    edge_buf_putc(&b, '}');
    edge__rt_send_buf(s, &b);
    edge_buf_free(&b);
}

static void handle_broadcast(struct rt_session *s, json_t *m)
{
    json_t *id = json_object_get(m, "id"), *ch = json_object_get(m, "channel"), *p = json_object_get(m, "payload");
    if (s->read_only) {
        edge__rt_send_error(s, "AUTH_READ_ONLY", "broadcasting needs a read-write token", id);
        return;
    }
    if (!json_is_string(ch) || !edge_rt_channel_ok(json_string_value(ch)) || p == NULL) {
        edge__rt_send_error(s, "BAD_MESSAGE", "broadcast needs a channel name and a payload", id);
        return;
    }
    char *pj = json_dumps(p, JSON_COMPACT | JSON_ENCODE_ANY);
    if (pj == NULL) {
        edge__rt_send_error(s, "INTERNAL", "out of memory", id);
        return;
    }
    if (s->rt->host.broadcast != NULL) {
        s->rt->host.broadcast(s->rt->host.ud, s->rl->idx, json_string_value(ch), pj, strlen(pj));
    } else {
        edge_rt_broadcast(s->rt, json_string_value(ch), pj, strlen(pj));
    }
    free(pj);
    if (json_is_integer(id)) {
        char out[96];
        int n = snprintf(out, sizeof(out), "{\"type\":\"broadcast_sent\",\"id\":%lld}", (long long)json_integer_value(id));
        edge__rt_send_text(s, out, (size_t)n);
    }
}

static void on_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)c;
    struct rt_session *s = ud;
    struct edge_rt *rt = s->rt;
    if (s->closed) return;
    if (opcode != 1) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        edge__rt_send_error(s, "BAD_MESSAGE", "messages are JSON text frames", NULL);
        return;
    }
    json_error_t jerr;
    json_t *m = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (m == NULL || !json_is_object(m)) {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        edge__rt_send_error(s, "BAD_MESSAGE", m == NULL ? "the message is not JSON" : "the message must be a JSON object", NULL);
        json_decref(m);
        return;
    }
    json_t *jwt = json_object_get(m, "jwt");
    if (!s->authed) {
        const char *code = "AUTH_REQUIRED";
        bool ro = false;
        if (!json_is_string(jwt) ||
            !rt->host.auth(rt->host.ud, json_string_value(jwt), json_string_length(jwt), &ro, &code)) {
            atomic_fetch_add(&rt->m.auth_failed, 1);
            edge__rt_send_error(s, code ? code : "AUTH_REQUIRED",
                       json_is_string(jwt) ? "the token is not valid"
                                           : "authenticate with an Authorization header or a jwt in the first message",
                       json_object_get(m, "id"));
            json_decref(m);
            edge__rt_session_close(s, 4001, "authentication failed");
            return;
        }
        s->authed = true;
        s->read_only = ro;
    }
    json_t *type = json_object_get(m, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "";
    if (strcmp(t, "subscribe") == 0) {
        handle_subscribe(s, m);
    } else if (strcmp(t, "unsubscribe") == 0) {
        handle_unsubscribe(s, m);
    } else if (strcmp(t, "join") == 0) {
        handle_join(s, m);
    } else if (strcmp(t, "broadcast") == 0) {
        handle_broadcast(s, m);
    } else if (strcmp(t, "auth") == 0) {
        edge__rt_send_text(s, "{\"type\":\"authed\"}", 17);
    } else if (strcmp(t, "ping") == 0) {
        json_t *id = json_object_get(m, "id");
        char out[96];
        int n = json_is_integer(id) ? snprintf(out, sizeof(out), "{\"type\":\"pong\",\"id\":%lld}",
                                               (long long)json_integer_value(id))
                                    : snprintf(out, sizeof(out), "{\"type\":\"pong\"}");
        edge__rt_send_text(s, out, (size_t)n);
    } else {
        atomic_fetch_add(&rt->m.bad_messages, 1);
        edge__rt_send_error(s, "BAD_MESSAGE", "unknown message type (subscribe, unsubscribe, join, broadcast, auth, ping)",
                   json_object_get(m, "id"));
    }
    json_decref(m);
}

static void session_free(struct rt_session *s)
{
    while (s->subs != NULL) edge__rt_sub_remove(s->subs);
    for (int i = 0; i < s->n_channels; i++) edge_free(s->channels[i]);
    edge_free(s->channels);
    edge_buf_free(&s->out);
    edge_http_conn_unref(s->c);
    edge_free(s);
}

/* The connection is gone: unlink and free the session (loop thread). */
static void on_close(void *ud, struct edge_http_conn *c)
{
    (void)c;
    struct rt_session *s = ud;
    struct rt_loop *rl = s->rl;
    if (s->prev) s->prev->next = s->next;
    else rl->sessions = s->next;
    if (s->next) s->next->prev = s->prev;
    atomic_fetch_sub(&s->rt->conns, 1);
    session_free(s);
}

void edge__rt_session_close(struct rt_session *s, uint16_t code, const char *reason)
{
    if (s->closed) return;
    edge__rt_session_flush(s);
    s->closed = true;
    /* Subscriptions end now: nothing more is queued for a connection that is going. */
    while (s->subs != NULL) edge__rt_sub_remove(s->subs);
    if (s->sse) edge_http_stream_end(s->c);
    else edge_http_ws_close(s->c, code, reason);
}

static struct rt_session *session_new(struct edge_rt *rt, int loop, struct edge_http_conn *c)
{
    struct rt_session *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) return NULL;
    s->rt = rt;
    s->rl = &rt->loops[loop];
    s->c = c;
    edge_http_conn_ref(c);
    edge_buf_init(&s->out, (size_t)1 << 30);
    s->next = s->rl->sessions;
    if (s->next) s->next->prev = s;
    s->rl->sessions = s;
    return s;
}

bool edge_rt_reserve(struct edge_rt *rt)
{
    if (atomic_fetch_add(&rt->conns, 1) >= rt->lim.max_connections) {
        atomic_fetch_sub(&rt->conns, 1);
        atomic_fetch_add(&rt->m.refused_connections, 1);
        return false;
    }
    return true;
}

void edge_rt_release(struct edge_rt *rt)
{
    atomic_fetch_sub(&rt->conns, 1);
}

int edge_rt_accept(struct edge_rt *rt, int loop, struct edge_http_conn *c, bool authed, bool read_only)
{
    if (edge_http_ws_accept(c, EDGE_RT_PROTOCOL) != EDGE_OK) {
        edge_rt_release(rt);
        return EDGE_EPROTO;
    }
    struct rt_session *s = session_new(rt, loop, c);
    if (s == NULL) {
        edge_rt_release(rt);
        edge_http_ws_close(c, 1011, "out of memory");
        return EDGE_ENOMEM;
    }
    s->authed = authed || !rt->host.auth_required;
    s->read_only = authed ? read_only : false;
    edge_http_conn_set_ws_handler(c, on_message, on_close, s);
    return EDGE_OK;
}

static void sse_closed(void *ud, struct edge_http_conn *c)
{
    on_close(ud, c);
}

int edge_rt_sse_open(struct edge_rt *rt, int loop, struct edge_http_conn *c, const char *subscribe_json, char *err,
                     size_t errlen)
{
    json_error_t jerr;
    json_t *m = json_loads(subscribe_json, 0, &jerr);
    if (m == NULL) {
        snprintf(err, errlen, "bad query");
        edge_rt_release(rt);
        return EDGE_EINVAL;
    }
    struct rt_session *s = session_new(rt, loop, c);
    if (s == NULL) {
        json_decref(m);
        edge_rt_release(rt);
        return EDGE_ENOMEM;
    }
    s->sse = true;
    s->authed = true;
    edge_http_conn_watch_close(c, sse_closed, s);
    handle_subscribe(s, m);
    json_decref(m);
    if (s->n_subs == 0 && !s->closed) edge__rt_session_close(s, 1000, "bad subscription");
    return EDGE_OK;
}

