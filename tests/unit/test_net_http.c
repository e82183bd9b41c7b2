/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 and WebSocket server connections (src/net/http.c), driven from the test:
 * a server on a private uv loop, a plain client socket, and a pump that alternates
 * between one non-blocking loop turn and a non-blocking read of the client side.
 * Every wait is bounded by an iteration count, never by an assertion on time. */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/sha1.h"
#include "net/http.h"

#define PUMP_MAX 2500 /* loop turns, each waiting at most 2 ms for client data */
#define MAX_RESP 8

struct client {
    int fd;
    char buf[128 * 1024];
    size_t len;
    bool eof;
};

struct fixture {
    uv_loop_t loop;
    struct edge_http_server *s;
    struct sockaddr_in addr;
    int n_requests;
    char paths[16][64];
    char bodies[16][64];
    int n_ws;
    char ws_last[256];
    struct edge_http_conn *deferred; /* a request the test answers itself */
    bool stopped;
    struct client *clients[8];       /* freed by teardown, even after a failed assertion */
    int n_clients;
};

struct resp {
    int status;
    const char *head; /* points into client buf */
    size_t head_len;
    const char *body;
    size_t body_len;
};

/* ---------------------------------------------------------------------------------- */
/* Server side                                                                        */
/* ---------------------------------------------------------------------------------- */

static void on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct fixture *fx = ud;
    int i = fx->n_requests++;
    if (i < 16) {
        snprintf(fx->paths[i], sizeof(fx->paths[i]), "%s", req->path);
        snprintf(fx->bodies[i], sizeof(fx->bodies[i]), "%.*s", (int)req->body.len,
                 req->body.data ? req->body.data : "");
    }
    if (req->upgrade) {
        (void)edge_http_ws_accept(c, NULL);
        return;
    }
    if (strcmp(req->path, "/defer") == 0) {
        fx->deferred = c;
        return;
    }
    edge_http_respond(c, 200, "text/plain", NULL, req->path, strlen(req->path));
}

static void on_ws_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct fixture *fx = ud;
    fx->n_ws++;
    snprintf(fx->ws_last, sizeof(fx->ws_last), "%.*s", (int)len, (const char *)data);
    (void)edge_http_ws_send(c, opcode, data, len);
}

static void on_close(void *ud, struct edge_http_conn *c)
{
    struct fixture *fx = ud;
    if (fx->deferred == c) {
        fx->deferred = NULL;
    }
}

static int setup(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    assert_non_null(fx);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    int fd = -1, port = 0;
    assert_int_equal(edge_http_listen_socket("127.0.0.1", 0, &fd, &port), EDGE_OK);
    assert_true(port > 0);
    struct edge_http_limits lim = {
        .max_body_bytes = 1024,
        .max_header_bytes = 2048,
        .max_queued = 16,
        .idle_timeout_ms = 60000,
        .request_timeout_ms = 50,
        .max_ws_message = 4096,
    };
    struct edge_http_handler h = {.ud = fx, .on_request = on_request, .on_ws_message = on_ws_message, .on_close = on_close};
    assert_int_equal(edge_http_server_start(&fx->loop, fd, &lim, &h, &fx->s), EDGE_OK);
    fx->addr.sin_family = AF_INET;
    fx->addr.sin_port = htons((uint16_t)port);
    fx->addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *state = fx;
    return 0;
}

