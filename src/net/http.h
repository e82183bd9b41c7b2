/* SPDX-License-Identifier: MIT */
/* HTTP/1.1 server connections on a libuv loop (http-parser), with keep-alive,
 * pipelining (requests are answered strictly in order, one at a time) and an upgrade
 * path to WebSocket (RFC 6455, framing by wslay). Everything here runs on the loop
 * thread that owns the connection. */
#ifndef EDGE_NET_HTTP_H
#define EDGE_NET_HTTP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "core/buf.h"

struct edge_http_conn;

struct edge_http_header {
    char *name; /* lower-cased */
    char *value;
};

struct edge_http_req {
    int method;             /* enum http_method */
    char *path;             /* decoded path without query */
    char *query;            /* raw query string or NULL */
    struct edge_http_header *headers;
    size_t n_headers;
    struct edge_buf body;
    bool keep_alive;
    bool upgrade;           /* Connection: upgrade + Upgrade: websocket */
    uint64_t start_ns;      /* when the first byte arrived */
    struct edge_http_req *next; /* pipelined queue */
};

struct edge_http_limits {
    size_t max_body_bytes;     /* 413 above this */
    size_t max_header_bytes;   /* 431 above this (all headers together) */
    size_t max_queued;         /* pipelined requests buffered per connection */
    uint64_t idle_timeout_ms;  /* close an idle keep-alive connection */
    uint64_t request_timeout_ms; /* close a connection whose request stalls half-sent */
    size_t max_ws_message;     /* largest WebSocket message accepted */
    size_t max_ws_out_bytes;   /* unsent WebSocket output before the connection is closed with 1009; 0 = 64 MiB */
};

/* What the embedding layer provides. All callbacks run on the loop thread. */
struct edge_http_handler {
    void *ud;
    /* A complete request. Must eventually be answered with edge_http_respond (or the
     * connection upgraded) exactly once; the request stays valid until then. */
    void (*on_request)(void *ud, struct edge_http_conn *c, struct edge_http_req *req);
    /* A complete WebSocket message (text or binary) on an upgraded connection. */
    void (*on_ws_message)(void *ud, struct edge_http_conn *c, int opcode, const uint8_t *data, size_t len);
    /* The connection is going away (closed by either side); ws_ud is released here. */
    void (*on_close)(void *ud, struct edge_http_conn *c);
    /* Optional: a connection just accepted, as a socket of its own (fd). Returning true
     * gives the socket to the callee, which has another server adopt it
     * (edge_http_server_adopt); false keeps the connection here (the server closes fd). */
    bool (*on_accept)(void *ud, int fd);
    /* Optional: the server keeps its number of open connections here too, for other threads. */
    _Atomic long *n_conns;
};

struct edge_http_stats {
    uint64_t ws_output_closed; /* WebSocket connections closed for unsent output over max_ws_out_bytes */
    uint64_t connections_open;
    uint64_t connections_total;
    uint64_t bad_requests;
    uint64_t tls_failures;     /* connections closed for bad TLS input or a handshake not finished in time */
};

/* A listener on one loop. The caller owns `loop` and runs it. */
struct edge_http_server;

/* Start accepting on an already bound and listening socket fd (takes ownership).
 * Loop thread. EDGE_OK, EDGE_ENOMEM or EDGE_EIO. */
int edge_http_server_start(uv_loop_t *loop, int fd, const struct edge_http_limits *limits,
                           const struct edge_http_handler *h, struct edge_http_server **out);
/* Serve a connected socket (from another server's on_accept) as if accepted here; on
 * s's loop thread. Takes fd (closed on failure). EDGE_ECLOSED once s is stopping. */
int edge_http_server_adopt(struct edge_http_server *s, int fd);
/* Serve TLS on every connection accepted from now on (ctx: a server context of
 * net/tls.h, borrowed: it must outlive the server). Call before the loop runs.
 * EDGE_OK or EDGE_ENOMEM. */
struct edge_tls_ctx;
int edge_http_server_set_tls(struct edge_http_server *s, struct edge_tls_ctx *ctx);
/* Stop accepting and close every connection; `cb` runs when all handles are closed
 * (the server is freed before it runs). Loop thread. */
void edge_http_server_stop(struct edge_http_server *s, void (*cb)(void *arg), void *arg);
/* Graceful stop, first step: every answer from now on ends its connection ("Connection:
 * close" after the last queued request). Loop thread. Then, after a moment for requests
 * already on their way, call edge_http_server_close_idle (which closes the listener: no
 * new connections) until it says nothing is busy, and edge_http_server_stop. */
void edge_http_server_drain(struct edge_http_server *s);
/* While draining: close every connection found with nothing in flight at this call and
 * the one before (HTTP: no request queued or unanswered, nothing unsent; WebSocket:
 * nothing unsent and ws_busy, when given, says the session has no request open, then a
 * 1001 close). Returns how many connections are still open and not being closed. Peer links (own WebSocket handlers) are closed as idle: their peer resends
 * what was not acknowledged. Loop thread. */
