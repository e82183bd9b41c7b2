/* SPDX-License-Identifier: MIT */
/* chaosproxy: a loopback TCP proxy with faults switchable at run time, for putting
 * between two regions in tests (DESIGN.md 3, "WAN emulation"; in the spirit of
 * Toxiproxy). Single thread, poll(), bounded per-direction queues.
 *
 *   chaosproxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT2 --control 127.0.0.1:PORT3
 *   (port 0 = pick one; prints "chaosproxy: listening on PORT control on PORT3")
 *
 * Control (HTTP GET on the control port, JSON answers):
 *   /set?latency_ms=50&jitter_ms=10   delay every chunk by latency + uniform[0, jitter]
 *   /set?bandwidth_kbps=100           cap each direction at 100 kbit/s (0 = off)
 *   /set?blackhole=1                  keep connections, silently drop every byte
 *   /set?cut=1                        close all connections and refuse new ones
 *   /set?tamper_dir=2&tamper_type=5&tamper_at=4&tamper_xor=64
 *                                     in WebSocket connections, alter binary messages going
 *                                     client->upstream (1) or upstream->client (2) whose first
 *                                     byte is tamper_type: XOR the byte at payload offset
 *                                     tamper_at with tamper_xor (default 1), or, with
 *                                     tamper_find=TEXT&tamper_replace=TEXT (same length),
 *                                     replace TEXT in them; tamper_max=N stops after N
 *                                     messages (0: no limit). tamper_dir=0 turns it off.
 *   /reset                            all faults off
 *   /status                           settings and counters
 *
 * DESIGN: every chunk read from one side gets a delivery time of
 * max(now + latency + jitter, previous chunk's time), so jitter never reorders bytes.
 * A direction stops reading when its queue holds QUEUE_MAX bytes (backpressure reaches
 * the sender through TCP). A standalone test tool: it uses libc malloc, not the
 * library's allocator, and links nothing from edgelite. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAIRS 256
#define MAX_CTL 8
#define CHUNK 16384
#define QUEUE_MAX (1u << 20)
#define CTL_REQ_MAX 2048
#define HEAD_MAX 8192
#define PAT_MAX 64

struct chunk {
    struct chunk *next;
    uint64_t due_us; /* earliest delivery time */
    size_t len, off;
    char data[];
};

/* Where a direction's byte stream is, for tampering: the HTTP head, a WebSocket frame
 * header, a frame's payload, or a connection that is not a WebSocket (left alone). */
enum ws_phase { WS_HEAD, WS_FRAME_HDR, WS_PAYLOAD, WS_PASS };

struct wscan {
    enum ws_phase phase;
    char head[HEAD_MAX + 1];
    size_t head_len;
    uint8_t hdr[14];
    size_t hdr_len;
    uint64_t left, off; /* payload bytes still to come, and the offset of the next one */
    uint8_t mask[4];
    bool masked, binary;
    bool target;   /* this message is one to alter */
    bool altered;  /* ... and it was */
};

struct dir {
    struct wscan ws;
    struct chunk *head, *tail;
    size_t queued;          /* bytes in the queue */
    uint64_t last_due_us;   /* keeps delivery in order under jitter */
    uint64_t next_send_us;  /* bandwidth pacing */
    bool src_eof;           /* the reading side sent FIN */
    bool shut;              /* FIN forwarded to the writing side */
};

struct pair {
    bool used;
    bool websocket; /* the client's request was a WebSocket upgrade */
    int cfd, ufd;          /* client, upstream */
    bool up_connected;
    struct dir c2u, u2c;
};

struct ctl {
    int fd;
    size_t len;
    char req[CTL_REQ_MAX + 1];
};

struct settings {
    long latency_ms, jitter_ms, bandwidth_kbps;
    bool cut, blackhole;
    long tamper_dir, tamper_type, tamper_at, tamper_xor, tamper_max;
    char tamper_find[PAT_MAX + 1], tamper_replace[PAT_MAX + 1];
};

struct proxy {
    int lfd, cfd_listen;
    struct sockaddr_in upstream;
    struct settings s;
    struct pair pairs[MAX_PAIRS];
    struct ctl ctls[MAX_CTL];
    uint64_t accepted, refused, bytes_c2u, bytes_u2c, dropped;
    uint64_t tampered; /* messages altered since the last /set of tamper_dir */
    uint64_t rng;
};

