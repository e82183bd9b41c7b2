/* SPDX-License-Identifier: MIT */
/* Blocking HTTP/1.1 client for the CLI tools; see httpc.h for the contract.
 *
 * DESIGN: the socket is non-blocking and every wait goes through poll() with the time
 * left until one deadline, so a stalled peer can never hold the shell longer than the
 * timeout. Received bytes accumulate in one capped buffer; after each read a cheap
 * framing scan (no copying) decides whether the response is complete, and only then
 * is the body decoded. The scan walks chunk headers rather than data, so a large
 * chunked body costs O(chunks) per read, not O(bytes). */
#include "net/httpc.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/alloc.h"
#include "edgelite/errors.h"
#include "net/tls.h"

/* ---- URLs ---- */

int edge_httpc_url_parse(const char *url, struct edge_httpc_url *out)
{
    static const char *const schemes[] = {"http://", "libsql://", "ws://", "https://", "wss://"};
    const char *p = NULL;
    const char *host_end;
    const char *hp_end;
    size_t n;

    memset(out, 0, sizeof(*out));
    if (url == NULL) return EDGE_EINVAL;
    for (size_t i = 0; i < sizeof(schemes) / sizeof(schemes[0]); i++) {
        size_t sl = strlen(schemes[i]);
        if (strncasecmp(url, schemes[i], sl) == 0) {
            p = url + sl;
            out->tls = i >= 3;
            break;
        }
    }
    if (p == NULL) return EDGE_EINVAL;
    hp_end = p + strcspn(p, "/?#");
    if (*p == '[') {
        host_end = memchr(p, ']', (size_t)(hp_end - p));
        if (host_end == NULL) return EDGE_EINVAL;
        n = (size_t)(host_end - p - 1);
        if (n == 0 || n >= sizeof(out->host)) return EDGE_EINVAL;
        memcpy(out->host, p + 1, n);
        host_end++;
        if (host_end != hp_end && *host_end != ':') return EDGE_EINVAL;
    } else {
        host_end = memchr(p, ':', (size_t)(hp_end - p));
        if (host_end == NULL) host_end = hp_end;
        n = (size_t)(host_end - p);
        if (n == 0 || n >= sizeof(out->host)) return EDGE_EINVAL;
        memcpy(out->host, p, n);
    }
    if (strchr(out->host, '@') != NULL) return EDGE_EINVAL; /* userinfo: unsupported */
    if (host_end < hp_end) { /* ":port" */
        const char *d = host_end + 1;
        n = (size_t)(hp_end - d);
        if (n == 0 || n > 5) return EDGE_EINVAL;
        for (size_t i = 0; i < n; i++) {
            if (!isdigit((unsigned char)d[i])) return EDGE_EINVAL;
        }
        memcpy(out->port, d, n);
        long port = strtol(out->port, NULL, 10);
        if (port < 1 || port > 65535) return EDGE_EINVAL;
    } else {
        memcpy(out->port, out->tls ? "443" : "80", out->tls ? 4 : 3);
    }
    if (*hp_end == '/') {
        n = strcspn(hp_end, "?#");
        if (n >= sizeof(out->path)) return EDGE_EINVAL;
        memcpy(out->path, hp_end, n);
    } else {
        out->path[0] = '/';
    }
    return EDGE_OK;
}

int edge_httpc_url_resolve(const struct edge_httpc_url *u, const char *rel, char *out,
                           size_t out_size)
{
    /* Everything up to and including the last '/' is the "directory" of the URL. */
    const char *slash = strrchr(u->path, '/');
    size_t dir_len = slash != NULL ? (size_t)(slash - u->path) + 1 : 0;
    size_t rel_len = strlen(rel);

    if (dir_len == 0) {
        if (out_size < rel_len + 2) return EDGE_ETOOBIG;
        out[0] = '/';
        memcpy(out + 1, rel, rel_len + 1);
        return EDGE_OK;
    }
    if (out_size < dir_len + rel_len + 1) return EDGE_ETOOBIG;
    memcpy(out, u->path, dir_len);
    memcpy(out + dir_len, rel, rel_len + 1);
    return EDGE_OK;
}

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