static void on_stopped(void *arg)
{
    struct fixture *fx = arg;
    fx->stopped = true;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    for (int i = 0; i < fx->n_clients; i++) {
        if (fx->clients[i]->fd >= 0) {
            close(fx->clients[i]->fd);
        }
        free(fx->clients[i]);
    }
    edge_http_server_stop(fx->s, on_stopped, fx);
    for (int i = 0; i < PUMP_MAX && !fx->stopped; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    assert_true(fx->stopped);
    /* Every handle was closed: uv_loop_close refuses otherwise. */
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Client side                                                                        */
/* ---------------------------------------------------------------------------------- */

static struct client *client_open(struct fixture *fx)
{
    assert_true(fx->n_clients < 8);
    struct client *cl = calloc(1, sizeof(*cl));
    assert_non_null(cl);
    fx->clients[fx->n_clients++] = cl;
    cl->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(cl->fd >= 0);
    assert_int_equal(connect(cl->fd, (struct sockaddr *)&fx->addr, sizeof(fx->addr)), 0);
    return cl;
}

static void client_close(struct client *cl)
{
    close(cl->fd);
    cl->fd = -1;
}

static void client_send(struct client *cl, const void *p, size_t n)
{
    assert_int_equal(send(cl->fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

static void client_sends(struct client *cl, const char *s) { client_send(cl, s, strlen(s)); }

static void client_read(struct client *cl)
{
    for (int i = 0; i < 64 && !cl->eof && cl->len < sizeof(cl->buf); i++) {
        ssize_t n = recv(cl->fd, cl->buf + cl->len, sizeof(cl->buf) - cl->len, MSG_DONTWAIT);
        if (n > 0) {
            cl->len += (size_t)n;
        } else if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
            cl->eof = true;
        } else {
            break;
        }
    }
}

/* Complete responses at the start of the client buffer. Stops after a 101: what
 * follows is WebSocket framing. */
static int parse_responses(struct client *cl, struct resp *out, int max, size_t *out_end)
{
    size_t off = 0;
    int n = 0;
    while (n < max && off < cl->len) {
        const char *start = cl->buf + off;
        const char *end = memmem(start, cl->len - off, "\r\n\r\n", 4);
        if (end == NULL || strncmp(start, "HTTP/1.1 ", 9) != 0) {
            break;
        }
        size_t head_len = (size_t)(end - start) + 4;
        size_t body_len = 0;
        const char *cls = memmem(start, head_len, "Content-Length: ", 16);
        if (cls != NULL) {
            body_len = strtoul(cls + 16, NULL, 10);
        }
        if (off + head_len + body_len > cl->len) {
            break;
        }
        out[n].status = atoi(start + 9);
        out[n].head = start;
        out[n].head_len = head_len;
        out[n].body = start + head_len;
        out[n].body_len = body_len;
        off += head_len + body_len;
        n++;
        if (out[n - 1].status == 101) {
            break;
        }
    }
    if (out_end != NULL) {
        *out_end = off;
    }
    return n;
}

/* Turn the loop and read until `want` responses are complete (or EOF if want < 0). */
static int pump(struct fixture *fx, struct client *cl, int want, struct resp *out)
{
    struct resp tmp[MAX_RESP];
    if (out == NULL) {
        out = tmp;
    }
    int n = 0;
    for (int i = 0; i < PUMP_MAX; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        client_read(cl);
        n = parse_responses(cl, out, MAX_RESP, NULL);
        if ((want >= 0 && n >= want) || cl->eof) {
            break;
        }
        struct pollfd p = {cl->fd, POLLIN, 0};
        (void)poll(&p, 1, 2);
    }
    return n;
}

/* A fixed number of loop turns, to show that something does NOT happen. */
static void pump_idle(struct fixture *fx, struct client *cl, int turns)
{
    for (int i = 0; i < turns; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        client_read(cl);
        struct pollfd p = {cl->fd, POLLIN, 0};
        (void)poll(&p, 1, 1);
    }
}

static bool head_has(const struct resp *r, const char *needle)
{
    return memmem(r->head, r->head_len, needle, strlen(needle)) != NULL;
}

static void assert_body(const struct resp *r, const char *expect)
{
    assert_int_equal(r->body_len, strlen(expect));
    assert_memory_equal(r->body, expect, r->body_len);
}

/* ---------------------------------------------------------------------------------- */
/* HTTP                                                                               */
/* ---------------------------------------------------------------------------------- */

static void test_keepalive_two_requests(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(pump(fx, cl, 1, r), 1);
    assert_int_equal(r[0].status, 200);
    assert_body(&r[0], "/a");
    assert_false(head_has(&r[0], "Connection: close"));
    client_sends(cl, "POST /b?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello");
    assert_int_equal(pump(fx, cl, 2, r), 2);
    assert_int_equal(r[1].status, 200);
    assert_body(&r[1], "/b");
    assert_false(cl->eof);
    assert_int_equal(fx->n_requests, 2);
    assert_string_equal(fx->bodies[1], "hello");
    struct edge_http_stats st;
    edge_http_server_stats(fx->s, &st);
    assert_int_equal(st.connections_total, 1); /* both on the same connection */
    /* Connection: close is honoured after the answer. */
    client_sends(cl, "GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    assert_int_equal(pump(fx, cl, -1, r), 3);
    assert_true(head_has(&r[2], "Connection: close"));
    assert_true(cl->eof);
    client_close(cl);
}

static void test_pipelined_in_order(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
                     "POST /2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
                     "GET /3 HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(pump(fx, cl, 3, r), 3);
    assert_body(&r[0], "/1");
    assert_body(&r[1], "/2");
    assert_body(&r[2], "/3");
    assert_string_equal(fx->bodies[1], "abcde");
    client_close(cl);
}

static void test_pipelined_waits_for_inflight(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < PUMP_MAX && fx->deferred == NULL; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    assert_non_null(fx->deferred);
    pump_idle(fx, cl, 20);
    /* The second request is parsed but not handed over while the first is in flight. */
    assert_int_equal(fx->n_requests, 1);
    assert_int_equal(cl->len, 0);
    edge_http_respond(fx->deferred, 200, "text/plain", NULL, "late", 4);
    assert_int_equal(pump(fx, cl, 2, r), 2);
    assert_body(&r[0], "late");
    assert_body(&r[1], "/after");
    assert_int_equal(fx->n_requests, 2);
    client_close(cl);
}

/* A draining server: the listener closes, an idle keep-alive connection is closed once
 * seen idle twice, a request in flight and the one pipelined behind it are answered (the
 * last with Connection: close), and then nothing is busy. */
static void test_drain_answers_in_flight_closes_idle(void **state)
{
    struct fixture *fx = *state;
    struct resp r[MAX_RESP];
    struct client *idle = client_open(fx);
    client_sends(idle, "GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
    assert_int_equal(pump(fx, idle, 1, r), 1);
    struct client *busy = client_open(fx);
    client_sends(busy, "GET /defer HTTP/1.1\r\nHost: x\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n");
    for (int i = 0; i < PUMP_MAX && fx->deferred == NULL; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
    }
    assert_non_null(fx->deferred);

    edge_http_server_drain(fx->s);
    /* First look: nothing closed yet, both still count. */
    assert_int_equal(edge_http_server_close_idle(fx->s, NULL, NULL), 2);
    pump_idle(fx, idle, 5);
    assert_false(idle->eof);
    /* Second look: the idle one goes, the busy one stays. */
    assert_int_equal(edge_http_server_close_idle(fx->s, NULL, NULL), 1);
    pump(fx, idle, -1, NULL);
    assert_true(idle->eof);
    /* The listener is closed: no new connection. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_not_equal(connect(fd, (struct sockaddr *)&fx->addr, sizeof(fx->addr)), 0);
    close(fd);

    edge_http_respond(fx->deferred, 200, "text/plain", NULL, "late", 4);
    assert_int_equal(pump(fx, busy, -1, r), 2);
    assert_body(&r[0], "late");
    assert_false(head_has(&r[0], "Connection: close"));
    assert_body(&r[1], "/after");
    assert_true(head_has(&r[1], "Connection: close"));
    assert_true(busy->eof);
    for (int i = 0; i < 50; i++) uv_run(&fx->loop, UV_RUN_NOWAIT);
    assert_int_equal(edge_http_server_close_idle(fx->s, NULL, NULL), 0);
    client_close(idle);
    client_close(busy);
}

static void test_oversized_content_length_413(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n0123456789");
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 413);
    assert_true(head_has(&r[0], "Connection: close"));
    assert_true(cl->eof);
    assert_int_equal(fx->n_requests, 0);
    client_close(cl);
}

static void test_oversized_chunked_body_413(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    char req[4096];
    int n = snprintf(req, sizeof(req), "POST /big HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n800\r\n");
    memset(req + n, 'z', 2048);
    client_send(cl, req, (size_t)n + 2048);
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 413);
    assert_int_equal(fx->n_requests, 0);
    client_close(cl);
}

static void test_huge_headers_431(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    char req[8192];
    int n = snprintf(req, sizeof(req), "GET / HTTP/1.1\r\nHost: x\r\nX-Big: ");
    memset(req + n, 'h', 4000);
    memcpy(req + n + 4000, "\r\n\r\n", 4);
    client_send(cl, req, (size_t)n + 4004);
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 431);
    assert_true(cl->eof);
    assert_int_equal(fx->n_requests, 0);
    client_close(cl);
}

static void test_garbage_400(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_send(cl, "\x16\x03\x01\x02\x00 garbage\r\n\r\n", 18);
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 400);
    assert_true(cl->eof);
    assert_int_equal(fx->n_requests, 0);
    struct edge_http_stats st;
    edge_http_server_stats(fx->s, &st);
    assert_int_equal(st.bad_requests, 1);
    client_close(cl);
}

static void test_bad_request_after_good_one(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    /* The complete request is answered; then the connection closes (out of sync). */
    client_sends(cl, "GET /ok HTTP/1.1\r\nHost: x\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
    int n = pump(fx, cl, -1, r);
    assert_true(cl->eof);
    assert_true(n >= 1);
    assert_int_equal(r[0].status, 200);
    assert_body(&r[0], "/ok");
    assert_int_equal(fx->n_requests, 1);
    client_close(cl);
}

static void test_half_sent_request_times_out(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    client_sends(cl, "GET /slow HTTP/1.1\r\nHost: x\r\n");
    assert_int_equal(pump(fx, cl, -1, NULL), 0);
    assert_true(cl->eof);       /* closed by the 50 ms request timeout */
    assert_int_equal(cl->len, 0); /* without an answer */
    assert_int_equal(fx->n_requests, 0);
    client_close(cl);
}


static void test_body_at_limit_accepted(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    char req[2048];
    int n = snprintf(req, sizeof(req), "POST /edge HTTP/1.1\r\nHost: x\r\nContent-Length: 1024\r\n\r\n");
    memset(req + n, 'b', 1024);
    client_send(cl, req, (size_t)n + 1024);
    assert_int_equal(pump(fx, cl, 1, r), 1);
    assert_int_equal(r[0].status, 200); /* max_body_bytes itself is allowed */
    assert_int_equal(fx->n_requests, 1);
    client_close(cl);
}

static void test_http10_closes(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /old HTTP/1.0\r\n\r\n");
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 200);
    assert_true(head_has(&r[0], "Connection: close"));
    assert_true(cl->eof);
    client_close(cl);
}

/* Too many header fields is the same condition as too many header bytes (RFC 6585
 * section 5), whichever field happens to be the one over the count. */
static void test_too_many_headers_431(void **state)
{
    struct fixture *fx = *state;
    for (int total = 101; total <= 102; total++) {
        struct client *cl = client_open(fx);
        struct resp r[MAX_RESP];
        char req[2048];
        int n = snprintf(req, sizeof(req), "GET /many HTTP/1.1\r\n");
        for (int i = 0; i < total; i++) {
            n += snprintf(req + n, sizeof(req) - (size_t)n, "h%d: v\r\n", i);
        }
        n += snprintf(req + n, sizeof(req) - (size_t)n, "\r\n");
        assert_true(n < 2048); /* under max_header_bytes: only the count is over */
        client_send(cl, req, (size_t)n);
        assert_int_equal(pump(fx, cl, -1, r), 1);
        if (r[0].status != 431) {
            fail_msg("%d header fields: status %d, want 431", total, r[0].status);
        }
        assert_int_equal(fx->n_requests, 0);
        client_close(cl);
    }
}

/* Only a WebSocket upgrade is one: "Upgrade: h2c" (curl --http2 on http://) must be
 * answered as plain HTTP/1.1 (RFC 9110 section 7.8 lets a server ignore Upgrade), and a
 * request pipelined after it must still be parsed. */
static void test_non_websocket_upgrade_ignored(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /h2 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                     "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n");
    int n = pump(fx, cl, 2, r);
    assert_true(n >= 1);
    if (r[0].status != 200) {
        fail_msg("Upgrade: h2c answered %d, want 200 (treated as a WebSocket upgrade)", r[0].status);
    }
    assert_int_equal(n, 2);
    assert_body(&r[1], "/next");
    client_close(cl);
}

/* ---------------------------------------------------------------------------------- */
/* WebSocket                                                                          */
/* ---------------------------------------------------------------------------------- */

/* Handshake with the RFC 6455 section 1.3 sample key; returns the offset where frames begin. */
static size_t ws_handshake(struct fixture *fx, struct client *cl)
{
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    assert_int_equal(pump(fx, cl, 1, r), 1);
    assert_int_equal(r[0].status, 101);
    assert_true(head_has(&r[0], "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"));
    assert_true(head_has(&r[0], "Upgrade: websocket"));
    return r[0].head_len;
}

static void test_ws_handshake_and_echo(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    size_t off = ws_handshake(fx, cl);
    /* RFC 6455 section 5.7: a single-frame masked text message "Hello". */
    static const uint8_t hello[] = {0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58};
    client_send(cl, hello, sizeof(hello));
    for (int i = 0; i < PUMP_MAX && cl->len < off + 7 && !cl->eof; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        client_read(cl);
        struct pollfd p = {cl->fd, POLLIN, 0};
        (void)poll(&p, 1, 2);
    }
    assert_int_equal(fx->n_ws, 1);
    assert_string_equal(fx->ws_last, "Hello");
    assert_int_equal(cl->len, off + 7);
    /* The echo is unmasked (server to client). */
    assert_memory_equal(cl->buf + off, "\x81\x05Hello", 7);
    client_close(cl);
}

static void test_ws_frame_with_upgrade_request(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    /* A frame sent in the same packet as the upgrade request is not lost. */
    static const char req[] = "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                              "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                              "\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58";
    client_send(cl, req, sizeof(req) - 1);
    for (int i = 0; i < PUMP_MAX && fx->n_ws == 0 && !cl->eof; i++) {
        uv_run(&fx->loop, UV_RUN_NOWAIT);
        client_read(cl);
        struct pollfd p = {cl->fd, POLLIN, 0};
        (void)poll(&p, 1, 2);
    }
    assert_int_equal(fx->n_ws, 1);
    assert_string_equal(fx->ws_last, "Hello");
    client_close(cl);
}

static void test_ws_unmasked_frame_closes(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    (void)ws_handshake(fx, cl);
    client_send(cl, "\x81\x05Hello", 7); /* RFC 6455 5.1: clients must mask */
    (void)pump(fx, cl, -1, NULL);
    assert_true(cl->eof);
    assert_int_equal(fx->n_ws, 0);
    client_close(cl);
}

static void test_ws_bad_handshake_400(void **state)
{
    struct fixture *fx = *state;
    struct client *cl = client_open(fx);
    struct resp r[MAX_RESP];
    client_sends(cl, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Version: 8\r\n\r\n");
    assert_int_equal(pump(fx, cl, -1, r), 1);
    assert_int_equal(r[0].status, 400);
    assert_true(cl->eof);
    client_close(cl);
}

/* ---------------------------------------------------------------------------------- */
/* SHA-1                                                                              */
/* ---------------------------------------------------------------------------------- */

static void hex(const uint8_t d[20], char out[41])
{
    for (int i = 0; i < 20; i++) {
        snprintf(out + 2 * i, 3, "%02x", d[i]);
    }
}

static void test_sha1_vectors(void **state)
{
    (void)state;
    uint8_t d[20];
    char h[41];
    edge__sha1((const uint8_t *)"", 0, d);
    hex(d, h);
    assert_string_equal(h, "da39a3ee5e6b4b0d3255bfef95601890afd80709");
    edge__sha1((const uint8_t *)"abc", 3, d);
    hex(d, h);
    assert_string_equal(h, "a9993e364706816aba3e25717850c26c9cd0d89d");
    const char *m56 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    edge__sha1((const uint8_t *)m56, strlen(m56), d);
    hex(d, h);
    assert_string_equal(h, "84983e441c3bd26ebaae4aa1f95129e5e54670f1");
    const char *m112 = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrlmnopqrs"
                       "mnopqrstnopqrstu";
    edge__sha1((const uint8_t *)m112, strlen(m112), d);
    hex(d, h);
    assert_string_equal(h, "a49b2446a02c645bf419f995b67091253a04a259");
    uint8_t *mil = malloc(1000000);
    assert_non_null(mil);
    memset(mil, 'a', 1000000);
    edge__sha1(mil, 1000000, d);
    free(mil);
    hex(d, h);
    assert_string_equal(h, "34aa973cd4c4daa4f61eeb2bdbad27316534016f");
    /* 60 bytes (the WebSocket accept input): the padding spills into a second block. */
    edge__sha1((const uint8_t *)"dGhlIHNhbXBsZSBub25jZQ==258EAFA5-E914-47DA-95CA-C5AB0DC85B11", 60, d);
    hex(d, h);
    assert_string_equal(h, "b37a4f2cc0624f1690f64606cf385945b2bec4ea");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_two_requests, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_in_order, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pipelined_waits_for_inflight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_drain_answers_in_flight_closes_idle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_content_length_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_oversized_chunked_body_413, setup, teardown),
        cmocka_unit_test_setup_teardown(test_huge_headers_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_400, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_request_after_good_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_half_sent_request_times_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_at_limit_accepted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http10_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_too_many_headers_431, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_websocket_upgrade_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_handshake_and_echo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_frame_with_upgrade_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_unmasked_frame_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ws_bad_handshake_400, setup, teardown),
        cmocka_unit_test(test_sha1_vectors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
