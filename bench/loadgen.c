/* SPDX-License-Identifier: MIT */
/*
 * loadgen: a closed-loop HTTP/1.1 load generator for loopback benchmarks.
 *
 * N keep-alive connections each carry exactly one request at a time, for a
 * warm-up and then a fixed measured window, spread over T threads that each
 * own an epoll instance and a share of the connections. Per-request latency
 * goes into a log-linear histogram; the summary ends with one machine-readable
 * `RESULT name=... rps=...` line that bench/run.sh parses.
 *
 * DESIGN
 * - Raw epoll, level-triggered, and the request is written straight after the
 *   previous response completes: on loopback the socket is almost always
 *   writable, so a request costs one write, one read and a share of an
 *   epoll_wait. EPOLLOUT is only armed for connect and for a partial write.
 * - Requests are serialised once at start-up (method, path, headers, body) and
 *   shared read-only by all threads; a rotating body set is used round-robin
 *   so point reads hit different keys.
 * - Throughput counts responses that complete inside the measured window;
 *   latencies of those same responses feed the histogram. Responses to
 *   requests in flight when the window closes are dropped.
 * - Histogram: 128 linear sub-buckets per power of two over nanoseconds, so a
 *   value is off by at most 1/256 when reported as its bucket's midpoint,
 *   from 1 ns up to the 10 s cap (values above are clamped and counted).
 * - Only loopback targets are accepted: this tool is for measuring this
 *   machine, not for pointing at someone else's.
 * - `--self-test` checks the histogram, the response parser and the URL
 *   rules without any network, so run.sh can refuse a broken generator.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "edgelite/alloc.h"

#define MAX_HEADERS 32
#define MAX_FAIL_ON 8
#define MAX_CONNS 10000
#define MAX_THREADS 64
#define MAX_BODIES 1000000
#define RBUF_INIT (64 * 1024)
#define RBUF_MAX (64u * 1024 * 1024) /* one response may not exceed this */
#define RETRY_DELAY_NS (10 * 1000000ull)
#define POLL_MS 5 /* bounds how late we notice the deadline */

/* ------------------------------------------------------------------ */
/* Histogram                                                            */
/* ------------------------------------------------------------------ */

#define HIST_SUB_BITS 7
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_NS 10000000000ull /* 10 s < 2^34 */
#define HIST_TOP_BIT 34
#define HIST_BUCKETS (HIST_SUB + (HIST_TOP_BIT - HIST_SUB_BITS) * HIST_SUB)

struct hist {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t clamped; /* values above HIST_MAX_NS */
    uint64_t min_ns;
    uint64_t max_ns;
    double sum_ns;
};

static void hist_init(struct hist *h)
{
    memset(h, 0, sizeof(*h));
    h->min_ns = UINT64_MAX;
}

static unsigned hist_index(uint64_t v)
{
    if (v < HIST_SUB) return (unsigned)v;
    unsigned e = 63u - (unsigned)__builtin_clzll(v); /* >= HIST_SUB_BITS */
    unsigned sub = (unsigned)(v >> (e - HIST_SUB_BITS)) & (HIST_SUB - 1);
    return HIST_SUB + (e - HIST_SUB_BITS) * HIST_SUB + sub;
}

/* Lowest value and width of bucket i. */
static void hist_bucket(unsigned i, uint64_t *out_lo, uint64_t *out_width)
{
    if (i < HIST_SUB) {
        *out_lo = i;
        *out_width = 1;
        return;
    }
    unsigned e = (i - HIST_SUB) / HIST_SUB + HIST_SUB_BITS;
    unsigned sub = (i - HIST_SUB) % HIST_SUB;
    *out_width = 1ull << (e - HIST_SUB_BITS);
    *out_lo = (1ull << e) + (uint64_t)sub * *out_width;
}

static void hist_record(struct hist *h, uint64_t v)
{
    if (v > HIST_MAX_NS) {
        v = HIST_MAX_NS;
        h->clamped++;
    }
    h->counts[hist_index(v)]++;
    h->total++;
    h->sum_ns += (double)v;
    if (v < h->min_ns) h->min_ns = v;
    if (v > h->max_ns) h->max_ns = v;
}

static void hist_merge(struct hist *dst, const struct hist *src)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++) dst->counts[i] += src->counts[i];
    dst->total += src->total;
    dst->clamped += src->clamped;
    dst->sum_ns += src->sum_ns;
    if (src->min_ns < dst->min_ns) dst->min_ns = src->min_ns;
    if (src->max_ns > dst->max_ns) dst->max_ns = src->max_ns;
}

/* Value at quantile q (0..1) in ns, as the midpoint of its bucket, kept
 * within the observed min/max so p100 reports the true maximum. */
static double hist_quantile(const struct hist *h, double q)
{
    if (h->total == 0) return 0.0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.999999);
    if (rank < 1) rank = 1;
    if (rank > h->total) rank = h->total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t lo, width;
            hist_bucket(i, &lo, &width);
            double mid = (double)lo + (double)(width - 1) / 2.0;
            if (mid < (double)h->min_ns) mid = (double)h->min_ns;
            if (mid > (double)h->max_ns) mid = (double)h->max_ns;
            return mid;
        }
    }
    return (double)h->max_ns;
}

/* ------------------------------------------------------------------ */
/* HTTP/1.1 response parser (incremental over one growing buffer)       */
/* ------------------------------------------------------------------ */

enum { RESP_MORE = 0, RESP_DONE = 1, RESP_BAD = 2 };

struct resp {
    size_t scan;           /* where to resume looking for the header end */
    size_t hdr_len;        /* 0 until the header block is complete */
    int status;
    bool chunked;
    bool to_close;         /* body runs until the peer closes */
    bool keep_alive;
    int64_t content_len;   /* -1 if absent */
    size_t chunk_pos;      /* next chunk-size line (chunked only) */
    size_t total_len;      /* bytes of the complete response (RESP_DONE) */
};

static void resp_reset(struct resp *r)
{
    memset(r, 0, sizeof(*r));
    r->content_len = -1;
}