const char *edge_httpc_default_url(const char *arg)
{
    const char *v;

    if (arg != NULL) return arg;
    v = env_nonempty("EDGE_URL");
    if (v == NULL) v = env_nonempty("TURSO_URL");
    return v != NULL ? v : "http://127.0.0.1:8080";
}

const char *edge_httpc_default_token(const char *arg)
{
    const char *v;

    if (arg != NULL) return arg;
    v = env_nonempty("EDGE_AUTH_TOKEN");
    return v != NULL ? v : env_nonempty("TURSO_AUTH_TOKEN");
}

/* ---- response framing ---- */

enum framing { FRAME_NONE, FRAME_LENGTH, FRAME_CHUNKED, FRAME_EOF };

struct frame {
    int status;
    size_t head_len;   /* bytes up to and including the blank line */
    enum framing kind;
    size_t content_length;
    char content_type[128];
    char bookmark[160];
};

static const char *find_crlfcrlf(const char *p, size_t len)
{
    for (size_t i = 0; i + 3 < len; i++) {
        if (p[i] == '\r' && p[i + 1] == '\n' && p[i + 2] == '\r' && p[i + 3] == '\n') {
            return p + i;
        }
    }
    return NULL;
}

static int header_is(const char *line, size_t name_len, const char *name)
{
    return strlen(name) == name_len && strncasecmp(line, name, name_len) == 0;
}

/* Parse the head at raw[0..len): status line and the headers we care about. */
static int parse_head(const char *raw, size_t len, int eof, struct frame *f)
{
    const char *end = find_crlfcrlf(raw, len < EDGE_HTTPC_MAX_HEAD ? len : EDGE_HTTPC_MAX_HEAD);
    const char *p;
    int have_length = 0;

    memset(f, 0, sizeof(*f));
    if (end == NULL) {
        if (len >= EDGE_HTTPC_MAX_HEAD) return EDGE_ETOOBIG;
        return eof ? EDGE_EPROTO : EDGE_EAGAIN;
    }
    f->head_len = (size_t)(end - raw) + 4;
    if (f->head_len < 14 || strncmp(raw, "HTTP/1.", 7) != 0 || raw[8] != ' ' ||
        !isdigit((unsigned char)raw[9]) || !isdigit((unsigned char)raw[10]) ||
        !isdigit((unsigned char)raw[11])) {
        return EDGE_EPROTO;
    }
    f->status = (raw[9] - '0') * 100 + (raw[10] - '0') * 10 + (raw[11] - '0');
    f->kind = FRAME_EOF;
    p = memchr(raw, '\n', f->head_len) + 1;
    while (p < end + 2) {
        const char *eol = memchr(p, '\n', (size_t)(end + 4 - p));
        const char *colon;
        const char *v;
        const char *ve;
        size_t name_len;

        if (eol == NULL || eol == p || eol[-1] != '\r') return EDGE_EPROTO;
        if (eol - 1 == p) break; /* the blank line */
        colon = memchr(p, ':', (size_t)(eol - p));
        if (colon == NULL) return EDGE_EPROTO;
        name_len = (size_t)(colon - p);
        v = colon + 1;
        ve = eol - 1;
        while (v < ve && (*v == ' ' || *v == '\t')) v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t')) ve--;
        if (header_is(p, name_len, "content-length")) {
            size_t cl = 0;
            if (v == ve) return EDGE_EPROTO;
            for (const char *d = v; d < ve; d++) {
                if (!isdigit((unsigned char)*d)) return EDGE_EPROTO;
                if (cl > (SIZE_MAX - 9) / 10) return EDGE_ETOOBIG;
                cl = cl * 10 + (size_t)(*d - '0');
            }
            if (have_length && cl != f->content_length) return EDGE_EPROTO;
            have_length = 1;
            f->content_length = cl;
        } else if (header_is(p, name_len, "transfer-encoding")) {
            size_t n = (size_t)(ve - v);
            if (n >= 7 && strncasecmp(ve - 7, "chunked", 7) == 0) {
                f->kind = FRAME_CHUNKED;
            } else {
                return EDGE_EPROTO; /* an encoding we cannot undo */
            }
        } else if (header_is(p, name_len, "x-edge-bookmark")) {
            size_t n = (size_t)(ve - v);
            if (n >= sizeof(f->bookmark)) n = sizeof(f->bookmark) - 1;
            memcpy(f->bookmark, v, n);
            f->bookmark[n] = '\0';
        } else if (header_is(p, name_len, "content-type")) {
            size_t n = strcspn(v, ";\r");
            if (v + n > ve) n = (size_t)(ve - v);
            while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
            if (n >= sizeof(f->content_type)) n = sizeof(f->content_type) - 1;
            for (size_t i = 0; i < n; i++) f->content_type[i] = (char)tolower((unsigned char)v[i]);
            f->content_type[n] = '\0';
        }
        p = eol + 1;
    }
    /* RFC 9112 6.3: chunked wins over Content-Length; these statuses have no body. */
    if (f->kind != FRAME_CHUNKED && have_length) f->kind = FRAME_LENGTH;
    if (f->status == 204 || f->status == 304 || (f->status >= 100 && f->status < 200)) {
        f->kind = FRAME_NONE;
    }
    return EDGE_OK;
}

