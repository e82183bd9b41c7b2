/* SPDX-License-Identifier: MIT */
/* HTTP and WebSocket glue of the real-time engine (src/realtime/rt.h, docs/realtime.md):
 * the /v1/realtime upgrade, SSE at /v1/realtime/sse, /v1/realtime/status and the
 * engine's host callbacks (loop inbox, token checks). */
#include "api/node_int.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "realtime/rt.h"

static void rt_post(void *ud, int loop, struct edge_task *t)
{
    struct edge_node *n = ud;
    edge__api_loop_post(&n->loops[loop], t);
}

static bool rt_auth(void *ud, const char *tok, size_t len, bool *read_only, const char **code)
{
    enum hrana_access a = HRANA_ACCESS_RW;
    if (!edge__api_auth_token(ud, tok, len, &a, code)) return false;
    *read_only = a == HRANA_ACCESS_RO;
    return true;
}

int edge__api_realtime_start(struct edge_node *n, int n_loops)
{
    const struct edge_conf *conf = n->cfg.conf;
    struct edge_rt_limits lim = {0};
    if (conf != NULL) {
        lim.max_connections = conf->realtime.max_connections;
        lim.max_subscriptions = conf->realtime.max_subscriptions;
        lim.queue_bytes = (size_t)conf->realtime.queue_bytes;
        lim.backlog_batch = conf->realtime.backlog_batch;
    }
    struct edge_rt_host host = {
        .ud = n,
        .n_loops = n_loops,
        .post = rt_post,
        .auth = rt_auth,
        .auth_required = n->keys != NULL,
        .broadcast = edge__api_broadcast_publish,
    };
    return edge_rt_create(n->repl.cluster ? &n->repl : NULL, n->db_path, &host, &lim, &n->rt);
}

void edge__api_realtime_upgrade(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    if (!edge_http_list_has(edge_http_header(req, "sec-websocket-protocol"), EDGE_RT_PROTOCOL)) {
        edge__api_respond_error(n, c, req, EP_WS, 400, "WS_PROTOCOL_UNSUPPORTED",
                                "offer the WebSocket subprotocol " EDGE_RT_PROTOCOL);
        return;
    }
    bool authed = false, ro = false;
    if (n->keys != NULL && edge_http_header(req, "authorization") != NULL) {
        enum hrana_access a;
        const char *code = NULL;
        if (!edge__api_auth_http(n, req, &a, &code)) {
            edge__api_respond_error(n, c, req, EP_WS, 401, code ? code : "AUTH_JWT_INVALID", "Authentication failed");
            return;
        }
        authed = true;
        ro = a == HRANA_ACCESS_RO;
    }
    if (!edge_rt_reserve(n->rt)) {
        edge__api_respond_error(n, c, req, EP_WS, 503, "TOO_MANY_CONNECTIONS",
                                "this node has realtime.max_connections subscribers");
        return;
    }
    uint64_t start = req->start_ns;
    int rv = edge_rt_accept(n->rt, l->idx, c, authed, ro);
    edge__api_observe(n, EP_WS, start, rv != EDGE_OK);
}

/* The value of key in a query string, percent-decoded into out; false if absent. */
static bool query_get(const char *q, const char *key, char *out, size_t outlen)
{
    size_t kl = strlen(key);
    for (const char *p = q; p != NULL && *p;) {
        const char *amp = strchr(p, '&');
        const char *end = amp ? amp : p + strlen(p);
        if ((size_t)(end - p) > kl && strncmp(p, key, kl) == 0 && p[kl] == '=') {
            size_t o = 0;
            for (const char *s = p + kl + 1; s < end && o + 1 < outlen; s++) {
                if (*s == '%' && s + 2 < end + 0 + 1 && isxdigit((unsigned char)s[1]) && isxdigit((unsigned char)s[2])) {
                    char hex[3] = {s[1], s[2], 0};
                    out[o++] = (char)strtol(hex, NULL, 16);
                    s += 2;
                } else {
                    out[o++] = *s == '+' ? ' ' : *s;
                }
            }
            out[o] = '\0';
            return true;
        }
        p = amp ? amp + 1 : NULL;
    }
    return false;
}

