/* SPDX-License-Identifier: MIT */
/* A small blocking HTTP/1.1 client for the command-line tools (shell, status).
 * One TCP connection per request ("Connection: close"): the tools send a handful of
 * requests per second at most, so connection reuse is not worth its state machine.
 * Everything is bounded: the connect and the whole exchange share one deadline, the
 * response head is capped at EDGE_HTTPC_MAX_HEAD and the body at a caller's cap. */
#ifndef EDGE_NET_HTTPC_H
#define EDGE_NET_HTTPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

#define EDGE_HTTPC_MAX_HEAD (64 * 1024)

struct edge_tls_ctx;

/* A parsed URL. libsql:// and ws:// are taken as http://, wss:// as https://, because
 * edgelite serves Hrana, WebSocket and status on one port (TLS or not). */
struct edge_httpc_url {
    char host[256]; /* without the [] of an IPv6 literal */
    char port[8];   /* decimal, "80" (or "443" with TLS) when absent */
    char path[512]; /* begins with '/', "/" when absent; no query string */
    bool tls;       /* https:// or wss:// */
    /* For tls: the client context (net/tls.h) the server's certificate is verified
     * against, borrowed; set by the caller after parsing. NULL: the system's CAs. */
    struct edge_tls_ctx *tls_ctx;
};

struct edge_httpc_resp {
    int status;             /* e.g. 200 */
    char content_type[128]; /* media type only, lower-cased; "" when absent */
    char bookmark[160];     /* X-Edge-Bookmark response header, "" when absent */
    struct edge_buf body;   /* de-chunked body, NUL-terminated; owned, see _free */
};

/* Parse url (borrowed) into *out. Accepts http://, libsql://, ws://, https:// and wss://
 * (case insensitive); rejects other schemes and malformed input with EDGE_EINVAL.
 * With TLS, requests verify the server's certificate and its name (host). */
int edge_httpc_url_parse(const char *url, struct edge_httpc_url *out);

/* Resolve rel (e.g. "v2/pipeline") against the URL's path the way a browser resolves
 * a relative reference: "/db/" gives "/db/v2/pipeline", "/db" gives "/v2/pipeline".
 * Writes at most out_size bytes; EDGE_ETOOBIG if it does not fit. */
int edge_httpc_url_resolve(const struct edge_httpc_url *u, const char *rel, char *out,
                           size_t out_size);

/* Perform one request and wait for the whole response. method and path are borrowed;
 * token (may be NULL) is sent as "Authorization: Bearer"; body (may be NULL) is sent
 * with Content-Length and content type application/json. timeout_ms bounds connect
 * plus the exchange; max_body caps the decoded body. On EDGE_OK *out holds the
 * response (any status code) and must be released with edge_httpc_resp_free.
 * Errors: EDGE_EIO (resolve/connect/IO failure, peer closed early), EDGE_ETIMEDOUT,
 * EDGE_EPROTO (malformed response), EDGE_ETOOBIG, EDGE_ENOMEM, EDGE_EINVAL. On error
 * *out is left empty (safe to free). */
int edge_httpc_request(const struct edge_httpc_url *u, const char *method, const char *path,
                       const char *token, const char *body, size_t body_len, int timeout_ms,
                       size_t max_body, struct edge_httpc_resp *out);

/* Parse a complete or partial response held in raw[0..len). eof says the peer has
 * closed, which ends a body that has neither Content-Length nor chunked encoding.
 * EDGE_OK fills *out (caller frees with edge_httpc_resp_free); EDGE_EAGAIN means more
 * bytes are needed; EDGE_EPROTO, EDGE_ETOOBIG, EDGE_ENOMEM otherwise. Pure function,
 * exposed for tests. */
/* Same, with extra request headers: NULL or a block of "Name: value\r\n" lines. */
int edge_httpc_request_ex(const struct edge_httpc_url *u, const char *method, const char *path,
                          const char *token, const char *extra_headers, const char *body, size_t body_len,
                          int timeout_ms, size_t max_body, struct edge_httpc_resp *out);
int edge_httpc_parse_response(const char *raw, size_t len, int eof, size_t max_body,
                              struct edge_httpc_resp *out);

/* GET path and write the response body, as it arrives, to fd: for bodies larger than
 * memory should hold (a snapshot). Only identity bodies (Content-Length, or ending at
 * close; chunked is EDGE_EPROTO). head_timeout_ms bounds connect plus the response head,
 * idle_ms each later wait for bytes, so a long transfer that keeps moving never times
 * out. max_bytes caps the body (EDGE_ETOOBIG). On EDGE_OK (any status): *out_status,
 * head (the response head, NUL-terminated, cut to head_size) and *out_len (bytes written
 * to fd). Memory: one EDGE_HTTPC_MAX_HEAD buffer, whatever the body's size. */
int edge_httpc_get_to_fd(const struct edge_httpc_url *u, const char *path, const char *extra_headers,
                         int head_timeout_ms, int idle_ms, uint64_t max_bytes, int fd, int *out_status,
                         char *head, size_t head_size, uint64_t *out_len);
/* The value of header `name` in a head returned by edge_httpc_get_to_fd, copied into out:
 * EDGE_OK, EDGE_ENOTFOUND, EDGE_ETOOBIG. */
int edge_httpc_head_value(const char *head, const char *name, char *out, size_t out_size);

/* Release a response's body; the struct may be reused. */
void edge_httpc_resp_free(struct edge_httpc_resp *r);

/* The node URL the CLI tools use: arg when not NULL, else $EDGE_URL, else $TURSO_URL,
 * else "http://127.0.0.1:8080". Borrowed (argv, environment or static storage). */
const char *edge_httpc_default_url(const char *arg);
/* The bearer token: arg when not NULL, else $EDGE_AUTH_TOKEN, else $TURSO_AUTH_TOKEN,
 * else NULL. Borrowed. */
const char *edge_httpc_default_token(const char *arg);

#endif