/* Read one chunk-size line at raw[*pos..len). EDGE_EAGAIN when incomplete. */
static int chunk_size(const char *raw, size_t len, size_t *pos, size_t *out_size)
{
    size_t i = *pos;
    size_t sz = 0;
    int digits = 0;

    while (i < len && isxdigit((unsigned char)raw[i])) {
        int c = tolower((unsigned char)raw[i]);
        if (sz > (SIZE_MAX >> 4) - 1) return EDGE_ETOOBIG;
        sz = sz * 16 + (size_t)(isdigit(c) ? c - '0' : c - 'a' + 10);
        digits++;
        i++;
    }
    if (i >= len) return EDGE_EAGAIN;
    if (digits == 0) return EDGE_EPROTO;
    /* Skip chunk extensions up to the CRLF. */
    while (i < len && raw[i] != '\n') {
        if (i - *pos > 4096) return EDGE_EPROTO;
        i++;
    }
    if (i >= len) return EDGE_EAGAIN;
    if (raw[i - 1] != '\r') return EDGE_EPROTO;
    *pos = i + 1;
    *out_size = sz;
    return EDGE_OK;
}

/* Walk (and, when dst is not NULL, copy out) a chunked body starting at raw[start].
 * *out_total receives the offset just past the last trailer line. */
static int walk_chunks(const char *raw, size_t len, size_t start, size_t max_body,
                       struct edge_buf *dst, size_t *out_total)
{
    size_t pos = start;
    size_t body = 0;
    int rv;

    for (;;) {
        size_t sz = 0;
        rv = chunk_size(raw, len, &pos, &sz);
        if (rv != EDGE_OK) return rv;
        if (sz == 0) break;
        if (sz > max_body || body > max_body - sz) return EDGE_ETOOBIG;
        if (len - pos < sz + 2) return EDGE_EAGAIN;
        if (raw[pos + sz] != '\r' || raw[pos + sz + 1] != '\n') return EDGE_EPROTO;
        if (dst != NULL) {
            rv = edge_buf_append(dst, raw + pos, sz);
            if (rv != EDGE_OK) return rv;
        }
        body += sz;
        pos += sz + 2;
    }
    /* Trailer section: header lines until an empty line. */
    for (;;) {
        const char *eol = pos < len ? memchr(raw + pos, '\n', len - pos) : NULL;
        if (eol == NULL) {
            if (len - pos > EDGE_HTTPC_MAX_HEAD) return EDGE_ETOOBIG;
            return EDGE_EAGAIN;
        }
        size_t line_len = (size_t)(eol - (raw + pos));
        if (line_len == 0 || raw[pos + line_len - 1] != '\r') return EDGE_EPROTO;
        pos += line_len + 1;
        if (line_len == 1) break;
    }
    *out_total = pos;
    return EDGE_OK;
}