static bool hdr_is(const char *line, size_t len, const char *name, const char **out_val,
                   size_t *out_vlen)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0) return false;
    const char *v = line + n + 1;
    const char *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    *out_val = v;
    *out_vlen = (size_t)(end - v);
    return true;
}

static bool token_in(const char *v, size_t vlen, const char *tok)
{
    size_t n = strlen(tok);
    for (size_t i = 0; i + n <= vlen; i++)
        if (strncasecmp(v + i, tok, n) == 0) return true;
    return false;
}

static int parse_headers(struct resp *r, const char *buf, size_t hdr_len, bool head_req)
{
    /* Status line: "HTTP/1.x SSS ...". */
    if (hdr_len < 12 || memcmp(buf, "HTTP/1.", 7) != 0) return RESP_BAD;
    bool http10 = buf[7] == '0';
    if (buf[8] != ' ') return RESP_BAD;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return RESP_BAD;
        st = st * 10 + (buf[i] - '0');
    }
    r->status = st;
    r->keep_alive = !http10;
    const char *p = memchr(buf, '\n', hdr_len);
    const char *end = buf + hdr_len;
    while (p && p + 1 < end) {
        const char *line = p + 1;
        const char *nl = memchr(line, '\n', (size_t)(end - line));
        if (!nl) break;
        size_t len = (size_t)(nl - line);
        if (len > 0 && line[len - 1] == '\r') len--;
        const char *v;
        size_t vlen;
        if (hdr_is(line, len, "content-length", &v, &vlen)) {
            int64_t cl = 0;
            if (vlen == 0 || vlen > 15) return RESP_BAD;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9') return RESP_BAD;
                cl = cl * 10 + (v[i] - '0');
            }
            r->content_len = cl;
        } else if (hdr_is(line, len, "transfer-encoding", &v, &vlen)) {
            if (token_in(v, vlen, "chunked")) r->chunked = true;
        } else if (hdr_is(line, len, "connection", &v, &vlen)) {
            if (token_in(v, vlen, "close")) r->keep_alive = false;
            else if (token_in(v, vlen, "keep-alive")) r->keep_alive = true;
        }
        p = nl;
    }
    if (head_req || st == 204 || st == 304 || (st >= 100 && st < 200)) {
        r->content_len = 0;
        r->chunked = false;
    } else if (r->chunked) {
        r->content_len = -1; /* RFC 9112 6.3: chunked wins over Content-Length */
    } else if (r->content_len < 0) {
        r->to_close = true;
        r->keep_alive = false;
    }
    if (r->content_len > (int64_t)RBUF_MAX) return RESP_BAD;
    return RESP_MORE;
}

static int parse_chunks(struct resp *r, const char *buf, size_t len)
{
    /* Bounded: each pass consumes at least one chunk line or returns. */
    while (r->chunk_pos < len) {
        const char *line = buf + r->chunk_pos;
        const char *nl = memchr(line, '\n', len - r->chunk_pos);
        if (!nl) return len - r->chunk_pos > 1024 ? RESP_BAD : RESP_MORE;
        uint64_t sz = 0;
        const char *q = line;
        int digits = 0;
        for (; q < nl; q++) {
            int d;
            if (*q >= '0' && *q <= '9') d = *q - '0';
            else if (*q >= 'a' && *q <= 'f') d = *q - 'a' + 10;
            else if (*q >= 'A' && *q <= 'F') d = *q - 'A' + 10;
            else break;
            if (++digits > 8) return RESP_BAD;
            sz = sz * 16 + (uint64_t)d;
        }
        if (digits == 0 || (*q != ';' && *q != '\r' && *q != '\n' && *q != ' ')) return RESP_BAD;
        size_t data = (size_t)(nl + 1 - buf);
        if (sz == 0) {
            /* Last chunk, then optional trailers and an empty line. */
            if (len - data >= 2 && buf[data] == '\r' && buf[data + 1] == '\n') {
                r->total_len = data + 2;
                return RESP_DONE;
            }
            const char *t = memmem(buf + data - 2, len - (data - 2), "\r\n\r\n", 4);
            if (!t) return RESP_MORE;
            r->total_len = (size_t)(t + 4 - buf);
            return RESP_DONE;
        }
        if (sz > RBUF_MAX) return RESP_BAD;
        if (len < data + sz + 2) return RESP_MORE;
        if (buf[data + sz] != '\r' || buf[data + sz + 1] != '\n') return RESP_BAD;
        r->chunk_pos = data + (size_t)sz + 2;
    }
    return RESP_MORE;
}

/* Feed the whole buffer received so far for the current response; returns
 * RESP_MORE, RESP_DONE (r->total_len, r->status set) or RESP_BAD. With eof,
 * a read-to-close body completes and anything else incomplete is bad. */
static int resp_parse(struct resp *r, const char *buf, size_t len, bool head_req, bool eof)
{
    if (r->hdr_len == 0) {
        size_t from = r->scan > 3 ? r->scan - 3 : 0;
        const char *e = len > from ? memmem(buf + from, len - from, "\r\n\r\n", 4) : NULL;
        if (!e) {
            r->scan = len;
            if (len > 64 * 1024) return RESP_BAD;
            return eof ? RESP_BAD : RESP_MORE;
        }
        r->hdr_len = (size_t)(e + 4 - buf);
        int rc = parse_headers(r, buf, r->hdr_len, head_req);
        if (rc != RESP_MORE) return rc;
        r->chunk_pos = r->hdr_len;
    }
    if (r->chunked) {
        int rc = parse_chunks(r, buf, len);
        if (rc == RESP_MORE && eof) return RESP_BAD;
        return rc;
    }
    if (r->to_close) {
        if (!eof) return RESP_MORE;
        r->total_len = len;
        return RESP_DONE;
    }
    size_t need = r->hdr_len + (size_t)r->content_len;
    if (len >= need) {
        r->total_len = need;
        return RESP_DONE;
    }
    return eof ? RESP_BAD : RESP_MORE;
}

/* ------------------------------------------------------------------ */
/* Options, URL, requests                                               */
/* ------------------------------------------------------------------ */

