/* SPDX-License-Identifier: MIT */
/* An asynchronous HTTP/1.1 client on a libuv loop: a small bounded pool of keep-alive
 * connections to one server (host:port), used by the node to forward strong writes to
 * the primary without holding a thread while the primary waits for its majority.
 * Everything runs on the loop thread that owns the pool.
 *
 * One request at a time per connection (no pipelining); requests beyond the pool's
 * connections queue in arrival order. Every request has its own deadline covering the
 * queue, the connect and the exchange, and its callback runs exactly once: with the
 * response (any status), or with an error. A request is never retried: it may not be
 * idempotent (a write), so a connection that fails mid-request fails that request. An
 * idle connection is closed before the server would close it (idle_ms), so a request
 * is never written onto a connection the server is about to drop. */
#ifndef EDGE_NET_HTTPC_ASYNC_H
#define EDGE_NET_HTTPC_ASYNC_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "net/httpc.h"

struct edge_httpca;

/* rv is EDGE_OK with *resp filled (the callee owns it: free it with edge_httpc_resp_free,
 * or leave it; the client frees it after the callback returns), or EDGE_EIO (connect or
 * IO failure, server closed early), EDGE_ECONNREFUSED (the connection could not be made: nothing of the
 * request reached the server, so it is safe to send elsewhere), EDGE_ETIMEDOUT, EDGE_EPROTO (malformed response),
 * EDGE_ETOOBIG (body over max_body), EDGE_ECLOSED (the pool was closed), EDGE_ENOMEM. */
typedef void (*edge_httpca_cb)(void *ud, int rv, struct edge_httpc_resp *resp);

/* A pool of at most max_conns connections to host (a numeric IPv4/IPv6 address or
 * "localhost") and port; idle connections close after idle_ms. Loop thread.
 * EDGE_EINVAL for a host that is not numeric. */
int edge_httpca_new(uv_loop_t *loop, const char *host, const char *port, int max_conns, uint64_t idle_ms,
                    struct edge_httpca **out);

/* Speak TLS on the pool's connections (an https:// server): the server's certificate
 * must be signed by a CA of ctx (a client context of net/tls.h, borrowed: it must
 * outlive the pool) and name `name` (the URL's host). Before the first request.
 * A connection whose handshake fails fails its request with EDGE_ECONNREFUSED (nothing
 * of it was sent) and logs why. EDGE_OK or EDGE_EINVAL (name too long). */
struct edge_tls_ctx;
int edge_httpca_set_tls(struct edge_httpca *p, struct edge_tls_ctx *ctx, const char *name);

/* Send method path with the extra headers (NULL or "Name: value\r\n" lines; Host,
 * Content-Length and, unless they name one, Content-Type: application/json are added)
 * and body (copied).
 * The callback runs later on the loop, never from inside this call. EDGE_OK, or
 * EDGE_ENOMEM / EDGE_ECLOSED (then cb never runs). */
int edge_httpca_request(struct edge_httpca *p, const char *method, const char *path, const char *extra_headers,
                        const void *body, size_t body_len, uint64_t timeout_ms, size_t max_body, edge_httpca_cb cb,
                        void *ud);

/* Fail every pending request with EDGE_ECLOSED (their callbacks run now), close the
 * connections and free the pool once its handles are closed. Loop thread. */
void edge_httpca_close(struct edge_httpca *p);

/* Counters (loop thread): connections open, requests in flight or queued. */
void edge_httpca_stats(const struct edge_httpca *p, int *conns, int *pending);

#endif
