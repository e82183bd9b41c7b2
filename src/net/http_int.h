/* SPDX-License-Identifier: MIT */
/* Internals shared by the HTTP server's files: http.c (connections, reading, writing,
 * answers, the listener), http_parse.c (HTTP/1.1 request framing through http-parser)
 * and ws.c (WebSocket framing through wslay, after an upgrade). */
#ifndef EDGE_NET_HTTP_INT_H
#define EDGE_NET_HTTP_INT_H

#include <http_parser.h>
#include <stdatomic.h>
#include <wslay/wslay.h>

#include "net/http.h"
#include "net/tls.h"

#define READ_BUF_SIZE (64 * 1024)
#define WS_MAX_OUT_BYTES (64u * 1024 * 1024) /* when limits.max_ws_out_bytes is 0 */
/* After a 1009 close for too much unsent output: how long the client gets to read up
 * to the close frame before the connection is dropped. */
#define WS_OUTPUT_CLOSE_GRACE_MS 10000
/* Answers waiting in the socket's send queue before the next request is handled: a
 * client that pipelines requests but never reads cannot make the server buffer more. */
#define HTTP_MAX_OUT_BYTES (8u * 1024 * 1024)
/* Longest a TLS handshake may take from the accept (see tls_handshake_ms). */
#define TLS_HANDSHAKE_MS 10000

struct edge_http_server {
    uv_tcp_t listener;
    uv_loop_t *loop;
    struct edge_http_limits limits;
    struct edge_http_handler h;
    struct edge_http_conn *conns; /* doubly linked list of live connections */
    _Atomic uint64_t connections_open, connections_total, bad_requests; /* read by other threads */
    _Atomic uint64_t ws_output_closed;       /* WebSocket connections closed for too much unsent output */
    uint64_t ws_output_logged_ms;            /* last log line about it (loop time), 0 = never */
    uint64_t ws_output_unlogged;             /* such closes since that line */
    char read_buf[READ_BUF_SIZE]; /* shared: data is consumed synchronously in read_cb */
    /* TLS (edge_http_server_set_tls): every connection's bytes go through a session of
     * this context; NULL for plain TCP. tls_buf holds the plaintext of one read. */
    struct edge_tls_ctx *tls;
    char *tls_buf;
    _Atomic uint64_t tls_failures;  /* connections closed for bad TLS input or a stalled handshake */
    uint64_t tls_logged_ms;          /* last log line about it (loop time), 0 = never */
    uint64_t tls_unlogged;           /* such closes since that line */
    bool read_buf_busy;
    bool stopping;
    bool draining;         /* edge_http_server_drain: answer what is in flight, accept nothing */
    bool listener_closing; /* uv_close called on the listener (by drain or stop) */
    bool listener_closed;  /* its close callback ran */
    int pending_closes; /* listener + connections still closing during stop */
    void (*stop_cb)(void *arg);
    void *stop_arg;
};

struct write_req {
    uv_write_t req;
    struct edge_http_conn *c;
    size_t len;
    char data[];
};

struct edge_http_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    struct edge_http_server *s;
    struct edge_http_conn *prev, *next;
    http_parser parser;
    struct edge_tls *tls;          /* the TLS session of a TLS server, else NULL */
    uint64_t accepted_ms;          /* loop time of the accept: the handshake's deadline counts from it */
    bool upgrade_held;             /* an upgrade request paused the parser: later input is kept in ws_pending */
    struct edge_http_req *cur;     /* being parsed */
    struct edge_buf url;           /* raw URL of cur */
    struct edge_buf hname, hval;   /* header being parsed */
    size_t header_bytes;
    bool in_value;
    uint64_t cur_start_ms;         /* when the request being parsed began (loop time) */
    bool reparse;                  /* a non-WebSocket Upgrade stopped the parser: restart it */
    int fail_status;               /* why a parser callback refused the request (413/431), 0 = malformed */
    struct edge_http_req *q_head, *q_tail; /* complete requests, head is in flight */
    size_t q_len;
    bool in_flight;                /* q_head was handed to the handler */
    bool dispatching;
    bool reading;
    bool closing;                  /* uv_close called or about to be */
    bool handed_off;               /* accepted here, served by another loop's server (on_accept) */
    bool close_after_write;        /* finish once the outbound queue is flushed */
    bool lingering;                /* answer sent: write side shut, discarding input until EOF */
    uv_shutdown_t shutdown_req;
    bool dead;                     /* no more input accepted */
    bool drain_closed;             /* WebSocket: told to go away by a draining server */
    int drain_idle;                /* consecutive edge_http_server_close_idle calls that saw it idle */
    int handles_open;
    int refs;
    uint64_t last_activity_ms;
    size_t out_bytes;              /* queued in uv_write */
    void *ud;
    /* Per-connection WebSocket callbacks (edge_http_conn_set_ws_handler), else the server's */
    void (*ws_on_message)(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len);
    void (*ws_on_close)(void *ud, struct edge_http_conn *c);
    void *ws_ud;
    /* One watcher of the close (edge_http_conn_watch_close), told after the handlers */
    void (*close_watch)(void *ud, struct edge_http_conn *c);
    void *close_watch_ud;
    /* WebSocket mode */
    wslay_event_context_ptr ws;
    const uint8_t *ws_in;          /* input being fed to wslay */
    size_t ws_in_len;
    struct edge_buf ws_pending;    /* bytes that arrived with the upgrade request */
    /* Frames wslay produced this loop iteration, written at once by ws_out_prep just before
     * the loop polls: one write per connection and iteration instead of two per message
     * (wslay hands over each frame's header and payload apart). ws_out_on: the prepare
     * handle was initialised (at the upgrade), so the connection has three handles. */
    struct edge_buf ws_out;
    uv_prepare_t ws_out_prep;
    bool ws_out_on;
};

/* http_parse.c */
extern const http_parser_settings edge__http_parser_settings;
void edge__http_req_free(struct edge_http_req *r);

/* http.c */
void edge__http_conn_close(struct edge_http_conn *c);
/* Close the connection in `ms` unless it closes earlier. */
void edge__http_conn_close_in(struct edge_http_conn *c, uint64_t ms);
/* Queue a then b (b may be NULL) for writing. */
int edge__http_conn_write(struct edge_http_conn *c, const void *a, size_t alen, const void *b, size_t blen);
/* The same, written at once when the socket takes it (http.c says when that is allowed). */
int edge__http_conn_write_now(struct edge_http_conn *c, const char *a, size_t alen, const char *b, size_t blen);
void edge__http_resume_reading(struct edge_http_conn *c);
/* (Re)start the connection's timer for its current state (handshake, request, idle). */
void edge__http_arm_timer(struct edge_http_conn *c);
/* The request at the head of the queue is answered (or upgraded): drop it. */
void edge__http_req_done(struct edge_http_conn *c);

/* ws.c: bytes read on an upgraded connection */
void edge__http_ws_feed(struct edge_http_conn *c, const uint8_t *data, size_t len);
/* Write the frames gathered this iteration now (before a close, at the prepare phase). */
void edge__http_ws_out_flush(struct edge_http_conn *c);

#endif