/* GET /v1/realtime/sse?tables=a,b&from=...&where={json}&keys=[json]: the same events as
 * Server-Sent Events, id = bookmark (Last-Event-ID resumes). */
void edge__api_realtime_sse(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    char v[8192];
    json_t *m = json_object();
    json_object_set_new(m, "type", json_string("subscribe"));
    json_object_set_new(m, "id", json_integer(1));
    if (query_get(req->query, "tables", v, sizeof(v))) {
        json_t *a = json_array();
        for (char *save = NULL, *t = strtok_r(v, ",", &save); t != NULL; t = strtok_r(NULL, ",", &save)) {
            json_array_append_new(a, json_string(t));
        }
        json_object_set_new(m, "tables", a);
    }
    const char *last = edge_http_header(req, "last-event-id");
    if (last != NULL && last[0] != '\0') {
        json_object_set_new(m, "from", json_string(last));
    } else if (query_get(req->query, "from", v, sizeof(v))) {
        json_object_set_new(m, "from", json_string(v));
    }
    const char *jk[] = {"where", "keys"};
    for (int i = 0; i < 2; i++) {
        if (!query_get(req->query, jk[i], v, sizeof(v))) continue;
        json_t *j = json_loads(v, 0, NULL);
        if (j == NULL) {
            json_decref(m);
            edge__api_respond_error(n, c, req, EP_OTHER, 400, "BAD_SUBSCRIBE", "where and keys must be JSON");
            return;
        }
        json_object_set_new(m, jk[i], j);
    }
    char *text = json_dumps(m, JSON_COMPACT);
    json_decref(m);
    if (text == NULL) {
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "INTERNAL", "out of memory");
        return;
    }
    if (!edge_rt_reserve(n->rt)) {
        free(text);
        edge__api_respond_error(n, c, req, EP_OTHER, 503, "TOO_MANY_CONNECTIONS",
                                "this node has realtime.max_connections subscribers");
        return;
    }
    edge__api_observe(n, EP_OTHER, req->start_ns, false);
    if (edge_http_stream_begin(c, "text/event-stream", NULL) != EDGE_OK) {
        edge_rt_release(n->rt);
        free(text);
        return;
    }
    char err[256] = "";
    edge_rt_sse_open(n->rt, l->idx, c, text, err, sizeof(err));
    free(text);
}

/* GET /v1/realtime/status */
void edge__api_realtime_status(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct edge_node *n = l->node;
    struct edge_rt_stats s;
    edge_rt_stats(n->rt, &s);
    struct edge_buf b;
    edge_buf_init(&b, 1 << 20);
    edge_buf_printf(&b,
                    "{\"region\":\"%s\",\"subscribers\":%llu,\"subscriptions\":%llu,\"subscriptions_by_table\":",
                    n->region, (unsigned long long)s.connections, (unsigned long long)s.subscriptions);
    edge_rt_tables_json(n->rt, &b);
    double up = (double)(mono_ms() - n->start_mono_ms) / 1000.0;
    if (up <= 0) up = 1;
    edge_buf_printf(&b,
                    ",\"events_in_total\":%llu,\"deliveries_total\":%llu,\"frames_total\":%llu,\"bytes_out_total\":%llu,"
                    "\"events_in_per_s\":%.1f,\"deliveries_per_s\":%.1f,"
                    "\"closes\":{\"slow_consumer\":%llu,\"resync_required\":%llu},"
                    "\"refused\":{\"connections\":%llu,\"subscriptions\":%llu},\"bad_messages\":%llu,"
                    "\"auth_failed\":%llu,\"broadcasts_in\":%llu,\"broadcast_deliveries\":%llu,\"position\":\"",
                    (unsigned long long)s.entries_in, (unsigned long long)s.deliveries, (unsigned long long)s.frames,
                    (unsigned long long)s.bytes_out, (double)s.entries_in / up, (double)s.deliveries / up,
                    (unsigned long long)s.closed_slow, (unsigned long long)s.closed_resync,
                    (unsigned long long)s.refused_connections, (unsigned long long)s.refused_subscriptions,
                    (unsigned long long)s.bad_messages, (unsigned long long)s.auth_failed,
                    (unsigned long long)s.broadcasts_in, (unsigned long long)s.broadcast_deliveries);
    edge_rt_position(n->rt, &b);
    edge_buf_puts(&b, "\",\"oldest_resumable\":\"");
    if (n->repl.cluster) {
        struct edge_vclock floor;
        edge_vclock_init(&floor);
        edge_repl_log_floor(&n->repl, edge_store_db(l->rconn), &floor);
        edge_rt_bookmark_format(&floor, &b);
        edge_vclock_close(&floor);
    }
    edge_buf_puts(&b, "\"}");
    edge__api_respond(n, c, req, EP_STATUS, 200, "application/json", NULL, b.data, b.len);
    edge_buf_free(&b);
}

