/* SPDX-License-Identifier: MIT */
/* TLS sessions (tls.c) on a non-blocking socket for owners that wait with poll(): the
 * blocking HTTP client (httpc.c) and the peer links' WebSocket client (wsc.c). The
 * session stays socket-free; this file only moves its bytes, waiting through the
 * owner's function so the owner's deadline and stop flag keep working. */
#include <errno.h>
#include <poll.h>
#include <sys/socket.h>

#include "core/err.h"
#include "net/tls.h"

#define PULL_CHUNK 16384

int edge_tls_fd_flush(struct edge_tls *t, int fd, edge_tls_wait_fn wait, void *ud, int64_t deadline_ms)
{
    char buf[PULL_CHUNK];
    size_t len = 0, off = 0;
    /* Each pass sends something or waits; the owner's deadline bounds the waits. */
    for (;;) {
        if (off == len) {
            len = edge_tls_out_take(t, buf, sizeof(buf));
            off = 0;
            if (len == 0) return EDGE_OK;
        }
        ssize_t n = send(fd, buf + off, len - off, MSG_NOSIGNAL);
        if (n > 0) {
            off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return EDGE_EIO;
        int rv = wait(ud, fd, POLLOUT, deadline_ms);
        if (rv != EDGE_OK) return rv;
    }
}

int edge_tls_fd_pull(struct edge_tls *t, int fd)
{
    char buf[PULL_CHUNK];
    for (;;) {
        ssize_t n = recv(fd, buf, sizeof(buf), 0);
        if (n > 0) return edge_tls_feed(t, buf, (size_t)n) == EDGE_OK ? EDGE_OK : EDGE_ENOMEM;
        if (n == 0) return EDGE_ECLOSED;
        if (errno == EINTR) continue;
        return errno == EAGAIN || errno == EWOULDBLOCK ? EDGE_EAGAIN : EDGE_EIO;
    }
}

int edge_tls_fd_handshake(struct edge_tls *t, int fd, edge_tls_wait_fn wait, void *ud, int64_t deadline_ms)
{
    /* A handshake is a few flights: 64 passes are plenty, the deadline bounds the time. */
    for (int pass = 0; pass < 64; pass++) {
        int hs = edge_tls_handshake(t);
        int rv = edge_tls_fd_flush(t, fd, wait, ud, deadline_ms);
        if (hs == EDGE_EPROTO) return EDGE_EPROTO;
        if (rv != EDGE_OK) return rv;
        if (hs == EDGE_OK) return EDGE_OK;
        for (;;) {
            rv = edge_tls_fd_pull(t, fd);
            if (rv == EDGE_OK) break;
            if (rv != EDGE_EAGAIN) return rv;
            rv = wait(ud, fd, POLLIN, deadline_ms);
            if (rv != EDGE_OK) return rv;
        }
    }
    return EDGE_EPROTO;
}
