/* SPDX-License-Identifier: MIT */
/* WebSocket framing on an upgraded server connection: wslay does the RFC 6455 framing,
 * masking checks, control frames and the close handshake; messages go to the
 * connection's handler (edge_http_conn_set_ws_handler) or the server's. */
#include "net/http_int.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "core/err.h"
#include "core/log.h"
#include "core/sha1.h"

/* ---------------------------------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *buf, size_t len, int flags, void *ud)
{
    (void)ctx;
    (void)flags;
    struct edge_http_conn *c = ud;
    if (c->ws_in_len == 0) {
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    size_t n = len < c->ws_in_len ? len : c->ws_in_len;
    memcpy(buf, c->ws_in, n);
    c->ws_in += n;
    c->ws_in_len -= n;
    return (ssize_t)n;
}

static void ws_out_prep(uv_prepare_t *h) { edge__http_ws_out_flush(h->data); }

void edge__http_ws_out_flush(struct edge_http_conn *c)
{
    uv_prepare_stop(&c->ws_out_prep);
    if (c->ws_out.len == 0 || c->closing) return;
    /* taken first: a failed write closes the connection, which flushes again */
    struct edge_buf out = c->ws_out;
    edge_buf_init(&c->ws_out, out.max);
    (void)edge__http_conn_write_now(c, out.data, out.len, NULL, 0);
    /* freed each time: an idle subscriber keeps no output memory */
    edge_buf_free(&out);
}

/* Frames are gathered, not written: the prepare phase (just before the loop blocks) writes
 * what this iteration produced, after every callback that could add to it (reads, the
 * node's answers from its threads, other connections' messages relayed by the door). */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *ud)
{
    (void)flags;
    struct edge_http_conn *c = ud;
    if (c->closing || edge_buf_append(&c->ws_out, data, len) != EDGE_OK) {
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
    if (!uv_is_active((uv_handle_t *)&c->ws_out_prep)) uv_prepare_start(&c->ws_out_prep, ws_out_prep);
    return (ssize_t)len;
}

static void ws_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *ud)
{
    struct edge_http_conn *c = ud;
    /* After our close (e.g. for the output limit) nothing more is run: its answer could
     * not be sent. */
    if (wslay_event_get_close_sent(ctx)) {
        return;
    }
    if (arg->opcode == WSLAY_TEXT_FRAME || arg->opcode == WSLAY_BINARY_FRAME) {
        if (c->ws_on_message != NULL) {
            c->ws_on_message(c->ws_ud, c, arg->opcode, arg->msg, arg->msg_length);
        } else {
            c->s->h.on_ws_message(c->s->h.ud, c, arg->opcode, arg->msg, arg->msg_length);
        }
    }
}

static void ws_flush(struct edge_http_conn *c)
{
    if (c->closing || c->ws == NULL) {
        return;
    }
    if (wslay_event_want_write(c->ws) && wslay_event_send(c->ws) != 0) {
        edge__http_conn_close(c);
        return;
    }
    if (!wslay_event_want_read(c->ws) && !wslay_event_want_write(c->ws)) {
        /* Close handshake done (or failed): let the writes drain, then close. */
        edge__http_ws_out_flush(c);
        if (c->closing) return;
        c->close_after_write = true;
        if (c->out_bytes == 0) {
            edge__http_conn_close(c);
        }
    }
}

void edge__http_ws_feed(struct edge_http_conn *c, const uint8_t *data, size_t len)
{
    c->ws_in = data;
    c->ws_in_len = len;
    int wrc = wslay_event_recv(c->ws);
    if (wrc != 0) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_NET, "ws: protocol error, closing");
        edge__http_conn_close(c);
        return;
    }
    c->ws_in = NULL;
    c->ws_in_len = 0;
    ws_flush(c);
}

