/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for the HTTP/1.1 + WebSocket connection code: each input is sent
 * by a real client socket to a real server on a libuv loop, so the bytes go through
 * the same read path, parser callbacks, pipelining queue, limits, upgrade and wslay
 * framing as in production.
 *
 * DESIGN
 * One loop and one server live for the whole process (start-up per input would cost
 * more than the input). Per input: connect, write the bytes in two pieces split at a
 * point taken from the data (to cut requests and frames at arbitrary places), half
 * close, and pump the loop while draining what the server writes, until the server
 * hangs up or the iteration bound is reached. Then the client socket is reset and the
 * loop is pumped until the server has no connection left, so nothing (memory, file
 * descriptors, timers) carries over to the next input. The handler answers every
 * request with 200, accepts WebSocket upgrades and echoes messages back. Limits are
 * small so that 413, 431 and the WebSocket message cap are reachable. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "core/alloc.h"
#include "net/http.h"

#define PUMP_ITERATIONS 64
#define DRAIN_ITERATIONS 2000

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct harness {
    uv_loop_t loop;
    struct edge_http_server *server;
    struct sockaddr_in addr;
    uint64_t requests;
    uint64_t ws_messages;
};

static void on_request(void *ud, struct edge_http_conn *c, struct edge_http_req *req)
{
    struct harness *h = ud;
    h->requests++;
    if (req->upgrade) {
        /* On failure a 400 was already sent. */
        (void)edge_http_ws_accept(c, edge_http_header(req, "sec-websocket-protocol") ? "hrana3" : NULL);
        return;
    }
    edge_http_respond(c, 200, "text/plain", NULL, "ok", 2);
}

static void on_ws_message(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len)
{
    struct harness *h = ud;
    h->ws_messages++;
    if (len > 0 && data[0] == 'X') {
        edge_http_ws_close(c, 1000, "bye"); /* reach the server-initiated close path too */
        return;
    }
    (void)edge_http_ws_send(c, opcode, data, len);
}

static void on_close(void *ud, struct edge_http_conn *c)
{
    (void)ud;
    (void)c;
}

static struct harness *harness_get(void)
{
    static struct harness h;
    static bool started;
    if (started) {
        return &h;
    }
    if (uv_loop_init(&h.loop) != 0) {
        abort();
    }
    int fd = -1, port = 0;
    if (edge_http_listen_socket("127.0.0.1", 0, &fd, &port) != EDGE_OK) {
        abort();
    }
    struct edge_http_limits lim = {
        .max_body_bytes = 64 * 1024,
        .max_header_bytes = 8 * 1024,
        .max_queued = 8,
        .idle_timeout_ms = 2000,
        .request_timeout_ms = 2000,
        .max_ws_message = 4096,
    };
    struct edge_http_handler hd = {.ud = &h, .on_request = on_request, .on_ws_message = on_ws_message, .on_close = on_close};
    if (edge_http_server_start(&h.loop, fd, &lim, &hd, &h.server) != EDGE_OK) {
        abort();
    }
    memset(&h.addr, 0, sizeof(h.addr));
    h.addr.sin_family = AF_INET;
    h.addr.sin_port = htons((uint16_t)port);
    h.addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    started = true;
    return &h;
}

/* Read and discard whatever the server sent. Returns true once it closed. */
static bool drain(int fd)
{
    char buf[16384];
    for (int i = 0; i < 64; i++) {
        ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (n == 0) {
            return true;
        }
        if (n < 0) {
            return errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR;
        }
    }
    return false;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 256 * 1024) {
        return 0;
    }
    struct harness *h = harness_get();
    /* libFuzzer's timers (SIGALRM) can interrupt a blocking connect: start over then. */
    int fd = -1;
    for (int attempt = 0; fd < 0 && attempt < 8; attempt++) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            abort();
        }
        if (connect(fd, (struct sockaddr *)&h->addr, sizeof(h->addr)) != 0) {
            int e = errno;
            close(fd);
            fd = -1;
            if (e != EINTR) {
                struct edge_http_stats st;
                edge_http_server_stats(h->server, &st);
                fprintf(stderr, "connect: %s; server connections open %llu of %llu\n", strerror(e),
                        (unsigned long long)st.connections_open, (unsigned long long)st.connections_total);
                abort();
            }
        }
    }
    if (fd < 0) {
        abort();
    }
    /* Every send/recv below is non-blocking (MSG_DONTWAIT): the server may stop
     * reading (backpressure, errors) and the harness must never wait on it. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct linger lg = {1, 0}; /* close() resets: no TIME_WAIT pile-up over many runs */
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));

    size_t split = size > 0 ? (size_t)data[size - 1] * size / 256 : 0;
    size_t off = 0;
    bool shut = false, closed = false;
    for (int it = 0; it < PUMP_ITERATIONS && !closed; it++) {
        size_t end = off < split ? split : size;
        if (off < end) {
            ssize_t n = send(fd, data + off, end - off, MSG_DONTWAIT | MSG_NOSIGNAL);
            if (n > 0) {
                off += (size_t)n;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                off = size; /* the server reset us: nothing more to send */
            }
        } else if (!shut && off >= size) {
            shutdown(fd, SHUT_WR);
            shut = true;
        }
        uv_run(&h->loop, UV_RUN_NOWAIT);
        closed = drain(fd);
    }
    close(fd);
    /* Let the server see the reset and release the connection before the next input. */
    struct edge_http_stats st;
    for (int it = 0; it < DRAIN_ITERATIONS; it++) {
        uv_run(&h->loop, UV_RUN_NOWAIT);
        edge_http_server_stats(h->server, &st);
        if (st.connections_open == 0) {
            break;
        }
        struct pollfd none;
        (void)poll(&none, 0, 1);
    }
    return 0;
}