/* Decide whether raw[0..len) holds a complete response. Never allocates. */
static int frame_scan(const char *raw, size_t len, int eof, size_t max_body, struct frame *f)
{
    size_t total = 0;
    int rv = parse_head(raw, len, eof, f);

    if (rv != EDGE_OK) return rv;
    switch (f->kind) {
    case FRAME_NONE:
        return EDGE_OK;
    case FRAME_LENGTH:
        if (f->content_length > max_body) return EDGE_ETOOBIG;
        if (len - f->head_len >= f->content_length) return EDGE_OK;
        return eof ? EDGE_EPROTO : EDGE_EAGAIN;
    case FRAME_CHUNKED:
        rv = walk_chunks(raw, len, f->head_len, max_body, NULL, &total);
        if (rv == EDGE_EAGAIN && eof) rv = EDGE_EPROTO;
        return rv;
    case FRAME_EOF:
        if (len - f->head_len > max_body) return EDGE_ETOOBIG;
        return eof ? EDGE_OK : EDGE_EAGAIN;
    }
    return EDGE_EPROTO;
}

void edge_httpc_resp_free(struct edge_httpc_resp *r)
{
    edge_buf_free(&r->body);
}

int edge_httpc_parse_response(const char *raw, size_t len, int eof, size_t max_body,
                              struct edge_httpc_resp *out)
{
    struct frame f;
    size_t total = 0;
    int rv;

    memset(out, 0, sizeof(*out));
    edge_buf_init(&out->body, max_body);
    rv = frame_scan(raw, len, eof, max_body, &f);
    if (rv != EDGE_OK) goto out;
    out->status = f.status;
    memcpy(out->content_type, f.content_type, sizeof(out->content_type));
    memcpy(out->bookmark, f.bookmark, sizeof(out->bookmark));
    switch (f.kind) {
    case FRAME_NONE:
        break;
    case FRAME_LENGTH:
        rv = edge_buf_append(&out->body, raw + f.head_len, f.content_length);
        break;
    case FRAME_CHUNKED:
        rv = walk_chunks(raw, len, f.head_len, max_body, &out->body, &total);
        break;
    case FRAME_EOF:
        rv = edge_buf_append(&out->body, raw + f.head_len, len - f.head_len);
        break;
    }
    /* Callers treat the body as a C string even when it is empty. */
    if (rv == EDGE_OK) rv = edge_buf_append(&out->body, "", 0);
out:
    if (rv != EDGE_OK) edge_httpc_resp_free(out);
    return rv;
}

/* ---- socket I/O ---- */

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Wait for events on fd until deadline. EDGE_OK, EDGE_ETIMEDOUT or EDGE_EIO. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        struct pollfd pfd = {.fd = fd, .events = events};
        int n;

        if (left <= 0) return EDGE_ETIMEDOUT;
        n = poll(&pfd, 1, left > 60000 ? 60000 : (int)left);
        if (n > 0) return EDGE_OK;
        if (n < 0 && errno != EINTR) return EDGE_EIO;
    }
}