size_t edge_http_server_close_idle(struct edge_http_server *s, bool (*ws_busy)(void *ud, struct edge_http_conn *c),
                                   void *ud);
/* Counters of this listener (any thread; copied). */
void edge_http_server_stats(struct edge_http_server *s, struct edge_http_stats *out);

/* Create a listening TCP socket bound to host:port (no SO_REUSEPORT: a port taken by
 * another socket is EDGE_EBUSY). Several loops share it through dup'd descriptors.
 * port 0 picks a free port: *out_port says which. */
int edge_http_listen_socket(const char *host, int port, int *out_fd, int *out_port);

/* Answer the current request. Copies body. extra_headers is NULL or a block of
 * "Name: value\r\n" lines. Loop thread. */
void edge_http_respond(struct edge_http_conn *c, int status, const char *content_type,
                       const char *extra_headers, const void *body, size_t len);
/* A streamed answer (Server-Sent Events): headers now (200, Connection: close, no
 * length), then any number of writes, then the end (the connection closes once the
 * output is sent). Loop thread. */
int edge_http_stream_begin(struct edge_http_conn *c, const char *content_type, const char *extra_headers);
int edge_http_stream_write(struct edge_http_conn *c, const void *data, size_t len);
void edge_http_stream_end(struct edge_http_conn *c);
/* Convenience: a JSON error body {"error":msg,"message":msg,"code":code}. */
void edge_http_respond_error(struct edge_http_conn *c, int status, const char *code, const char *msg);

/* The value of a request header (name lower-case) or NULL. */
const char *edge_http_header(const struct edge_http_req *req, const char *name);
/* Does the comma- (or space-) separated header value list (NULL: none) name token, exactly
 * (case-sensitive, as WebSocket subprotocols are, RFC 6455 section 4.1)? */
bool edge_http_list_has(const char *list, const char *token);

/* Upgrade the current request's connection to WebSocket, choosing `protocol` (may be
 * NULL). Sends 101. Returns EDGE_OK or EDGE_EPROTO if the request is not a valid
 * upgrade (then a 400 was already sent). */
int edge_http_ws_accept(struct edge_http_conn *c, const char *protocol);
/* Queue a WebSocket message (copied). opcode 1 = text, 2 = binary. EDGE_ECLOSED if
 * the connection is closing, or if this message would take its unsent output past
 * limits.max_ws_out_bytes: then a 1009 "output limit" close is queued instead and the
 * connection is dropped if the client has not read up to it within 10 s. */
int edge_http_ws_send(struct edge_http_conn *c, int opcode, const void *data, size_t len);
/* Messages are written at the end of the loop iteration, all of a connection's in one
 * write (net/ws.c). A sender whose message should not wait for the rest of a long
 * iteration (a peer link's acknowledgement: the sender's window) calls this right after
 * sending. What the socket takes then no longer counts as unsent. */
void edge_http_ws_flush(struct edge_http_conn *c);
/* Close a WebSocket with a status code and reason. */
void edge_http_ws_close(struct edge_http_conn *c, uint16_t code, const char *reason);

/* Per-connection user data for the embedding layer (e.g. the Hrana WS session). */
void edge_http_conn_set_ud(struct edge_http_conn *c, void *ud);
void *edge_http_conn_ud(struct edge_http_conn *c);
/* Send this upgraded connection's WebSocket messages and its close to other callbacks
 * than the server's (a session of another protocol, e.g. a peer link), with their own
 * ud. NULL callbacks restore the server's. */
void edge_http_conn_set_ws_handler(struct edge_http_conn *c,
                                   void (*on_ws_message)(void *ud, struct edge_http_conn *c, int opcode,
                                                         const uint8_t *data, size_t len),
                                   void (*on_close)(void *ud, struct edge_http_conn *c), void *ud);
/* Be told once when the connection closes (after on_close and any WebSocket on_close),
 * e.g. to drop a request parked until an event. One watcher per connection; NULL cb
 * removes it. Not called for a close that happened before the call (check
 * edge_http_conn_is_closed first). */
void edge_http_conn_watch_close(struct edge_http_conn *c, void (*cb)(void *ud, struct edge_http_conn *c), void *ud);
/* Take a reference so the connection memory outlives an asynchronous job; every ref
 * needs an unref. A closed connection ignores responses. */
void edge_http_conn_ref(struct edge_http_conn *c);
void edge_http_conn_unref(struct edge_http_conn *c);
bool edge_http_conn_is_closed(const struct edge_http_conn *c);
/* Over TLS, the client presented a certificate the server verified (net/tls.h,
 * edge_tls_ctx_verify_clients); false on a plain connection. */
bool edge_http_conn_peer_verified(const struct edge_http_conn *c);
/* edge_tls_peer_names of the connection's TLS peer; false on a plain connection. */
bool edge_http_conn_peer_names(const struct edge_http_conn *c, const char *name, bool dns_only);
/* Bytes written to the socket and not yet taken by the kernel, WebSocket frames of this
 * iteration not flushed yet included (a reader that does not keep up makes this grow).
 * Loop thread. */
size_t edge_http_conn_unsent(const struct edge_http_conn *c);

#endif