struct opts {
    int conns;
    int threads;
    double duration_s;
    double warmup_s;
    uint64_t max_requests; /* 0 = unlimited; counts warm-up requests too */
    const char *url;
    const char *method;
    const char *name;
    const char *body;
    const char *body_file;
    const char *bodies_file;
    bool bodies_hex; /* each line of bodies_file is hex: binary bodies such as protobuf */
    const char *headers[MAX_HEADERS];
    int n_headers;
    const char *fail_on[MAX_FAIL_ON];
    int n_fail_on;
    bool quiet;
};

struct target {
    struct sockaddr_storage addr;
    socklen_t addrlen;
    char hostport[300]; /* for the Host header, as written in the URL */
    char path[2048];
};

struct reqset {
    char **bufs;
    size_t *lens;
    size_t n;
};

/* Parse http://HOST:PORT/path where HOST is an IPv4 loopback address,
 * "localhost" or [::1]. Anything else is refused. */
static int parse_url(const char *url, struct target *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof(*t));
    const char *p;
    if (strncmp(url, "http://", 7) != 0) {
        snprintf(err, errlen, "only http:// URLs are supported");
        return -1;
    }
    p = url + 7;
    const char *slash = strchr(p, '/');
    size_t hp_len = slash ? (size_t)(slash - p) : strlen(p);
    if (hp_len == 0 || hp_len >= sizeof(t->hostport)) {
        snprintf(err, errlen, "bad host in URL");
        return -1;
    }
    memcpy(t->hostport, p, hp_len);
    t->hostport[hp_len] = '\0';
    const char *path = slash ? slash : "/";
    if (strlen(path) >= sizeof(t->path)) {
        snprintf(err, errlen, "path too long");
        return -1;
    }
    snprintf(t->path, sizeof(t->path), "%s", path);

    char host[256];
    const char *port_s = NULL;
    if (t->hostport[0] == '[') {
        const char *rb = strchr(t->hostport, ']');
        if (!rb || (size_t)(rb - t->hostport - 1) >= sizeof(host)) {
            snprintf(err, errlen, "bad IPv6 literal");
            return -1;
        }
        memcpy(host, t->hostport + 1, (size_t)(rb - t->hostport - 1));
        host[rb - t->hostport - 1] = '\0';
        if (rb[1] == ':') port_s = rb + 2;
        else if (rb[1] != '\0') {
            snprintf(err, errlen, "bad IPv6 literal");
            return -1;
        }
    } else {
        const char *colon = strrchr(t->hostport, ':');
        size_t hl = colon ? (size_t)(colon - t->hostport) : strlen(t->hostport);
        if (hl >= sizeof(host)) {
            snprintf(err, errlen, "host too long");
            return -1;
        }
        memcpy(host, t->hostport, hl);
        host[hl] = '\0';
        if (colon) port_s = colon + 1;
    }
    long port = 80;
    if (port_s) {
        char *e;
        errno = 0;
        port = strtol(port_s, &e, 10);
        if (errno || *e != '\0' || port < 1 || port > 65535 || e == port_s) {
            snprintf(err, errlen, "bad port");
            return -1;
        }
    }
    struct sockaddr_in *a4 = (struct sockaddr_in *)&t->addr;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&t->addr;
    if (strcasecmp(host, "localhost") == 0) {
        a4->sin_family = AF_INET;
        a4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a4->sin_port = htons((uint16_t)port);
        t->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        if ((ntohl(a4->sin_addr.s_addr) >> 24) != 127) {
            snprintf(err, errlen, "refusing non-loopback address %.64s", host);
            return -1;
        }
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)port);
        t->addrlen = sizeof(*a4);
    } else if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        if (!IN6_IS_ADDR_LOOPBACK(&a6->sin6_addr)) {
            snprintf(err, errlen, "refusing non-loopback address %.64s", host);
            return -1;
        }
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)port);
        t->addrlen = sizeof(*a6);
    } else {
        snprintf(err, errlen, "refusing host '%.64s': only loopback literals or localhost", host);
        return -1;
    }
    return 0;
}

static char *read_file(const char *path, size_t *out_len)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    if (!f) return NULL;
    struct stat st;
    if (fstat(fileno(f), &st) != 0 || st.st_size < 0 || st.st_size > (off_t)RBUF_MAX * 16) goto out;
    buf = edge_malloc((size_t)st.st_size + 1);
    if (!buf) goto out;
    size_t n = fread(buf, 1, (size_t)st.st_size, f);
    if (n != (size_t)st.st_size) {
        edge_free(buf);
        buf = NULL;
        goto out;
    }
    buf[n] = '\0';
    *out_len = n;
out:
    fclose(f);
    return buf;
}

static void reqset_free(struct reqset *rs)
{
    for (size_t i = 0; i < rs->n; i++) edge_free(rs->bufs[i]);
    edge_free(rs->bufs);
    edge_free(rs->lens);
    memset(rs, 0, sizeof(*rs));
}