static int connect_to(const struct edge_httpc_url *u, int64_t deadline, int *out_fd)
{
    struct addrinfo hints;
    struct addrinfo *res = NULL;
    int rv = EDGE_EIO;
    int fd = -1;

    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(u->host, u->port, &hints, &res) != 0) goto out;
    for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
        int err = 0;
        socklen_t elen = sizeof(err);

        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) continue;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rv = EDGE_OK;
            break;
        }
        if (errno == EINPROGRESS) {
            rv = wait_fd(fd, POLLOUT, deadline);
            if (rv == EDGE_OK && getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) == 0 &&
                err == 0) {
                break;
            }
            if (rv == EDGE_OK) rv = EDGE_EIO;
        }
        close(fd);
        fd = -1;
        if (rv == EDGE_ETIMEDOUT) break;
        rv = EDGE_EIO;
    }
out:
    if (res != NULL) freeaddrinfo(res);
    if (rv == EDGE_OK) *out_fd = fd;
    return rv;
}

static int send_all(int fd, const char *p, size_t len, int64_t deadline)
{
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            int rv = wait_fd(fd, POLLOUT, deadline);
            if (rv != EDGE_OK) return rv;
            continue;
        }
        return EDGE_EIO;
    }
    return EDGE_OK;
}

static int tls_wait(void *ud, int fd, short events, int64_t deadline)
{
    (void)ud;
    return wait_fd(fd, events, deadline);
}

/* After the TCP connect of an https:// URL: the handshake, the server's certificate and
 * name checked against u->tls_ctx (or the system's CAs). */
static int tls_start(const struct edge_httpc_url *u, int fd, int64_t deadline, struct edge_tls **out)
{
    struct edge_tls_ctx *own = NULL, *ctx = u->tls_ctx;
    char err[256];
    int rv = EDGE_OK;
    if (ctx == NULL) rv = edge_tls_ctx_client_new(NULL, &own, err, sizeof(err));
    if (rv == EDGE_OK) rv = edge_tls_new(ctx != NULL ? ctx : own, u->host, out);
    edge_tls_ctx_free(own); /* the session keeps what it needs */
    if (rv != EDGE_OK) return rv;
    rv = edge_tls_fd_handshake(*out, fd, tls_wait, NULL, deadline);
    return rv == EDGE_ECLOSED ? EDGE_EIO : rv;
}

/* Decrypt what the session holds into raw (bounded by raw's cap). */
static int tls_drain(struct edge_tls *t, struct edge_buf *raw, int *eof)
{
    for (int pass = 0; pass < 1 << 20; pass++) {
        int rv = edge_buf_reserve(raw, 16384);
        if (rv == EDGE_ETOOBIG && raw->len < raw->max) rv = edge_buf_reserve(raw, raw->max - raw->len);
        if (rv != EDGE_OK) return rv;
        size_t room = raw->cap - raw->len - 1, got = 0;
        if (room > raw->max - raw->len) room = raw->max - raw->len;
        if (room == 0) return EDGE_ETOOBIG;
        rv = edge_tls_read(t, raw->data + raw->len, room, &got);
        if (rv == EDGE_ECLOSED) {
            *eof = 1;
            return EDGE_OK;
        }
        if (rv != EDGE_OK) return rv;
        if (got == 0) return EDGE_OK;
        raw->len += got;
        raw->data[raw->len] = '\0';
    }
    return EDGE_OK;
}

int edge_httpc_request(const struct edge_httpc_url *u, const char *method, const char *path,
                       const char *token, const char *body, size_t body_len, int timeout_ms,
                       size_t max_body, struct edge_httpc_resp *out)
{
    return edge_httpc_request_ex(u, method, path, token, NULL, body, body_len, timeout_ms, max_body, out);
}

