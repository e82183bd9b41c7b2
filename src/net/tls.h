/* SPDX-License-Identifier: MIT */
/* TLS (OpenSSL 3, TLS 1.2 and later only) over memory buffers: the owner moves bytes
 * between its socket and the session, so one module serves the libuv server, the
 * libuv client pool and the blocking clients alike, and no OpenSSL call ever touches a
 * socket or blocks.
 *
 *   socket bytes in  -> edge_tls_feed -> edge_tls_read  -> plaintext
 *   plaintext        -> edge_tls_write -> edge_tls_out_take -> socket bytes out
 *
 * The handshake runs inside edge_tls_read / edge_tls_handshake; after every call the
 * owner sends what edge_tls_out_pending says is waiting (handshake records, alerts).
 * A context (certificate and key for a server, trusted CAs for a client) is shared by
 * any number of sessions on any threads; a session belongs to one thread. */
#ifndef EDGE_NET_TLS_H
#define EDGE_NET_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct edge_tls_ctx;
struct edge_tls;

/* A server context from PEM files: the certificate (chain) and its private key, which
 * must match. EDGE_OK, or EDGE_EIO / EDGE_EINVAL with the reason in err. */
int edge_tls_ctx_server_new(const char *cert_file, const char *key_file, struct edge_tls_ctx **out, char *err,
                            size_t err_len);
/* A client context that verifies servers against the CA certificates of ca_file (PEM);
 * NULL ca_file: the system's default CAs. EDGE_OK, or EDGE_EIO with the reason in err. */
int edge_tls_ctx_client_new(const char *ca_file, struct edge_tls_ctx **out, char *err, size_t err_len);
/* A client context: present this certificate (PEM chain and key) when a server asks
 * for one (a region proving itself to its peers). EDGE_OK, or EDGE_EIO / EDGE_EINVAL. */
int edge_tls_ctx_set_cert(struct edge_tls_ctx *ctx, const char *cert_file, const char *key_file, char *err,
                          size_t err_len);
/* A server context: ask every client for a certificate and verify one it sends against
 * the CAs of ca_file (a client that sends a bad one fails its handshake; one that sends
 * none is served, see edge_tls_peer_verified). EDGE_OK or EDGE_EIO with the reason. */
int edge_tls_ctx_verify_clients(struct edge_tls_ctx *ctx, const char *ca_file, char *err, size_t err_len);
/* Contexts are reference counted: every session holds one, so a context may be freed
 * by its owner while sessions still use it. NULL is ignored. */
void edge_tls_ctx_free(struct edge_tls_ctx *ctx);

/* A session. On a client context `peer_name` is the host the certificate must name
 * (an IP address literal is checked against the IP SANs, anything else against the DNS
 * names, and sent as SNI); on a server context it must be NULL. EDGE_OK, EDGE_ENOMEM
 * or EDGE_EINVAL. */
int edge_tls_new(struct edge_tls_ctx *ctx, const char *peer_name, struct edge_tls **out);
void edge_tls_free(struct edge_tls *t);

/* Bytes received from the socket. EDGE_OK or EDGE_ENOMEM. */
int edge_tls_feed(struct edge_tls *t, const void *data, size_t len);
/* Advance the handshake (a client's first call writes its hello). EDGE_OK once it is
 * complete, EDGE_EAGAIN while it needs more input, EDGE_EPROTO when it failed
 * (edge_tls_error says why: a bad certificate, not TLS at all, an old version...). */
int edge_tls_handshake(struct edge_tls *t);
bool edge_tls_established(const struct edge_tls *t);
/* The other side presented a certificate that verified (on a server: a client
 * certificate, with edge_tls_ctx_verify_clients). */
bool edge_tls_peer_verified(const struct edge_tls *t);
/* The verified peer certificate has a SAN for name: a DNS name, or (unless dns_only) an
 * IP address literal. False without a verified certificate. */
bool edge_tls_peer_names(const struct edge_tls *t, const char *name, bool dns_only);
/* Decrypted bytes, handshake included: EDGE_OK with *got > 0 bytes in buf, or *got 0
 * when more input is needed; EDGE_ECLOSED once the peer sent its close_notify;
 * EDGE_EPROTO on a TLS failure. Call until *got is 0: records already fed are only
 * delivered by these calls. */
int edge_tls_read(struct edge_tls *t, void *buf, size_t cap, size_t *got);
/* Encrypt plaintext for sending (the handshake must be complete). EDGE_OK, EDGE_EPROTO
 * or EDGE_ENOMEM. */
int edge_tls_write(struct edge_tls *t, const void *data, size_t len);
/* Queue a close_notify alert (to send, like any output). */
void edge_tls_shutdown(struct edge_tls *t);
/* Encrypted bytes waiting to be sent, and taking up to cap of them. */
size_t edge_tls_out_pending(const struct edge_tls *t);
size_t edge_tls_out_take(struct edge_tls *t, void *buf, size_t cap);
/* Why the last EDGE_EPROTO happened (static text or the session's own buffer). */
const char *edge_tls_error(const struct edge_tls *t);

/* For owners of a non-blocking socket that wait with poll() (the blocking clients,
 * tls_fd.c). `wait` blocks until fd has `events`, the deadline (monotonic ms) passes
 * (EDGE_ETIMEDOUT) or the owner stops (any other error); EDGE_OK means "try again". */
typedef int (*edge_tls_wait_fn)(void *ud, int fd, short events, int64_t deadline_ms);
/* Send every pending encrypted byte. EDGE_OK, EDGE_EIO or wait's error. */
int edge_tls_fd_flush(struct edge_tls *t, int fd, edge_tls_wait_fn wait, void *ud, int64_t deadline_ms);
/* Run the handshake to its end. EDGE_OK, EDGE_EPROTO (edge_tls_error says why: e.g. a
 * certificate not signed by a trusted CA, or not naming the host), EDGE_ECLOSED (the
 * server hung up), EDGE_EIO or wait's error. */
int edge_tls_fd_handshake(struct edge_tls *t, int fd, edge_tls_wait_fn wait, void *ud, int64_t deadline_ms);
/* One non-blocking read of the socket into the session: EDGE_OK (bytes fed: call
 * edge_tls_read until it gives 0), EDGE_EAGAIN (nothing yet), EDGE_ECLOSED (EOF),
 * EDGE_EIO. */
int edge_tls_fd_pull(struct edge_tls *t, int fd);

#endif
