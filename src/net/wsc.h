/* SPDX-License-Identifier: MIT */
/* A blocking WebSocket client (RFC 6455) for one thread: TCP connect, the client
 * handshake, masked frames out and unmasked frames in, binary messages only.
 *
 * DESIGN: the client side of WebSocket is small (masked frames out, unmasked frames in,
 * RFC 6455 §5), so it is written here rather than pulling libwslay into the client.
 * Every wait goes through poll() on {socket, wake pipe}, so the owner's stop is
 * noticed at once, even mid-connect: a byte on the wake pipe interrupts any wait, and
 * once *stop is set every call returns EDGE_ECLOSED. Errors are described in the
 * owner's err buffer. */
#ifndef EDGE_NET_WSC_H
#define EDGE_NET_WSC_H

#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"

struct edge_tls_ctx;
struct edge_tls;

struct edge_wsc {
    int fd;                   /* -1 when not connected */
    struct edge_tls_ctx *tls_ctx; /* edge_wsc_set_tls: connect with TLS (borrowed), else NULL */
    struct edge_tls *tls;     /* the connection's TLS session */
    int wake_fd;              /* read end of the owner's wake pipe (borrowed) */
    const atomic_bool *stop;  /* the owner's stop flag (borrowed) */
    size_t max_frame;         /* largest frame accepted */
    struct edge_buf rx;       /* bytes received, parsed from rx_off */
    size_t rx_off;
    struct edge_buf msg;      /* the message being reassembled; whole after edge_wsc_parse says so */
    bool in_frag;
    struct edge_buf tx;       /* masked frame being sent */
    char *err;                /* the owner's error text buffer (borrowed) */
    size_t err_len;
};

/* Set up w (not connected). max_frame bounds a frame and a message. */
void edge_wsc_init(struct edge_wsc *w, int wake_fd, const atomic_bool *stop, size_t max_frame, char *err,
                   size_t err_len);
/* Close the connection (if any) and free the buffers. */
void edge_wsc_free(struct edge_wsc *w);
/* Close the connection and forget what was received; w can connect again. */
void edge_wsc_close(struct edge_wsc *w);

/* Wait up to timeout_ms for events on the socket (none when events is 0) or a wake-up.
 * *out_ready gets the socket's revents (0 on timeout or wake). EDGE_ECLOSED once
 * stopping. */
int edge_wsc_wait(struct edge_wsc *w, short events, int timeout_ms, short *out_ready);
/* Interruptible sleep: only the stop flag cuts it short. */
int edge_wsc_sleep(struct edge_wsc *w, int ms);

/* Speak TLS on every later connection (wss://): the server's certificate must be signed
 * by a CA of ctx (a client context of net/tls.h, borrowed) and name the host given to
 * edge_wsc_connect. */
void edge_wsc_set_tls(struct edge_wsc *w, struct edge_tls_ctx *ctx);
/* Connect to host:port within timeout_ms (non-blocking socket, TCP_NODELAY), and with
 * TLS set, run the TLS handshake within the same time (EDGE_EPROTO when the server's
 * certificate is refused: the reason is in err). */
int edge_wsc_connect(struct edge_wsc *w, const char *host, const char *port, int timeout_ms);
/* The client handshake: GET path with Sec-WebSocket-Protocol: protocol and the extra
 * header lines ("Name: value\r\n"..., may be NULL); checks the 101 answer, its
 * Sec-WebSocket-Accept and its subprotocol. */
int edge_wsc_handshake(struct edge_wsc *w, const char *host, const char *port, const char *path,
                       const char *protocol, const char *extra_headers, int timeout_ms);
/* Send one masked frame (opcode 0x2 binary, 0xA pong...). */
int edge_wsc_send(struct edge_wsc *w, uint8_t opcode, const uint8_t *data, size_t len);
/* Read what is available after waiting up to timeout_ms. EDGE_OK also on timeout or
 * wake (nothing read); EDGE_ECLOSED on EOF or stop. */
int edge_wsc_recv(struct edge_wsc *w, int timeout_ms);
/* Parse frames from what was received until a whole binary message is in w->msg
 * (*out_have = true) or no complete frame is left. Pings are answered here; a close
 * frame ends with EDGE_ECLOSED; anything unexpected is EDGE_EPROTO. */
int edge_wsc_parse(struct edge_wsc *w, bool *out_have);

#endif