static int reqset_add(struct reqset *rs, size_t cap, const struct opts *o, const struct target *t,
                      const char *body, size_t body_len)
{
    size_t hdr_bytes = 0;
    for (int i = 0; i < o->n_headers; i++) hdr_bytes += strlen(o->headers[i]) + 2;
    size_t size = strlen(o->method) + strlen(t->path) + strlen(t->hostport) + hdr_bytes + body_len + 128;
    char *buf = edge_malloc(size);
    if (!buf || rs->n >= cap) {
        edge_free(buf);
        return -1;
    }
    int n = snprintf(buf, size, "%s %s HTTP/1.1\r\nHost: %s\r\n", o->method, t->path, t->hostport);
    size_t off = (size_t)n;
    bool has_body = body != NULL;
    if (has_body || strcmp(o->method, "POST") == 0 || strcmp(o->method, "PUT") == 0)
        off += (size_t)snprintf(buf + off, size - off, "Content-Length: %zu\r\n", body_len);
    for (int i = 0; i < o->n_headers; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s\r\n", o->headers[i]);
    off += (size_t)snprintf(buf + off, size - off, "\r\n");
    if (body_len) memcpy(buf + off, body, body_len);
    off += body_len;
    rs->bufs[rs->n] = buf;
    rs->lens[rs->n] = off;
    rs->n++;
    return 0;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int reqset_build(struct reqset *rs, const struct opts *o, const struct target *t)
{
    char *file = NULL;
    size_t file_len = 0;
    int rv = -1;
    size_t cap = 1;
    memset(rs, 0, sizeof(*rs));
    if (o->bodies_file) {
        file = read_file(o->bodies_file, &file_len);
        if (!file) {
            fprintf(stderr, "loadgen: cannot read %s\n", o->bodies_file);
            goto out;
        }
        cap = 0;
        for (size_t i = 0; i < file_len; i++) cap += file[i] == '\n';
        cap++;
        if (cap > MAX_BODIES) cap = MAX_BODIES;
    } else if (o->body_file) {
        file = read_file(o->body_file, &file_len);
        if (!file) {
            fprintf(stderr, "loadgen: cannot read %s\n", o->body_file);
            goto out;
        }
    }
    rs->bufs = edge_calloc(cap, sizeof(*rs->bufs));
    rs->lens = edge_calloc(cap, sizeof(*rs->lens));
    if (!rs->bufs || !rs->lens) goto out;
    if (o->bodies_file) {
        char *line = file;
        char *end = file + file_len;
        while (line < end && rs->n < cap) {
            char *nl = memchr(line, '\n', (size_t)(end - line));
            char *le = nl ? nl : end;
            size_t len = (size_t)(le - line);
            if (len && line[len - 1] == '\r') len--;
            if (len && o->bodies_hex) {
                /* Decode in place: a body is half as long as its hex line. */
                if (len % 2 != 0) goto bad_hex;
                for (size_t i = 0; i < len / 2; i++) {
                    int hi = hexval(line[2 * i]), lo = hexval(line[2 * i + 1]);
                    if (hi < 0 || lo < 0) goto bad_hex;
                    line[i] = (char)(hi << 4 | lo);
                }
                len /= 2;
            }
            if (len && reqset_add(rs, cap, o, t, line, len) != 0) goto out;
            line = le + 1;
        }
        if (rs->n == 0) {
            fprintf(stderr, "loadgen: %s holds no bodies\n", o->bodies_file);
            goto out;
        }
    } else if (o->body_file) {
        if (reqset_add(rs, cap, o, t, file, file_len) != 0) goto out;
    } else {
        if (reqset_add(rs, cap, o, t, o->body, o->body ? strlen(o->body) : 0) != 0) goto out;
    }
    rv = 0;
    goto out;
bad_hex:
    fprintf(stderr, "loadgen: %s: a line is not hex (--hex)\n", o->bodies_file);
out:
    edge_free(file);
    if (rv != 0) reqset_free(rs);
    return rv;
}

/* ------------------------------------------------------------------ */
/* Workers                                                              */
/* ------------------------------------------------------------------ */

enum conn_state { C_CLOSED, C_CONNECTING, C_WRITING, C_READING, C_RETRY, C_DONE };

struct worker;

struct conn {
    int fd;
    enum conn_state state;
    uint32_t events;   /* what epoll currently waits for */
    size_t req;        /* index into the request set */
    size_t wr_off;
    char *rbuf;
    size_t rlen;
    size_t rcap;
    struct resp resp;
    uint64_t start_ns; /* when the current request was first written */
    uint64_t retry_at_ns;
    struct worker *w;
};

struct shared {
    const struct opts *o;
    const struct target *t;
    const struct reqset *rs;
    bool head_req;
    atomic_uint_fast64_t issued;
    atomic_bool stop;
    uint64_t t_measure_ns; /* start of the measured window */
    uint64_t t_end_ns;     /* end of the measured window */
};

struct worker {
    pthread_t tid;
    int idx;
    int epfd;
    struct conn *conns;
    int n_conns;
    size_t next_req;
    struct shared *sh;
    struct hist hist;
    uint64_t ok;          /* completed responses in the window */
    uint64_t non2xx;
    uint64_t app_errors;  /* 2xx bodies matching --fail-on */
    uint64_t conn_errors; /* connect failures */
    uint64_t io_errors;   /* resets, unexpected closes, protocol errors */
    uint64_t reconnects;
    uint64_t bytes_in;
    uint64_t total_done;  /* all completed responses, warm-up included */
    int n_retry;
    int n_active;         /* connections not in C_DONE */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool in_window(const struct shared *sh, uint64_t t)
{
    return t >= sh->t_measure_ns && t < sh->t_end_ns;
}

static void conn_set_events(struct conn *c, uint32_t ev)
{
    if (c->events == ev) return;
    struct epoll_event e = {.events = ev, .data.ptr = c};
    if (epoll_ctl(c->w->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0) c->events = ev;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0) {
        epoll_ctl(c->w->epfd, EPOLL_CTL_DEL, c->fd, NULL);
        close(c->fd);
    }
    c->fd = -1;
    c->state = C_CLOSED;
    c->events = 0;
    c->rlen = 0;
}

static void conn_finish(struct conn *c)
{
    conn_close(c);
    c->state = C_DONE;
    c->w->n_active--;
}

static void conn_send(struct conn *c, uint64_t now);

static void conn_schedule_retry(struct conn *c, uint64_t now)
{
    conn_close(c);
    c->state = C_RETRY;
    c->retry_at_ns = now + RETRY_DELAY_NS;
    c->w->n_retry++;
}

static void conn_connect(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    const struct target *t = w->sh->t;
    int fd = socket(t->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        if (in_window(w->sh, now)) w->conn_errors++;
        conn_schedule_retry(c, now);
        return;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    c->fd = fd;
    c->rlen = 0;
    int rc = connect(fd, (const struct sockaddr *)&t->addr, t->addrlen);
    if (rc != 0 && errno != EINPROGRESS) {
        if (in_window(w->sh, now)) w->conn_errors++;
        close(fd);
        c->fd = -1;
        conn_schedule_retry(c, now);
        return;
    }
    struct epoll_event e = {.events = EPOLLOUT, .data.ptr = c};
    if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, fd, &e) != 0) {
        close(fd);
        c->fd = -1;
        if (in_window(w->sh, now)) w->conn_errors++;
        conn_schedule_retry(c, now);
        return;
    }
    c->events = EPOLLOUT;
    c->state = C_CONNECTING;
}

/* An in-flight request died with its connection: count it and start over. */
static void conn_fail(struct conn *c, uint64_t now)
{
    if (in_window(c->w->sh, now)) c->w->io_errors++;
    conn_close(c);
    c->w->reconnects++;
    conn_connect(c, now);
}

static void conn_write(struct conn *c, uint64_t now)
{
    const struct reqset *rs = c->w->sh->rs;
    const char *buf = rs->bufs[c->req];
    size_t len = rs->lens[c->req];
    while (c->wr_off < len) {
        ssize_t n = send(c->fd, buf + c->wr_off, len - c->wr_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->wr_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->state = C_WRITING;
            conn_set_events(c, EPOLLOUT);
            return;
        }
        conn_fail(c, now);
        return;
    }
    c->state = C_READING;
    conn_set_events(c, EPOLLIN);
}

static void conn_send(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    struct shared *sh = w->sh;
    if (atomic_load_explicit(&sh->stop, memory_order_relaxed) || now >= sh->t_end_ns) {
        conn_finish(c);
        return;
    }
    if (sh->o->max_requests) {
        uint64_t k = atomic_fetch_add_explicit(&sh->issued, 1, memory_order_relaxed);
        if (k >= sh->o->max_requests) {
            conn_finish(c);
            return;
        }
    }
    c->req = w->next_req;
    w->next_req = (w->next_req + 1) % sh->rs->n;
    c->wr_off = 0;
    c->rlen = 0;
    resp_reset(&c->resp);
    c->start_ns = now;
    conn_write(c, now);
}

static bool body_matches(const struct opts *o, const char *body, size_t len)
{
    for (int i = 0; i < o->n_fail_on; i++)
        if (memmem(body, len, o->fail_on[i], strlen(o->fail_on[i]))) return true;
    return false;
}

static void conn_complete(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    struct resp *r = &c->resp;
    w->total_done++;
    if (in_window(w->sh, now)) {
        w->ok++;
        hist_record(&w->hist, now - c->start_ns);
        if (r->status < 200 || r->status > 299) w->non2xx++;
        else if (w->sh->o->n_fail_on &&
                 body_matches(w->sh->o, c->rbuf + r->hdr_len, r->total_len - r->hdr_len))
            w->app_errors++;
    }
    if (c->rlen > r->total_len) {
        /* Bytes nobody asked for: the stream is out of step, so drop it. */
        conn_fail(c, now);
        return;
    }
    c->rlen = 0;
    if (!r->keep_alive) {
        conn_close(c);
        w->reconnects++;
        conn_connect(c, now);
        return;
    }
    conn_send(c, now);
}

static void conn_read(struct conn *c, uint64_t now)
{
    struct worker *w = c->w;
    /* Bounded: each pass either reads bytes into a capped buffer or returns. */
    for (;;) {
        if (c->rcap - c->rlen < 4096) {
            if (c->rcap >= RBUF_MAX) {
                conn_fail(c, now);
                return;
            }
            size_t ncap = c->rcap ? c->rcap * 2 : RBUF_INIT;
            char *nb = edge_realloc(c->rbuf, ncap);
            if (!nb) {
                conn_fail(c, now);
                return;
            }
            c->rbuf = nb;
            c->rcap = ncap;
        }
        ssize_t n = recv(c->fd, c->rbuf + c->rlen, c->rcap - c->rlen, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
        if (n < 0) {
            conn_fail(c, now);
            return;
        }
        bool eof = n == 0;
        c->rlen += (size_t)n;
        if (in_window(w->sh, now)) w->bytes_in += (uint64_t)n;
        if (eof && c->rlen == 0) {
            conn_fail(c, now);
            return;
        }
        int rc = resp_parse(&c->resp, c->rbuf, c->rlen, w->sh->head_req, eof);
        if (rc == RESP_DONE) {
            if (eof) c->resp.keep_alive = false;
            conn_complete(c, now);
            return;
        }
        if (rc == RESP_BAD) {
            conn_fail(c, now);
            return;
        }
        if (eof) {
            conn_fail(c, now);
            return;
        }
        if (c->rlen < c->rcap) return; /* level-triggered: epoll tells us when there is more */
    }
}

static void conn_event(struct conn *c, uint32_t ev, uint64_t now)
{
    switch (c->state) {
    case C_CONNECTING: {
        int err = 0;
        socklen_t len = sizeof(err);
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0 ||
            (ev & (EPOLLERR | EPOLLHUP))) {
            if (in_window(c->w->sh, now)) c->w->conn_errors++;
            conn_schedule_retry(c, now);
            return;
        }
        conn_send(c, now);
        return;
    }
    case C_WRITING:
        if (ev & EPOLLERR) conn_fail(c, now);
        else conn_write(c, now);
        return;
    case C_READING:
        conn_read(c, now);
        return;
    default:
        return;
    }
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    struct shared *sh = w->sh;
    struct epoll_event evs[256];
    uint64_t now = now_ns();
    for (int i = 0; i < w->n_conns; i++) conn_connect(&w->conns[i], now);
    /* Bounded by the deadline: every pass waits at most POLL_MS. */
    while (w->n_active > 0) {
        now = now_ns();
        if (now >= sh->t_end_ns || atomic_load_explicit(&sh->stop, memory_order_relaxed)) break;
        if (w->n_retry > 0) {
            for (int i = 0; i < w->n_conns; i++) {
                struct conn *c = &w->conns[i];
                if (c->state == C_RETRY && now >= c->retry_at_ns) {
                    w->n_retry--;
                    c->state = C_CLOSED;
                    conn_connect(c, now);
                }
            }
        }
        int n = epoll_wait(w->epfd, evs, 256, POLL_MS);
        if (n < 0) {
            if (errno == EINTR) continue;
            break;
        }
        now = now_ns();
        for (int i = 0; i < n; i++) conn_event(evs[i].data.ptr, evs[i].events, now);
    }
    return NULL;
}

/* ------------------------------------------------------------------ */
/* Self-test                                                            */
/* ------------------------------------------------------------------ */

static int st_failures;
static int st_checks;

#define CHECK(cond)                                                                    \
    do {                                                                               \
        st_checks++;                                                                   \
        if (!(cond)) {                                                                 \
            st_failures++;                                                             \
            fprintf(stderr, "self-test: %s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                            \
        }                                                                              \
    } while (0)

/* Feed a response one byte at a time and all at once; both must agree. */
static int st_parse(const char *raw, bool head, bool eof_at_end, struct resp *out)
{
    size_t len = strlen(raw);
    int rc_all;
    resp_reset(out);
    rc_all = resp_parse(out, raw, len, head, eof_at_end);
    struct resp r;
    resp_reset(&r);
    int rc = RESP_MORE;
    for (size_t i = 1; i <= len && rc == RESP_MORE; i++)
        rc = resp_parse(&r, raw, i, head, eof_at_end && i == len);
    if (rc != rc_all || (rc == RESP_DONE && r.total_len != out->total_len)) return -1;
    return rc_all;
}

static int self_test(void)
{
    struct resp r;
    struct hist *h = edge_calloc(1, sizeof(*h));
    if (!h) return 1;

    /* Histogram: exact below 128 ns, <1% relative error up to 10 s. */
    for (uint64_t v = 1; v <= HIST_MAX_NS; v = v * 3 + 7) {
        hist_init(h);
        hist_record(h, v);
        hist_record(h, v + 1); /* keeps min/max from hiding bucket error */
        hist_record(h, v * 2);
        double got = hist_quantile(h, 0.5);
        double err = (got - (double)(v + 1)) / (double)(v + 1);
        if (err < 0) err = -err;
        CHECK(err < 0.01);
    }
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        uint64_t lo, width;
        hist_bucket(i, &lo, &width);
        CHECK(hist_index(lo) == i);
        CHECK(hist_index(lo + width - 1) == i);
    }
    hist_init(h);
    for (uint64_t v = 1; v <= 1000; v++) hist_record(h, v * 1000); /* 1..1000 us */
    CHECK(hist_quantile(h, 0.50) > 495000.0 && hist_quantile(h, 0.50) < 505000.0);
    CHECK(hist_quantile(h, 0.99) > 985000.0 && hist_quantile(h, 0.99) < 995000.0);
    CHECK(hist_quantile(h, 1.0) == 1000000.0);
    CHECK(hist_quantile(h, 0.0) >= 1000.0 && hist_quantile(h, 0.0) < 1010.0);
    hist_record(h, HIST_MAX_NS * 3);
    CHECK(h->clamped == 1 && h->max_ns == HIST_MAX_NS);
    edge_free(h);

    /* Response parser. */
    CHECK(st_parse("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":true}", false, false, &r) ==
          RESP_DONE);
    CHECK(r.status == 200 && r.keep_alive && r.total_len == 50);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":tru", false, false, &r) ==
          RESP_MORE);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n{\"ok\":tru", false, true, &r) ==
          RESP_BAD);
    CHECK(st_parse("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: close\r\n\r\n", false,
                   false, &r) == RESP_DONE);
    CHECK(r.status == 404 && !r.keep_alive);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n",
                   false, false, &r) == RESP_DONE);
    CHECK(r.total_len == strlen("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "5\r\nhello\r\nA;ext=1\r\n0123456789\r\n0\r\n\r\n"));
    CHECK(st_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
                   false, false, &r) == RESP_DONE);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcd\r\n0\r\n\r\n", false,
                   false, &r) == RESP_BAD);
    CHECK(st_parse("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close", false, true, &r) ==
          RESP_DONE);
    CHECK(!r.keep_alive && r.total_len == strlen("HTTP/1.0 200 OK\r\nServer: x\r\n\r\nbody until close"));
    CHECK(st_parse("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok", false,
                   false, &r) == RESP_DONE);
    CHECK(r.keep_alive);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", true, false, &r) == RESP_DONE);
    CHECK(st_parse("HTTP/1.1 204 No Content\r\n\r\n", false, false, &r) == RESP_DONE);
    CHECK(st_parse("HTTP/1.1 2x0 OK\r\n\r\n", false, false, &r) == RESP_BAD);
    CHECK(st_parse("SSH-2.0-OpenSSH\r\n\r\n", false, false, &r) == RESP_BAD);
    CHECK(st_parse("HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", false, false, &r) == RESP_BAD);

    /* URL rules: loopback only. */
    struct target t;
    char err[256];
    CHECK(parse_url("http://127.0.0.1:8080/v2/pipeline", &t, err, sizeof(err)) == 0);
    CHECK(strcmp(t.path, "/v2/pipeline") == 0 && strcmp(t.hostport, "127.0.0.1:8080") == 0);
    CHECK(parse_url("http://localhost:1/", &t, err, sizeof(err)) == 0);
    CHECK(parse_url("http://[::1]:9000/x", &t, err, sizeof(err)) == 0);
    CHECK(parse_url("http://127.1.2.3:80", &t, err, sizeof(err)) == 0 && strcmp(t.path, "/") == 0);
    CHECK(parse_url("http://10.0.0.1:80/", &t, err, sizeof(err)) != 0);
    CHECK(parse_url("http://example.com/", &t, err, sizeof(err)) != 0);
    CHECK(parse_url("http://[2001:db8::1]:80/", &t, err, sizeof(err)) != 0);
    CHECK(parse_url("https://127.0.0.1/", &t, err, sizeof(err)) != 0);
    CHECK(parse_url("http://127.0.0.1:99999/", &t, err, sizeof(err)) != 0);
    CHECK(parse_url("http://127.0.0.1:/", &t, err, sizeof(err)) != 0);

    printf("self-test: %d checks, %d failed\n", st_checks, st_failures);
    return st_failures ? 1 : 0;
}