int edge_httpc_request_ex(const struct edge_httpc_url *u, const char *method, const char *path,
                          const char *token, const char *extra_headers, const char *body, size_t body_len,
                          int timeout_ms, size_t max_body, struct edge_httpc_resp *out)
{
    int64_t deadline = now_ms() + (timeout_ms > 0 ? timeout_ms : 1);
    struct edge_buf req;
    struct edge_buf raw;
    int fd = -1;
    int rv;
    int eof = 0;
    int v6 = strchr(u->host, ':') != NULL;
    struct edge_tls *tls = NULL;
    int default_port = strcmp(u->port, u->tls ? "443" : "80") == 0;

    memset(out, 0, sizeof(*out));
    edge_buf_init(&out->body, max_body);
    edge_buf_init(&req, EDGE_HTTPC_MAX_HEAD + body_len);
    /* Chunk framing can add overhead beyond the body itself; a quarter is generous for
     * any real server, and the body cap is enforced separately by the scan. */
    edge_buf_init(&raw, EDGE_HTTPC_MAX_HEAD + max_body + max_body / 4 + 4096);
    if (method == NULL || path == NULL || (body == NULL && body_len > 0)) {
        rv = EDGE_EINVAL;
        goto out;
    }
    rv = edge_buf_printf(&req,
                         "%s %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\n"
                         "User-Agent: edgelite-cli/" EDGE_VERSION "\r\n"
                         "Accept: application/json\r\nConnection: close\r\n",
                         method, path, v6 ? "[" : "", u->host, v6 ? "]" : "",
                         default_port ? "" : ":", default_port ? "" : u->port);
    if (rv == EDGE_OK && token != NULL && token[0] != '\0') {
        rv = edge_buf_printf(&req, "Authorization: Bearer %s\r\n", token);
    }
    if (rv == EDGE_OK && extra_headers != NULL) {
        rv = edge_buf_puts(&req, extra_headers);
    }
    if (rv == EDGE_OK && body != NULL) {
        rv = edge_buf_printf(&req, "Content-Type: application/json\r\nContent-Length: %zu\r\n",
                             body_len);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(&req, "\r\n");
    if (rv == EDGE_OK && body_len > 0) rv = edge_buf_append(&req, body, body_len);
    if (rv != EDGE_OK) goto out;

    rv = connect_to(u, deadline, &fd);
    if (rv != EDGE_OK) goto out;
    if (u->tls) {
        rv = tls_start(u, fd, deadline, &tls);
        if (rv == EDGE_OK) rv = edge_tls_write(tls, req.data, req.len);
        if (rv == EDGE_OK) rv = edge_tls_fd_flush(tls, fd, tls_wait, NULL, deadline);
    } else {
        rv = send_all(fd, req.data, req.len, deadline);
    }
    if (rv != EDGE_OK) goto out;

    for (;;) {
        struct frame f;
        ssize_t n;
        size_t room;

        if (tls != NULL) {
            rv = edge_tls_fd_pull(tls, fd);
            if (rv == EDGE_EAGAIN) {
                rv = wait_fd(fd, POLLIN, deadline);
                if (rv != EDGE_OK) goto out;
                continue;
            }
            if (rv == EDGE_ECLOSED || rv == EDGE_EIO) {
                eof = 1; /* a close after a complete response is still a response */
            } else if (rv != EDGE_OK || (rv = tls_drain(tls, &raw, &eof)) != EDGE_OK) {
                goto out;
            }
            rv = frame_scan(raw.data != NULL ? raw.data : "", raw.len, eof, max_body, &f);
            if (rv == EDGE_OK) break;
            if (rv != EDGE_EAGAIN) {
                if (rv == EDGE_EPROTO && eof && raw.len == 0) rv = EDGE_EIO;
                goto out;
            }
            continue;
        }

        rv = edge_buf_reserve(&raw, 16384);
        if (rv == EDGE_ETOOBIG && raw.len < raw.max) rv = edge_buf_reserve(&raw, raw.max - raw.len);
        if (rv != EDGE_OK) goto out;
        room = raw.cap - raw.len - 1;
        if (room > raw.max - raw.len) room = raw.max - raw.len;
        n = recv(fd, raw.data + raw.len, room, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                rv = wait_fd(fd, POLLIN, deadline);
                if (rv != EDGE_OK) goto out;
                continue;
            }
            /* A reset after a complete response is still a response. */
            eof = 1;
        } else if (n == 0) {
            eof = 1;
        } else {
            raw.len += (size_t)n;
            raw.data[raw.len] = '\0';
        }
        rv = frame_scan(raw.data != NULL ? raw.data : "", raw.len, eof, max_body, &f);
        if (rv == EDGE_OK) break;
        if (rv != EDGE_EAGAIN) {
            if (rv == EDGE_EPROTO && eof && raw.len == 0) rv = EDGE_EIO;
            goto out;
        }
    }
    rv = edge_httpc_parse_response(raw.data, raw.len, eof, max_body, out);
out:
    edge_tls_free(tls);
    if (fd >= 0) close(fd);
    edge_buf_free(&req);
    edge_buf_free(&raw);
    return rv;
}