static volatile sig_atomic_t g_quit;

static void on_signal(int sig)
{
    (void)sig;
    g_quit = 1;
}

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t rnd(struct proxy *px)
{
    /* xorshift64: test jitter needs no quality, only no dependency. */
    px->rng ^= px->rng << 13;
    px->rng ^= px->rng >> 7;
    px->rng ^= px->rng << 17;
    return px->rng;
}

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* "127.0.0.1:PORT" (loopback only). */
static int parse_addr(const char *s, struct sockaddr_in *out)
{
    char host[64];
    const char *colon = strrchr(s, ':');
    if (colon == NULL || (size_t)(colon - s) >= sizeof(host)) {
        return -1;
    }
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    char *end = NULL;
    long port = strtol(colon + 1, &end, 10);
    if (*end != '\0' || port < 0 || port > 65535) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    out->sin_family = AF_INET;
    out->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0) {
        snprintf(host, sizeof(host), "127.0.0.1");
    }
    if (inet_pton(AF_INET, host, &out->sin_addr) != 1 || (ntohl(out->sin_addr.s_addr) >> 24) != 127) {
        return -1;
    }
    return 0;
}

static int listen_on(struct sockaddr_in *a, int *out_port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0) {
        return -1;
    }
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    socklen_t al = sizeof(*a);
    if (bind(fd, (struct sockaddr *)a, sizeof(*a)) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)a, &al) != 0 || set_nonblock(fd) != 0) {
        close(fd);
        return -1;
    }
    *out_port = ntohs(a->sin_port);
    return fd;
}

/* ---- pairs ---- */

static void dir_clear(struct dir *d)
{
    struct chunk *c = d->head;
    for (int i = 0; c != NULL && i < 1000000; i++) {
        struct chunk *n = c->next;
        free(c);
        c = n;
    }
    d->head = d->tail = NULL;
    d->queued = 0;
}

static void pair_close(struct pair *p)
{
    if (!p->used) {
        return;
    }
    close(p->cfd);
    close(p->ufd);
    dir_clear(&p->c2u);
    dir_clear(&p->u2c);
    memset(p, 0, sizeof(*p));
}

static size_t n_pairs(const struct proxy *px)
{
    size_t n = 0;
    for (int i = 0; i < MAX_PAIRS; i++) {
        n += px->pairs[i].used;
    }
    return n;
}