/* ------------------------------------------------------------------ */
/* Main                                                                 */
/* ------------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: loadgen --url http://127.0.0.1:PORT/path [options]\n"
            "  -c N               connections, one request in flight each (64)\n"
            "  -d SEC             measured duration (10)\n"
            "  --warmup SEC       warm-up before measuring (2)\n"
            "  --threads T        event-loop threads (1)\n"
            "  --max-requests N   stop after issuing N requests, warm-up included (0 = no cap)\n"
            "  -m METHOD          request method (GET, or POST when a body is given)\n"
            "  --body STR | --body-file F | --bodies-file F (one body per line, round-robin)\n"
            "  --hex              each line of --bodies-file is hex (binary bodies, e.g. protobuf)\n"
            "  -H 'K: V'          extra header (repeatable)\n"
            "  --fail-on STR      count 2xx responses whose body contains STR as app errors\n"
            "  --name NAME        label for the RESULT line\n"
            "  -q                 only print the RESULT line\n"
            "  --self-test        run the built-in checks and exit\n");
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    char *e;
    errno = 0;
    double v = strtod(s, &e);
    if (errno || e == s || *e != '\0' || v < lo || v > hi) return false;
    *out = v;
    return true;
}

static bool parse_u64(const char *s, uint64_t hi, uint64_t *out)
{
    char *e;
    errno = 0;
    if (*s == '-') return false;
    unsigned long long v = strtoull(s, &e, 10);
    if (errno || e == s || *e != '\0' || v > hi) return false;
    *out = v;
    return true;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    memset(o, 0, sizeof(*o));
    o->conns = 64;
    o->threads = 1;
    o->duration_s = 10;
    o->warmup_s = 2;
    o->name = "loadgen";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint64_t u;
#define NEED_VALUE()                                                     \
    do {                                                                 \
        if (!v) {                                                        \
            fprintf(stderr, "loadgen: %s needs a value\n", a);           \
            return -1;                                                   \
        }                                                                \
        i++;                                                             \
    } while (0)
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            exit(0);
        } else if (strcmp(a, "-q") == 0) {
            o->quiet = true;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--connections") == 0) {
            NEED_VALUE();
            if (!parse_u64(v, MAX_CONNS, &u) || u == 0) goto bad;
            o->conns = (int)u;
        } else if (strcmp(a, "--threads") == 0 || strcmp(a, "-t") == 0) {
            NEED_VALUE();
            if (!parse_u64(v, MAX_THREADS, &u) || u == 0) goto bad;
            o->threads = (int)u;
        } else if (strcmp(a, "-d") == 0 || strcmp(a, "--duration") == 0) {
            NEED_VALUE();
            if (!parse_double(v, 0.1, 3600, &o->duration_s)) goto bad;
        } else if (strcmp(a, "--warmup") == 0) {
            NEED_VALUE();
            if (!parse_double(v, 0, 3600, &o->warmup_s)) goto bad;
        } else if (strcmp(a, "--max-requests") == 0) {
            NEED_VALUE();
            if (!parse_u64(v, UINT64_MAX, &o->max_requests)) goto bad;
        } else if (strcmp(a, "--url") == 0) {
            NEED_VALUE();
            o->url = v;
        } else if (strcmp(a, "-m") == 0 || strcmp(a, "--method") == 0) {
            NEED_VALUE();
            o->method = v;
        } else if (strcmp(a, "--body") == 0) {
            NEED_VALUE();
            o->body = v;
        } else if (strcmp(a, "--body-file") == 0) {
            NEED_VALUE();
            o->body_file = v;
        } else if (strcmp(a, "--bodies-file") == 0) {
            NEED_VALUE();
            o->bodies_file = v;
        } else if (strcmp(a, "--hex") == 0) {
            o->bodies_hex = true;
        } else if (strcmp(a, "-H") == 0 || strcmp(a, "--header") == 0) {
            NEED_VALUE();
            if (o->n_headers >= MAX_HEADERS || !strchr(v, ':') || strpbrk(v, "\r\n")) goto bad;
            o->headers[o->n_headers++] = v;
        } else if (strcmp(a, "--fail-on") == 0) {
            NEED_VALUE();
            if (o->n_fail_on >= MAX_FAIL_ON || v[0] == '\0') goto bad;
            o->fail_on[o->n_fail_on++] = v;
        } else if (strcmp(a, "--name") == 0) {
            NEED_VALUE();
            if (strpbrk(v, " \t\r\n=")) goto bad;
            o->name = v;
        } else {
            fprintf(stderr, "loadgen: unknown option %s\n", a);
            return -1;
        }
        continue;
    bad:
        fprintf(stderr, "loadgen: bad value for %s: %s\n", a, v ? v : "(none)");
        return -1;
#undef NEED_VALUE
    }
    if (!o->url) {
        fprintf(stderr, "loadgen: --url is required\n");
        return -1;
    }
    if ((o->body != NULL) + (o->body_file != NULL) + (o->bodies_file != NULL) > 1) {
        fprintf(stderr, "loadgen: use only one of --body, --body-file, --bodies-file\n");
        return -1;
    }
    if (o->bodies_hex && !o->bodies_file) {
        fprintf(stderr, "loadgen: --hex needs --bodies-file\n");
        return -1;
    }
    if (!o->method) o->method = (o->body || o->body_file || o->bodies_file) ? "POST" : "GET";
    if (strpbrk(o->method, " \r\n") || o->method[0] == '\0') {
        fprintf(stderr, "loadgen: bad method\n");
        return -1;
    }
    if (o->threads > o->conns) o->threads = o->conns;
    return 0;
}

int main(int argc, char **argv)
{
    struct opts o;
    struct target t;
    struct reqset rs = {0};
    struct shared *sh = NULL;
    struct worker *ws = NULL;
    struct conn *conns = NULL;
    struct hist *total = NULL;
    int rv = 1;
    int started = 0;
    char err[256];

    if (argc == 2 && strcmp(argv[1], "--self-test") == 0) return self_test();
    if (parse_args(argc, argv, &o) != 0) {
        usage(stderr);
        return 2;
    }
    if (parse_url(o.url, &t, err, sizeof(err)) != 0) {
        fprintf(stderr, "loadgen: %s: %s\n", o.url, err);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (reqset_build(&rs, &o, &t) != 0) goto out;

    sh = edge_calloc(1, sizeof(*sh));
    ws = edge_calloc((size_t)o.threads, sizeof(*ws));
    conns = edge_calloc((size_t)o.conns, sizeof(*conns));
    total = edge_calloc(1, sizeof(*total));
    if (!sh || !ws || !conns || !total) {
        fprintf(stderr, "loadgen: out of memory\n");
        goto out;
    }
    sh->o = &o;
    sh->t = &t;
    sh->rs = &rs;
    sh->head_req = strcmp(o.method, "HEAD") == 0;
    atomic_init(&sh->issued, 0);
    atomic_init(&sh->stop, false);
    uint64_t t0 = now_ns();
    sh->t_measure_ns = t0 + (uint64_t)(o.warmup_s * 1e9);
    sh->t_end_ns = sh->t_measure_ns + (uint64_t)(o.duration_s * 1e9);

    for (int i = 0; i < o.threads; i++) ws[i].epfd = -1;
    int next_conn = 0;
    for (int i = 0; i < o.threads; i++) {
        struct worker *w = &ws[i];
        w->idx = i;
        w->sh = sh;
        hist_init(&w->hist);
        w->n_conns = o.conns / o.threads + (i < o.conns % o.threads ? 1 : 0);
        w->conns = conns + next_conn;
        next_conn += w->n_conns;
        w->n_active = w->n_conns;
        w->next_req = (rs.n * (size_t)i) / (size_t)o.threads;
        for (int k = 0; k < w->n_conns; k++) {
            w->conns[k].fd = -1;
            w->conns[k].w = w;
            w->conns[k].req = 0;
        }
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0) {
            perror("loadgen: epoll_create1");
            goto out;
        }
    }
    for (; started < o.threads; started++) {
        if (pthread_create(&ws[started].tid, NULL, worker_main, &ws[started]) != 0) {
            fprintf(stderr, "loadgen: cannot start thread\n");
            atomic_store(&sh->stop, true);
            break;
        }
    }
    for (int i = 0; i < started; i++) pthread_join(ws[i].tid, NULL);
    if (started < o.threads) goto out;
    uint64_t t_stop = now_ns();

    /* Stopped early (cap reached)? Then the window ended when the last worker did. */
    uint64_t w_end = t_stop < sh->t_end_ns ? t_stop : sh->t_end_ns;
    double window_s = w_end > sh->t_measure_ns ? (double)(w_end - sh->t_measure_ns) / 1e9 : 0.0;
    uint64_t ok = 0, non2xx = 0, app = 0, cerr = 0, ioerr = 0, recon = 0, bytes = 0, done = 0;
    hist_init(total);
    for (int i = 0; i < o.threads; i++) {
        hist_merge(total, &ws[i].hist);
        ok += ws[i].ok;
        non2xx += ws[i].non2xx;
        app += ws[i].app_errors;
        cerr += ws[i].conn_errors;
        ioerr += ws[i].io_errors;
        recon += ws[i].reconnects;
        bytes += ws[i].bytes_in;
        done += ws[i].total_done;
    }
    double rps = window_s > 0 ? (double)ok / window_s : 0.0;
    double p50 = hist_quantile(total, 0.50) / 1e3;
    double p90 = hist_quantile(total, 0.90) / 1e3;
    double p95 = hist_quantile(total, 0.95) / 1e3;
    double p99 = hist_quantile(total, 0.99) / 1e3;
    double p999 = hist_quantile(total, 0.999) / 1e3;
    double mean = total->total ? total->sum_ns / (double)total->total / 1e3 : 0.0;
    if (!o.quiet) {
        printf("loadgen %s: %s %s, %d connections, %d thread(s), %zu distinct request(s)\n", o.name,
               o.method, o.url, o.conns, o.threads, rs.n);
        printf("  window     %.2f s after %.2f s warm-up (%" PRIu64 " responses incl. warm-up)\n",
               window_s, o.warmup_s, done);
        printf("  requests   %" PRIu64 "   %.0f req/s   %.1f MB/s in\n", ok, rps,
               window_s > 0 ? (double)bytes / window_s / 1e6 : 0.0);
        printf("  latency us mean %.1f  min %.1f  p50 %.1f  p90 %.1f  p95 %.1f  p99 %.1f  p99.9 %.1f"
               "  max %.1f\n",
               mean, total->total ? (double)total->min_ns / 1e3 : 0.0, p50, p90, p95, p99, p999,
               (double)total->max_ns / 1e3);
        printf("  errors     connect %" PRIu64 "  io/protocol %" PRIu64 "  non-2xx %" PRIu64
               "  app %" PRIu64 "  reconnects %" PRIu64 "\n",
               cerr, ioerr, non2xx, app, recon);
    }
    printf("RESULT name=%s rps=%.0f p50_us=%.1f p95_us=%.1f p99_us=%.1f errors=%" PRIu64
           " non2xx=%" PRIu64 " app_errors=%" PRIu64 " requests=%" PRIu64 " duration_s=%.2f conns=%d"
           " threads=%d\n",
           o.name, rps, p50, p95, p99, cerr + ioerr, non2xx, app, ok, window_s, o.conns, o.threads);
    fflush(stdout);
    rv = ok > 0 ? 0 : 1;
    if (ok == 0) fprintf(stderr, "loadgen: no response completed in the measured window\n");
out:
    if (ws) {
        for (int i = 0; i < o.threads; i++) {
            for (int k = 0; k < ws[i].n_conns && ws[i].conns; k++) {
                struct conn *c = &ws[i].conns[k];
                if (c->fd >= 0) close(c->fd);
                edge_free(c->rbuf);
            }
            if (ws[i].epfd >= 0) close(ws[i].epfd);
        }
    }
    edge_free(total);
    edge_free(conns);
    edge_free(ws);
    edge_free(sh);
    reqset_free(&rs);
    return rv;
}