int edge_http_ws_accept(struct edge_http_conn *c, const char *protocol)
{
    /* a closing connection would get a prepare handle nobody closes (and never be freed) */
    if (c->closing) return EDGE_ECLOSED;
    struct edge_http_req *r = c->q_head;
    const char *key = edge_http_header(r, "sec-websocket-key");
    const char *ver = edge_http_header(r, "sec-websocket-version");
    const char *up = edge_http_header(r, "upgrade");
    if (r->method != HTTP_GET || key == NULL || ver == NULL || strcmp(ver, "13") != 0 || up == NULL ||
        strcasecmp(up, "websocket") != 0 || strlen(key) > 64) {
        edge_http_respond_error(c, 400, "WS_HANDSHAKE_INVALID", "invalid WebSocket handshake");
        return EDGE_EPROTO;
    }
    char cat[128];
    int n = snprintf(cat, sizeof(cat), "%s258EAFA5-E914-47DA-95CA-C5AB0DC85B11", key);
    uint8_t digest[20];
    edge__sha1((const uint8_t *)cat, (size_t)n, digest);
    struct edge_buf acc;
    edge_buf_init(&acc, 64);
    edge_buf_base64(&acc, digest, 20);
    char head[512];
    int hlen = snprintf(head, sizeof(head),
                        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                        "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
                        acc.data ? acc.data : "", protocol ? "Sec-WebSocket-Protocol: " : "",
                        protocol ? protocol : "", protocol ? "\r\n" : "");
    edge_buf_free(&acc);
    struct wslay_event_callbacks cbs = {ws_recv_cb, ws_send_cb, NULL, NULL, NULL, NULL, ws_msg_cb};
    if (wslay_event_context_server_init(&c->ws, &cbs, c) != 0) {
        c->ws = NULL;
        edge_http_respond_error(c, 500, "INTERNAL", "out of memory");
        return EDGE_ENOMEM;
    }
    wslay_event_config_set_max_recv_msg_length(c->ws, c->s->limits.max_ws_message);
    edge_buf_init(&c->ws_out, SIZE_MAX);
    uv_prepare_init(c->tcp.loop, &c->ws_out_prep);
    c->ws_out_prep.data = c;
    c->ws_out_on = true;
    c->handles_open++;
    edge__http_conn_write(c, head, (size_t)hlen, NULL, 0);
    /* The upgrade request is consumed; the connection now belongs to the WS session. */
    edge__http_req_done(c);
    edge__http_resume_reading(c);
    if (c->ws_pending.len > 0) {
        struct edge_buf pend = c->ws_pending;
        edge_buf_init(&c->ws_pending, 0);
        edge__http_ws_feed(c, (const uint8_t *)pend.data, pend.len);
        edge_buf_free(&pend);
    }
    return EDGE_OK;
}

/* The client does not read what it asked for: dropping the answer would leave it
 * waiting forever, buffering it would let one client take the node's memory. Close with
 * 1009 and a reason instead (queued behind the unsent output, so a client that reads
 * again sees every answer before it), and drop the connection if it still does not
 * read within the grace period. */
static void output_limit_close(struct edge_http_conn *c, size_t limit)
{
    struct edge_http_server *s = c->s;
    atomic_fetch_add(&s->ws_output_closed, 1);
    s->ws_output_unlogged++;
    uint64_t now = uv_now(c->tcp.loop);
    if (s->ws_output_logged_ms == 0 || now - s->ws_output_logged_ms >= 10000) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_NET,
                 "ws: %llu connection(s) closed with 1009 since the last report: unsent output over "
                 "limits.ws_output_bytes (%zu bytes); the client is not reading",
                 (unsigned long long)s->ws_output_unlogged, limit);
        s->ws_output_logged_ms = now;
        s->ws_output_unlogged = 0;
    }
    static const char reason[] = "output limit";
    wslay_event_queue_close(c->ws, 1009, (const uint8_t *)reason, sizeof(reason) - 1);
    ws_flush(c);
    edge__http_conn_close_in(c, WS_OUTPUT_CLOSE_GRACE_MS);
}

int edge_http_ws_send(struct edge_http_conn *c, int opcode, const void *data, size_t len)
{
    if (c->closing || c->ws == NULL) {
        return EDGE_ECLOSED;
    }
    size_t limit = c->s->limits.max_ws_out_bytes ? c->s->limits.max_ws_out_bytes : WS_MAX_OUT_BYTES;
    if (wslay_event_get_close_sent(c->ws)) {
        return EDGE_ECLOSED;
    }
    /* One answer larger than the limit onto an empty queue still goes out: the limit is
     * on what piles up unread, and the answer's memory is spent already. */
    size_t unsent = edge_http_conn_unsent(c);
    if (unsent > 0 && unsent + len > limit) {
        output_limit_close(c, limit);
        return EDGE_ECLOSED;
    }
    struct wslay_event_msg msg = {(uint8_t)opcode, data, len};
    if (wslay_event_queue_msg(c->ws, &msg) != 0) {
        return EDGE_ECLOSED;
    }
    ws_flush(c);
    return EDGE_OK;
}

void edge_http_ws_flush(struct edge_http_conn *c)
{
    if (c->ws_out_on) edge__http_ws_out_flush(c);
}

void edge_http_ws_close(struct edge_http_conn *c, uint16_t code, const char *reason)
{
    if (c->closing || c->ws == NULL) {
        return;
    }
    wslay_event_queue_close(c->ws, code, (const uint8_t *)reason, reason ? strlen(reason) : 0);
    ws_flush(c);
}