static void do_accept(struct proxy *px)
{
    for (int k = 0; k < 64; k++) {
        int fd = accept4(px->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        struct pair *p = NULL;
        for (int i = 0; i < MAX_PAIRS && p == NULL; i++) {
            if (!px->pairs[i].used) {
                p = &px->pairs[i];
            }
        }
        if (px->s.cut || p == NULL) {
            px->refused++;
            close(fd);
            continue;
        }
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (ufd < 0) {
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        if (connect(ufd, (struct sockaddr *)&px->upstream, sizeof(px->upstream)) != 0 && errno != EINPROGRESS) {
            close(fd);
            close(ufd);
            px->refused++;
            continue;
        }
        memset(p, 0, sizeof(*p));
        p->used = true;
        p->cfd = fd;
        p->ufd = ufd;
        px->accepted++;
    }
}

/* ---- tampering (WebSocket messages, in place, before they are queued) ---- */

static bool ci_contains(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (const char *p = hay; *p != '\0'; p++) {
        if (strncasecmp(p, needle, n) == 0) {
            return true;
        }
    }
    return false;
}

/* The HTTP head: returns the bytes of buf it used (all of them while the head goes on). */
static size_t scan_head(struct pair *p, struct wscan *w, bool c2u, const uint8_t *buf, size_t n)
{
    size_t used = 0;
    while (used < n) {
        if (w->head_len < HEAD_MAX) {
            w->head[w->head_len++] = (char)buf[used];
            w->head[w->head_len] = '\0';
        }
        used++;
        if (w->head_len >= 4 && memcmp(w->head + w->head_len - 4, "\r\n\r\n", 4) == 0) {
            if (c2u) {
                p->websocket = ci_contains(w->head, "upgrade: websocket");
            }
            w->phase = p->websocket ? WS_FRAME_HDR : WS_PASS;
            return used;
        }
        if (w->head_len >= HEAD_MAX) {
            w->phase = WS_PASS; /* not what the peer link sends */
            return used;
        }
    }
    return used;
}

static size_t scan_frame_hdr(struct wscan *w, const uint8_t *buf, size_t n)
{
    size_t used = 0;
    while (used < n) {
        w->hdr[w->hdr_len++] = buf[used++];
        if (w->hdr_len < 2) {
            continue;
        }
        size_t l7 = w->hdr[1] & 0x7f;
        size_t need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((w->hdr[1] & 0x80) ? 4 : 0);
        if (w->hdr_len < need) {
            continue;
        }
        uint64_t len = l7;
        size_t at = 2;
        if (l7 == 126) {
            len = ((uint64_t)w->hdr[2] << 8) | w->hdr[3];
            at = 4;
        } else if (l7 == 127) {
            len = 0;
            for (int i = 0; i < 8; i++) {
                len = (len << 8) | w->hdr[2 + i];
            }
            at = 10;
        }
        w->masked = (w->hdr[1] & 0x80) != 0;
        if (w->masked) {
            memcpy(w->mask, w->hdr + at, 4);
        }
        w->binary = (w->hdr[0] & 0x0f) == 2;
        w->hdr_len = 0;
        w->left = len;
        w->off = 0;
        w->target = false;
        w->altered = false;
        w->phase = len > 0 ? WS_PAYLOAD : WS_FRAME_HDR;
        break;
    }
    return used;
}

/* The part of a payload in this read: decide on its first byte, then alter it. A
 * TEXT that straddles two reads is not replaced (the peer link's messages are small
 * enough to come in one read, and the caller waits for the effect anyway). */
static size_t scan_payload(struct proxy *px, struct wscan *w, bool c2u, uint8_t *buf, size_t n)
{
    size_t seg = w->left < n ? (size_t)w->left : n;
    const struct settings *s = &px->s;
    if (w->off == 0) {
        uint8_t type = buf[0] ^ (w->masked ? w->mask[0] : 0);
        w->target = w->binary && s->tamper_dir == (c2u ? 1 : 2) && type == s->tamper_type &&
                    (s->tamper_max == 0 || px->tampered < (uint64_t)s->tamper_max);
    }
    if (w->target && s->tamper_find[0] != '\0') {
        size_t pl = strlen(s->tamper_find);
        uint8_t *tmp = malloc(seg ? seg : 1);
        if (tmp != NULL) {
            for (size_t i = 0; i < seg; i++) {
                tmp[i] = buf[i] ^ (w->masked ? w->mask[(w->off + i) & 3] : 0);
            }
            for (size_t i = 0; i + pl <= seg; i++) {
                if (memcmp(tmp + i, s->tamper_find, pl) == 0) {
                    memcpy(tmp + i, s->tamper_replace, pl);
                    w->altered = true;
                    i += pl - 1;
                }
            }
            for (size_t i = 0; i < seg; i++) {
                buf[i] = tmp[i] ^ (w->masked ? w->mask[(w->off + i) & 3] : 0);
            }
            free(tmp);
        }
    } else if (w->target && (uint64_t)s->tamper_at >= w->off && (uint64_t)s->tamper_at < w->off + seg) {
        /* XOR commutes with the mask: no need to unmask */
        buf[s->tamper_at - (long)w->off] ^= (uint8_t)(s->tamper_xor ? s->tamper_xor : 1);
        w->altered = true;
    }
    w->off += seg;
    w->left -= seg;
    if (w->left == 0) {
        if (w->altered) {
            px->tampered++;
        }
        w->phase = WS_FRAME_HDR;
    }
    return seg;
}

/* Walk what was just read on one direction, keeping its place in the stream. */
static void scan(struct proxy *px, struct pair *p, struct dir *d, bool c2u, uint8_t *buf, size_t n)
{
    struct wscan *w = &d->ws;
    size_t i = 0;
    for (int guard = 0; guard < 1000000 && i < n; guard++) {
        switch (w->phase) {
        case WS_HEAD:
            i += scan_head(p, w, c2u, buf + i, n - i);
            break;
        case WS_FRAME_HDR:
            i += scan_frame_hdr(w, buf + i, n - i);
            break;
        case WS_PAYLOAD:
            i += scan_payload(px, w, c2u, buf + i, n - i);
            break;
        case WS_PASS:
            return;
        }
    }
}

/* Read from src into d's queue. Returns -1 if the pair must close. */
static int pump_in(struct proxy *px, struct pair *p, int src, struct dir *d, uint64_t *counter)
{
    if (d->src_eof || d->queued >= QUEUE_MAX) {
        return 0;
    }
    char buf[CHUNK];
    ssize_t n = recv(src, buf, sizeof(buf), 0);
    if (n == 0) {
        d->src_eof = true;
        return 0;
    }
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
    }
    /* the upstream answers only after the client's head, so p->websocket is known by then */
    scan(px, p, d, d == &p->c2u, (uint8_t *)buf, (size_t)n);
    if (px->s.blackhole) {
        px->dropped += (uint64_t)n;
        return 0;
    }
    struct chunk *c = malloc(sizeof(*c) + (size_t)n);
    if (c == NULL) {
        return -1;
    }
    uint64_t delay = (uint64_t)px->s.latency_ms * 1000u;
    if (px->s.jitter_ms > 0) {
        delay += rnd(px) % ((uint64_t)px->s.jitter_ms * 1000u + 1);
    }
    uint64_t due = now_us() + delay;
    c->due_us = due > d->last_due_us ? due : d->last_due_us;
    d->last_due_us = c->due_us;
    c->next = NULL;
    c->len = (size_t)n;
    c->off = 0;
    memcpy(c->data, buf, (size_t)n);
    if (d->tail) {
        d->tail->next = c;
    } else {
        d->head = c;
    }
    d->tail = c;
    d->queued += (size_t)n;
    *counter += (uint64_t)n;
    return 0;
}

/* Write due chunks of d to dst, paced by the bandwidth cap. -1: close the pair. */
static int pump_out(struct proxy *px, int dst, struct dir *d)
{
    uint64_t now = now_us();
    for (int i = 0; i < 1024 && d->head != NULL; i++) {
        struct chunk *c = d->head;
        if (c->due_us > now || d->next_send_us > now) {
            return 0;
        }
        size_t want = c->len - c->off;
        if (px->s.bandwidth_kbps > 0) {
            /* Send in slices of about 10 ms worth of bytes. */
            size_t slice = (size_t)px->s.bandwidth_kbps * 1000u / 8u / 100u;
            if (slice < 1) {
                slice = 1;
            }
            want = want < slice ? want : slice;
        }
        ssize_t n = send(dst, c->data + c->off, want, MSG_NOSIGNAL);
        if (n < 0) {
            return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ? 0 : -1;
        }
        c->off += (size_t)n;
        d->queued -= (size_t)n;
        if (px->s.bandwidth_kbps > 0) {
            /* kbit/s = bits per ms: n bytes take n * 8 / kbps ms. */
            d->next_send_us = now + (uint64_t)n * 8000u / (uint64_t)px->s.bandwidth_kbps;
        }
        if (c->off == c->len) {
            d->head = c->next;
            if (d->head == NULL) {
                d->tail = NULL;
            }
            free(c);
        }
    }
    if (d->head == NULL && d->src_eof && !d->shut) {
        shutdown(dst, SHUT_WR);
        d->shut = true;
    }
    return 0;
}

static uint64_t dir_next_due(const struct dir *d)
{
    if (d->head == NULL) {
        return UINT64_MAX;
    }
    return d->head->due_us > d->next_send_us ? d->head->due_us : d->next_send_us;
}

/* ---- control ---- */

static void status_json(struct proxy *px, char *out, size_t cap)
{
    snprintf(out, cap,
             "{\"latency_ms\":%ld,\"jitter_ms\":%ld,\"bandwidth_kbps\":%ld,\"cut\":%s,\"blackhole\":%s,"
             "\"connections\":%zu,\"accepted\":%llu,\"refused\":%llu,\"bytes_c2u\":%llu,\"bytes_u2c\":%llu,"
             "\"dropped\":%llu,\"tamper_dir\":%ld,\"tamper_type\":%ld,\"tampered\":%llu}\n",
             px->s.latency_ms, px->s.jitter_ms, px->s.bandwidth_kbps, px->s.cut ? "true" : "false",
             px->s.blackhole ? "true" : "false", n_pairs(px), (unsigned long long)px->accepted,
             (unsigned long long)px->refused, (unsigned long long)px->bytes_c2u,
             (unsigned long long)px->bytes_u2c, (unsigned long long)px->dropped, px->s.tamper_dir,
             px->s.tamper_type, (unsigned long long)px->tampered);
}

static void apply_cut(struct proxy *px)
{
    for (int i = 0; i < MAX_PAIRS; i++) {
        pair_close(&px->pairs[i]);
    }
}

static void apply_blackhole(struct proxy *px)
{
    for (int i = 0; i < MAX_PAIRS; i++) {
        if (px->pairs[i].used) {
            px->dropped += px->pairs[i].c2u.queued + px->pairs[i].u2c.queued;
            dir_clear(&px->pairs[i].c2u);
            dir_clear(&px->pairs[i].u2c);
        }
    }
}

/* Apply "k=v&k=v". Returns 0, or -1 with a message on an unknown key or bad value. */
static int apply_query(struct proxy *px, char *q, const char **out_err)
{
    struct settings s = px->s;
    char *save = NULL;
    for (char *kv = strtok_r(q, "&", &save); kv != NULL; kv = strtok_r(NULL, "&", &save)) {
        char *eq = strchr(kv, '=');
        if (eq == NULL) {
            *out_err = "expected key=value";
            return -1;
        }
        *eq = '\0';
        if (strcmp(kv, "tamper_find") == 0 || strcmp(kv, "tamper_replace") == 0) {
            char *dst = kv[7] == 'f' ? s.tamper_find : s.tamper_replace;
            if (strlen(eq + 1) > PAT_MAX) {
                *out_err = "tamper_find/tamper_replace: at most 64 bytes";
                return -1;
            }
            snprintf(dst, PAT_MAX + 1, "%s", eq + 1);
            continue;
        }
        char *end = NULL;
        long v = strtol(eq + 1, &end, 10);
        if (end == eq + 1 || *end != '\0' || v < 0 || v > 100000000) {
            *out_err = "value must be a non-negative integer";
            return -1;
        }
        if (strcmp(kv, "latency_ms") == 0) {
            s.latency_ms = v;
        } else if (strcmp(kv, "jitter_ms") == 0) {
            s.jitter_ms = v;
        } else if (strcmp(kv, "bandwidth_kbps") == 0) {
            s.bandwidth_kbps = v;
        } else if (strcmp(kv, "cut") == 0) {
            s.cut = v != 0;
        } else if (strcmp(kv, "blackhole") == 0) {
            s.blackhole = v != 0;
        } else if (strcmp(kv, "tamper_dir") == 0 && v <= 2) {
            s.tamper_dir = v;
            px->tampered = 0;
        } else if (strcmp(kv, "tamper_type") == 0 && v <= 255) {
            s.tamper_type = v;
        } else if (strcmp(kv, "tamper_at") == 0) {
            s.tamper_at = v;
        } else if (strcmp(kv, "tamper_xor") == 0 && v <= 255) {
            s.tamper_xor = v;
        } else if (strcmp(kv, "tamper_max") == 0) {
            s.tamper_max = v;
        } else {
            *out_err = "unknown key";
            return -1;
        }
    }
    if (strlen(s.tamper_find) != strlen(s.tamper_replace)) {
        *out_err = "tamper_find and tamper_replace must have the same length";
        return -1;
    }
    bool cut_now = s.cut && !px->s.cut, hole_now = s.blackhole && !px->s.blackhole;
    px->s = s;
    if (cut_now) {
        apply_cut(px);
    }
    if (hole_now) {
        apply_blackhole(px);
    }
    return 0;
}

static void ctl_respond(struct ctl *c, int code, const char *body)
{
    char out[1024];
    int n = snprintf(out, sizeof(out),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n%s",
                     code, code == 200 ? "OK" : code == 404 ? "Not Found" : "Bad Request", strlen(body), body);
    /* Small answer on a fresh socket: one send fits in the buffer. */
    ssize_t w = send(c->fd, out, (size_t)n, MSG_NOSIGNAL);
    (void)w;
}

static void ctl_handle(struct proxy *px, struct ctl *c)
{
    char body[768];
    char path[CTL_REQ_MAX];
    if (sscanf(c->req, "GET %2047s HTTP/", path) != 1) {
        ctl_respond(c, 400, "{\"error\":\"only GET\"}\n");
        return;
    }
    if (strcmp(path, "/status") == 0) {
        status_json(px, body, sizeof(body));
        ctl_respond(c, 200, body);
    } else if (strcmp(path, "/reset") == 0) {
        memset(&px->s, 0, sizeof(px->s));
        status_json(px, body, sizeof(body));
        ctl_respond(c, 200, body);
    } else if (strncmp(path, "/set?", 5) == 0) {
        const char *err = NULL;
        if (apply_query(px, path + 5, &err) != 0) {
            snprintf(body, sizeof(body), "{\"error\":\"%s\"}\n", err);
            ctl_respond(c, 400, body);
            return;
        }
        status_json(px, body, sizeof(body));
        ctl_respond(c, 200, body);
    } else {
        ctl_respond(c, 404, "{\"error\":\"not found\"}\n");
    }
}

static void ctl_close(struct ctl *c)
{
    close(c->fd);
    c->fd = -1;
}

static void ctl_accept(struct proxy *px)
{
    for (int k = 0; k < 8; k++) {
        int fd = accept4(px->cfd_listen, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            return;
        }
        struct ctl *c = NULL;
        for (int i = 0; i < MAX_CTL && c == NULL; i++) {
            if (px->ctls[i].fd < 0) {
                c = &px->ctls[i];
            }
        }
        if (c == NULL) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->len = 0;
    }
}

static void ctl_read(struct proxy *px, struct ctl *c)
{
    ssize_t n = recv(c->fd, c->req + c->len, CTL_REQ_MAX - c->len, 0);
    if (n <= 0) {
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) {
            ctl_close(c);
        }
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = '\0';
    if (strstr(c->req, "\r\n\r\n") != NULL || strstr(c->req, "\n\n") != NULL) {
        ctl_handle(px, c);
        ctl_close(c);
    } else if (c->len >= CTL_REQ_MAX) {
        ctl_respond(c, 400, "{\"error\":\"request too large\"}\n");
        ctl_close(c);
    }
}

/* ---- main loop ---- */

static void run(struct proxy *px)
{
    struct pollfd pf[2 + MAX_CTL + 2 * MAX_PAIRS];
    int owner[2 + MAX_CTL + 2 * MAX_PAIRS];
    while (!g_quit) {
        int n = 0;
        uint64_t next_due = UINT64_MAX;
        pf[n] = (struct pollfd){.fd = px->lfd, .events = POLLIN};
        owner[n++] = -1;
        pf[n] = (struct pollfd){.fd = px->cfd_listen, .events = POLLIN};
        owner[n++] = -2;
        for (int i = 0; i < MAX_CTL; i++) {
            if (px->ctls[i].fd >= 0) {
                pf[n] = (struct pollfd){.fd = px->ctls[i].fd, .events = POLLIN};
                owner[n++] = -100 - i;
            }
        }
        for (int i = 0; i < MAX_PAIRS; i++) {
            struct pair *p = &px->pairs[i];
            if (!p->used) {
                continue;
            }
            short ce = 0, ue = 0;
            if (!p->c2u.src_eof && p->c2u.queued < QUEUE_MAX) {
                ce |= POLLIN;
            }
            if (!p->u2c.src_eof && p->u2c.queued < QUEUE_MAX && p->up_connected) {
                ue |= POLLIN;
            }
            uint64_t d1 = p->up_connected ? dir_next_due(&p->c2u) : UINT64_MAX;
            uint64_t d2 = dir_next_due(&p->u2c);
            uint64_t now = now_us();
            if (!p->up_connected) {
                ue |= POLLOUT;
            } else if (d1 <= now) {
                ue |= POLLOUT;
            }
            if (d2 <= now) {
                ce |= POLLOUT;
            }
            next_due = d1 < next_due ? d1 : next_due;
            next_due = d2 < next_due ? d2 : next_due;
            pf[n] = (struct pollfd){.fd = p->cfd, .events = ce};
            owner[n++] = 2 * i;
            pf[n] = (struct pollfd){.fd = p->ufd, .events = ue};
            owner[n++] = 2 * i + 1;
        }
        int timeout = 1000;
        if (next_due != UINT64_MAX) {
            uint64_t now = now_us();
            timeout = next_due <= now ? 0 : (int)((next_due - now + 999) / 1000);
            if (timeout > 1000) {
                timeout = 1000;
            }
        }
        int r = poll(pf, (nfds_t)n, timeout);
        if (r < 0 && errno != EINTR) {
            perror("chaosproxy: poll");
            return;
        }
        for (int k = 0; k < n; k++) {
            short re = pf[k].revents;
            int o = owner[k];
            if (o == -1) {
                if (re & POLLIN) {
                    do_accept(px);
                }
                continue;
            }
            if (o == -2) {
                if (re & POLLIN) {
                    ctl_accept(px);
                }
                continue;
            }
            if (o <= -100) {
                if (re) {
                    ctl_read(px, &px->ctls[-100 - o]);
                }
                continue;
            }
            struct pair *p = &px->pairs[o / 2];
            if (!p->used) {
                continue; /* closed earlier in this pass (cut) */
            }
            bool client = (o % 2) == 0;
            int rc = 0;
            if (!client && !p->up_connected && (re & (POLLOUT | POLLERR | POLLHUP))) {
                int err = 0;
                socklen_t sl = sizeof(err);
                getsockopt(p->ufd, SOL_SOCKET, SO_ERROR, &err, &sl);
                if (err != 0) {
                    pair_close(p);
                    continue;
                }
                p->up_connected = true;
            }
            if (re & (POLLIN | POLLHUP | POLLERR)) {
                rc = client ? pump_in(px, p, p->cfd, &p->c2u, &px->bytes_c2u)
                            : (p->up_connected ? pump_in(px, p, p->ufd, &p->u2c, &px->bytes_u2c) : 0);
            }
            if (rc == 0 && p->up_connected) {
                rc = client ? pump_out(px, p->cfd, &p->u2c) : pump_out(px, p->ufd, &p->c2u);
            }
            if (rc != 0 || (p->c2u.shut && p->u2c.shut) ||
                (px->s.blackhole && p->c2u.src_eof && p->u2c.src_eof)) {
                pair_close(p);
            }
        }
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: chaosproxy --listen 127.0.0.1:PORT --upstream 127.0.0.1:PORT --control 127.0.0.1:PORT\n");
}

int main(int argc, char **argv)
{
    static struct proxy px;
    struct sockaddr_in la, ca;
    const char *l = NULL, *u = NULL, *c = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--listen") == 0) {
            l = argv[i + 1];
        } else if (strcmp(argv[i], "--upstream") == 0) {
            u = argv[i + 1];
        } else if (strcmp(argv[i], "--control") == 0) {
            c = argv[i + 1];
        }
    }
    if (l == NULL || u == NULL || c == NULL || parse_addr(l, &la) != 0 || parse_addr(u, &px.upstream) != 0 ||
        parse_addr(c, &ca) != 0) {
        usage();
        fprintf(stderr, "chaosproxy: addresses must be loopback (127.x.x.x:port)\n");
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    px.rng = (uint64_t)now_us() | 1u;
    for (int i = 0; i < MAX_CTL; i++) {
        px.ctls[i].fd = -1;
    }
    int lport = 0, cport = 0;
    px.lfd = listen_on(&la, &lport);
    px.cfd_listen = px.lfd >= 0 ? listen_on(&ca, &cport) : -1;
    if (px.lfd < 0 || px.cfd_listen < 0) {
        perror("chaosproxy: listen");
        return 1;
    }
    printf("chaosproxy: listening on %d control on %d\n", lport, cport);
    fflush(stdout);
    run(&px);
    for (int i = 0; i < MAX_PAIRS; i++) {
        pair_close(&px.pairs[i]);
    }
    for (int i = 0; i < MAX_CTL; i++) {
        if (px.ctls[i].fd >= 0) {
            close(px.ctls[i].fd);
        }
    }
    close(px.lfd);
    close(px.cfd_listen);
    return 0;
}
