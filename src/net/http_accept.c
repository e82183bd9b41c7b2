/* SPDX-License-Identifier: MIT */
/* The HTTP server's side of accepting: the listening socket, a server on a loop, each
 * accepted connection offered to the handler's on_accept (another loop may serve it,
 * docs/internals/net.md) and the sockets handed over adopted. The connection's I/O is
 * http.c. */
#include "net/http_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/alloc.h"
#include "core/err.h"

/* A connection of server s, counted and linked, its handles initialised (2 open). */
static struct edge_http_conn *conn_new(struct edge_http_server *s)
{
    struct edge_http_conn *c = edge_calloc(1, sizeof(*c));
    if (c == NULL) {
        return NULL;
    }
    c->s = s;
    c->refs = 1;
    edge_buf_init(&c->url, s->limits.max_header_bytes);
    edge_buf_init(&c->hname, s->limits.max_header_bytes);
    edge_buf_init(&c->hval, s->limits.max_header_bytes);
    edge_buf_init(&c->ws_pending, 1 << 20);
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns != NULL) {
        s->conns->prev = c;
    }
    s->conns = c;
    s->connections_open++;
    if (s->h.n_conns != NULL) atomic_fetch_add(s->h.n_conns, 1);
    return c;
}

/* The connection's socket is in c->tcp: start reading its first request. */
static void conn_begin(struct edge_http_conn *c)
{
    struct edge_http_server *s = c->s;
    s->connections_total++; /* here, not at the accept: a connection handed on is counted by its server */
    uv_tcp_nodelay(&c->tcp, 1);
    if (s->tls != NULL && edge_tls_new(s->tls, NULL, &c->tls) != EDGE_OK) {
        edge__http_conn_close(c);
        return;
    }
    http_parser_init(&c->parser, HTTP_REQUEST);
    c->parser.data = c;
    c->last_activity_ms = uv_now(s->loop);
    c->accepted_ms = c->last_activity_ms;
    edge__http_arm_timer(c);
    edge__http_resume_reading(c);
}

/* Offer the connection to the handler's on_accept: true when another loop's server took
 * it (c is closing then). */
static bool offer_conn(struct edge_http_server *s, struct edge_http_conn *c)
{
    uv_os_fd_t fd;
    if (s->h.on_accept == NULL || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0) return false;
    int dfd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dfd < 0) return false;
    if (!s->h.on_accept(s->h.ud, dfd)) {
        close(dfd);
        return false;
    }
    /* c's close only releases this handle on the socket. Uncounted at once, so that the
     * next accept's choice does not count it. */
    if (s->h.n_conns != NULL) atomic_fetch_sub(s->h.n_conns, 1);
    c->handed_off = true;
    edge__http_conn_close(c);
    return true;
}

static void on_connection(uv_stream_t *server, int status)
{
    struct edge_http_server *s = server->data;
    if (status != 0 || s->stopping) {
        return;
    }
    struct edge_http_conn *c = conn_new(s);
    if (c == NULL) {
        return;
    }
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        s->connections_total++;
        edge__http_conn_close(c);
        return;
    }
    if (offer_conn(s, c)) return;
    conn_begin(c);
}

int edge_http_server_adopt(struct edge_http_server *s, int fd)
{
    if (s->stopping) {
        close(fd);
        return EDGE_ECLOSED;
    }
    struct edge_http_conn *c = conn_new(s);
    if (c == NULL) {
        close(fd);
        return EDGE_ENOMEM;
    }
    if (uv_tcp_open(&c->tcp, fd) != 0) {
        close(fd);
        edge__http_conn_close(c);
        return EDGE_EIO;
    }
    conn_begin(c);
    return EDGE_OK;
}

int edge_http_listen_socket(const char *host, int port, int *out_fd, int *out_port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof(addr));
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        return EDGE_EINVAL;
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        return edge__err_from_errno(errno);
    }
    int one = 1;
    /* SO_REUSEADDR only lets a restart bind over connections in TIME_WAIT; no
     * SO_REUSEPORT, so a second process cannot bind the port and take half the
     * requests. The node's loops share this one socket (node.c). */
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) != 0 || listen(fd, 1024) != 0) {
        int e = errno;
        close(fd);
        return e == EADDRINUSE ? EDGE_EBUSY : edge__err_from_errno(e);
    }
    socklen_t alen = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &alen);
    *out_fd = fd;
    if (out_port != NULL) {
        *out_port = ntohs(addr.sin_port);
    }
    return EDGE_OK;
}

int edge_http_server_start(uv_loop_t *loop, int fd, const struct edge_http_limits *limits,
                           const struct edge_http_handler *h, struct edge_http_server **out)
{

    struct edge_http_server *s = edge_calloc(1, sizeof(*s));
    if (s == NULL) {
        close(fd);
        return EDGE_ENOMEM;
    }
    s->loop = loop;
    s->limits = *limits;
    s->h = *h;
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    if (uv_tcp_open(&s->listener, fd) != 0 ||
        uv_listen((uv_stream_t *)&s->listener, 1024, on_connection) != 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        /* The handle is freed on the next loop turn; the caller will not run the loop
         * for this server, so keep it simple: leak-free only after uv_run. */
        return EDGE_EIO;
    }
    *out = s;
    return EDGE_OK;
}