/* ---- a body streamed into a file ---- */

/* recv(2) on the socket or, with TLS, the decrypted bytes of it: > 0 bytes, 0 at the
 * end, -1 with errno (EAGAIN: wait for POLLIN; EPROTO: a TLS failure). What the session
 * already holds is taken before the socket is read, so a wait never hides it. */
static ssize_t io_recv(int sock, struct edge_tls *tls, char *buf, size_t cap)
{
    if (tls == NULL) return recv(sock, buf, cap, 0);
    for (int pass = 0; pass < 4; pass++) {
        size_t got = 0;
        int rv = edge_tls_read(tls, buf, cap, &got);
        if (rv == EDGE_ECLOSED) return 0;
        if (rv != EDGE_OK) {
            errno = EPROTO;
            return -1;
        }
        if (got > 0) return (ssize_t)got;
        rv = edge_tls_fd_pull(tls, sock);
        if (rv == EDGE_ECLOSED) return 0;
        if (rv != EDGE_OK) {
            errno = rv == EDGE_EAGAIN ? EAGAIN : ECONNRESET;
            return -1;
        }
    }
    errno = EAGAIN; /* fed a part of a record: wait for the rest */
    return -1;
}

int edge_httpc_get_to_fd(const struct edge_httpc_url *u, const char *path, const char *extra_headers,
                         int head_timeout_ms, int idle_ms, uint64_t max_bytes, int fd, int *out_status,
                         char *head, size_t head_size, uint64_t *out_len)
{
    int64_t deadline = now_ms() + (head_timeout_ms > 0 ? head_timeout_ms : 1);
    char req[EDGE_HTTPC_MAX_HEAD];
    /* The head and whatever body bytes came with it; later reads go straight to fd. */
    char *buf = edge_malloc(EDGE_HTTPC_MAX_HEAD + 1);
    size_t have = 0;
    int sock = -1;
    int rv = EDGE_ENOMEM;
    uint64_t written = 0;
    struct frame f;
    int v6 = strchr(u->host, ':') != NULL;
    struct edge_tls *tls = NULL;
    int default_port = strcmp(u->port, u->tls ? "443" : "80") == 0;

    *out_status = 0;
    *out_len = 0;
    if (head_size > 0) head[0] = '\0';
    if (buf == NULL) goto out;
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s%s%s%s%s\r\nUser-Agent: edgelite/" EDGE_VERSION
                     "\r\nConnection: close\r\n%s\r\n",
                     path, v6 ? "[" : "", u->host, v6 ? "]" : "", default_port ? "" : ":",
                     default_port ? "" : u->port, extra_headers ? extra_headers : "");
    rv = EDGE_EINVAL;
    if (n < 0 || (size_t)n >= sizeof(req)) goto out;
    rv = connect_to(u, deadline, &sock);
    if (rv == EDGE_OK && u->tls) {
        rv = tls_start(u, sock, deadline, &tls);
        if (rv == EDGE_OK) rv = edge_tls_write(tls, req, (size_t)n);
        if (rv == EDGE_OK) rv = edge_tls_fd_flush(tls, sock, tls_wait, NULL, deadline);
    } else if (rv == EDGE_OK) {
        rv = send_all(sock, req, (size_t)n, deadline);
    }
    if (rv != EDGE_OK) goto out;
    /* The head, within head_timeout_ms. */
    for (;;) {
        ssize_t got = io_recv(sock, tls, buf + have, EDGE_HTTPC_MAX_HEAD - have);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rv = wait_fd(sock, POLLIN, deadline);
            if (rv != EDGE_OK) goto out;
            continue;
        }
        if (got > 0) have += (size_t)got;
        buf[have] = '\0';
        rv = parse_head(buf, have, got <= 0, &f);
        if (rv == EDGE_OK) break;
        if (rv != EDGE_EAGAIN) goto out;
    }
    rv = EDGE_EPROTO;
    if (f.kind == FRAME_CHUNKED) goto out; /* not needed for what this is for */
    *out_status = f.status;
    if (head_size > 0) {
        size_t hl = f.head_len < head_size ? f.head_len : head_size - 1;
        memcpy(head, buf, hl);
        head[hl] = '\0';
    }
    uint64_t want = f.kind == FRAME_LENGTH ? (uint64_t)f.content_length : UINT64_MAX;
    rv = EDGE_ETOOBIG;
    if (f.kind == FRAME_LENGTH && want > max_bytes) goto out;
    if (f.kind == FRAME_NONE) want = 0;
    /* The body: what came with the head, then reads of at most one buffer each. */
    size_t off = f.head_len;
    for (;;) {
        size_t chunk = have - off;
        if (chunk > want - written) chunk = (size_t)(want - written);
        for (size_t done = 0; done < chunk;) {
            ssize_t w = write(fd, buf + off + done, chunk - done);
            if (w < 0 && errno == EINTR) continue;
            rv = EDGE_EIO;
            if (w <= 0) goto out;
            done += (size_t)w;
        }
        written += chunk;
        rv = EDGE_ETOOBIG;
        if (written > max_bytes) goto out;
        if (written == want) break;
        off = 0;
        have = 0;
        ssize_t got = io_recv(sock, tls, buf, EDGE_HTTPC_MAX_HEAD);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            rv = wait_fd(sock, POLLIN, now_ms() + (idle_ms > 0 ? idle_ms : 1));
            if (rv != EDGE_OK) goto out;
            continue;
        }
        rv = EDGE_EIO;
        if (got < 0) goto out; /* a reset is never the end of a body */
        if (got == 0) {
            /* The end of a body that ends at close; short of a Content-Length, a failure. */
            rv = f.kind == FRAME_EOF ? EDGE_OK : EDGE_EIO;
            if (rv != EDGE_OK) goto out;
            break;
        }
        have = (size_t)got;
    }
    *out_len = written;
    rv = EDGE_OK;
out:
    edge_tls_free(tls);
    if (sock >= 0) close(sock);
    edge_free(buf);
    return rv;
}

int edge_httpc_head_value(const char *head, const char *name, char *out, size_t out_size)
{
    size_t nl = strlen(name);
    const char *p = strchr(head, '\n');
    while (p != NULL && p[1] != '\0') {
        p++;
        const char *eol = strchr(p, '\n');
        if (eol == NULL) break;
        if ((size_t)(eol - p) > nl && p[nl] == ':' && strncasecmp(p, name, nl) == 0) {
            const char *v = p + nl + 1;
            const char *ve = eol;
            while (v < ve && (*v == ' ' || *v == '\t')) v++;
            while (ve > v && (ve[-1] == '\r' || ve[-1] == ' ' || ve[-1] == '\t')) ve--;
            if ((size_t)(ve - v) >= out_size) return EDGE_ETOOBIG;
            memcpy(out, v, (size_t)(ve - v));
            out[ve - v] = '\0';
            return EDGE_OK;
        }
        p = eol;
    }
    return EDGE_ENOTFOUND;
}
