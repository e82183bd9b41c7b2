/* SPDX-License-Identifier: MIT */
/* A region that must be seeded serves nothing: every route but /health and /version
 * answers 503 SEEDING, /health answers 503 with "status":"seeding" (a router skips the
 * region), /version answers as always.
 *
 * DESIGN: before the node has a database there is nothing to route to, so a small server
 * of its own (one thread, one libuv loop, net/http on a duplicate of the node's listening
 * socket) answers while the snapshot streams in; stopping it leaves the socket (and the
 * connections waiting in its backlog) to the node's loops. A running node that finds
 * itself behind sets n->seeding and edge__api_on_request answers the same way until the
 * embedder restarts it. */
#include "api/node_int.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/log.h"

static const char seeding_body[] =
    "{\"error\":\"this region is being seeded from a snapshot of another region and serves nothing yet\","
    "\"message\":\"this region is being seeded from a snapshot of another region and serves nothing yet\","
    "\"code\":\"SEEDING\",\"status\":\"seeding\"}";

bool edge__api_seeding_answer(struct edge_http_conn *c, const struct edge_http_req *req)
{
    if (strcmp(req->path, "/version") == 0) return false;
    /* The same body for /health: its status says why the region is not healthy. */
    edge_http_respond(c, 503, "application/json", "Retry-After: 5\r\n", seeding_body, sizeof(seeding_body) - 1);
    return true;
}

struct edge__api_seeding {
    uv_loop_t loop;
    uv_async_t stop;
    uv_thread_t thread;
    struct edge_http_server *http;
};

static void seeding_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    (void)ud;
    if (edge__api_seeding_answer(c, req)) return;
    char v[64];
    int len = snprintf(v, sizeof(v), "edgelite %s\n", EDGE_VERSION);
    edge_http_respond(c, 200, "text/plain", NULL, v, (size_t)len);
}

static void seeding_ws(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    (void)ud;
    (void)opcode;
    (void)data;
    (void)len;
    edge_http_ws_close(c, 1013, "seeding"); /* never upgraded: a 503 answers every upgrade */
}

static void seeding_close(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    (void)c;
}

static void seeding_stopped(void *arg)
{
    struct edge__api_seeding *s = arg;
    s->http = NULL;
}

static void seeding_on_stop(uv_async_t *a)
{
    struct edge__api_seeding *s = a->data;
    if (s->http != NULL) edge_http_server_stop(s->http, seeding_stopped, s);
    uv_close((uv_handle_t *)&s->stop, NULL);
}

static void seeding_main(void *arg)
{
    struct edge__api_seeding *s = arg;
    pthread_setname_np(pthread_self(), "edge-seeding");
    uv_run(&s->loop, UV_RUN_DEFAULT);
}

int edge__api_seeding_start(int fd, uint64_t idle_ms, struct edge_tls_ctx *tls, struct edge__api_seeding **out)
{
    *out = NULL;
    struct edge__api_seeding *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return EDGE_ENOMEM;
    }
    if (uv_loop_init(&s->loop) != 0) {
        close(fd);
        edge_free(s);
        return EDGE_EIO;
    }
    uv_async_init(&s->loop, &s->stop, seeding_on_stop);
    s->stop.data = s;
    struct edge_http_limits lim = {
        .max_body_bytes = 1 << 20,
        .max_header_bytes = 64 * 1024,
        .max_queued = 8,
        .idle_timeout_ms = idle_ms,
        .request_timeout_ms = 30000,
        .max_ws_message = 1 << 16,
        .max_ws_out_bytes = 1 << 16,
    };
    struct edge_http_handler h = {.ud = s, .on_request = seeding_request, .on_ws_message = seeding_ws, .on_close = seeding_close};
    int rv = edge_http_server_start(&s->loop, fd, &lim, &h, &s->http);
    /* https clients get their 503 over TLS like any other answer */
    if (rv == EDGE_OK && tls != NULL) rv = edge_http_server_set_tls(s->http, tls);
    if (rv != EDGE_OK && s->http != NULL) {
        edge_http_server_stop(s->http, seeding_stopped, s);
    } else if (rv == EDGE_OK && uv_thread_create(&s->thread, seeding_main, s) != 0) {
        edge_http_server_stop(s->http, seeding_stopped, s);
        rv = EDGE_EINTERNAL;
    }
    if (rv != EDGE_OK) {
        if (!uv_is_closing((uv_handle_t *)&s->stop)) uv_close((uv_handle_t *)&s->stop, NULL);
        uv_run(&s->loop, UV_RUN_DEFAULT);
        uv_loop_close(&s->loop);
        edge_free(s);
        return rv;
    }
    *out = s;
    return EDGE_OK;
}

void edge__api_seeding_stop(struct edge__api_seeding *s)
{
    if (s == NULL) return;
    uv_async_send(&s->stop);
    uv_thread_join(&s->thread);
    uv_loop_close(&s->loop);
    edge_free(s);
}