void edge__api_realtime_metrics(struct edge_node *n, struct edge_buf *b)
{
    if (n->rt == NULL) return;
    struct edge_rt_stats s;
    edge_rt_stats(n->rt, &s);
    edge_buf_printf(b,
                    "# TYPE edgelite_realtime_subscribers gauge\nedgelite_realtime_subscribers %llu\n"
                    "# TYPE edgelite_realtime_subscriptions gauge\nedgelite_realtime_subscriptions %llu\n"
                    "# TYPE edgelite_realtime_events_in_total counter\nedgelite_realtime_events_in_total %llu\n"
                    "# TYPE edgelite_realtime_deliveries_total counter\nedgelite_realtime_deliveries_total %llu\n"
                    "# TYPE edgelite_realtime_frames_total counter\nedgelite_realtime_frames_total %llu\n"
                    "# TYPE edgelite_realtime_bytes_out_total counter\nedgelite_realtime_bytes_out_total %llu\n"
                    "# TYPE edgelite_realtime_closes_total counter\n"
                    "edgelite_realtime_closes_total{reason=\"slow_consumer\"} %llu\n"
                    "edgelite_realtime_closes_total{reason=\"resync_required\"} %llu\n"
                    "# TYPE edgelite_realtime_refused_total counter\n"
                    "edgelite_realtime_refused_total{what=\"connection\"} %llu\n"
                    "edgelite_realtime_refused_total{what=\"subscription\"} %llu\n"
                    "# TYPE edgelite_realtime_bad_messages_total counter\nedgelite_realtime_bad_messages_total %llu\n"
                    "# TYPE edgelite_realtime_broadcasts_total counter\nedgelite_realtime_broadcasts_total %llu\n"
                    "# TYPE edgelite_realtime_broadcast_deliveries_total counter\n"
                    "edgelite_realtime_broadcast_deliveries_total %llu\n",
                    (unsigned long long)s.connections, (unsigned long long)s.subscriptions,
                    (unsigned long long)s.entries_in, (unsigned long long)s.deliveries, (unsigned long long)s.frames,
                    (unsigned long long)s.bytes_out, (unsigned long long)s.closed_slow,
                    (unsigned long long)s.closed_resync, (unsigned long long)s.refused_connections,
                    (unsigned long long)s.refused_subscriptions, (unsigned long long)s.bad_messages,
                    (unsigned long long)s.broadcasts_in, (unsigned long long)s.broadcast_deliveries);
}

/* A broadcast published here: every subscriber of the channel on this node now, and
 * (when replicating) the other regions through their relay endpoint. At most once: a
 * region that cannot be reached at this moment misses it. */
void edge__api_broadcast_publish(void *ud, int loop, const char *channel, const char *payload_json, size_t len)
{
    struct edge_node *n = ud;
    edge_rt_broadcast(n->rt, channel, payload_json, len);
    edge__api_broadcast_relay(n, loop, channel, payload_json, len);
}
