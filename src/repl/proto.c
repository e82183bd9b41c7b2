/* SPDX-License-Identifier: MIT */
/* Encoders and bounds-checked decoders of the peer protocol messages (repl/proto.h);
 * the MACs and frame seals are in proto_auth.c. Decoders walk the frame with a small cursor whose every read
 * checks the remaining length first. */
#include "repl/proto.h"

#include <string.h>

#include "core/alloc.h"
#include "edgelite/errors.h"

/* Smallest encoded entry: origin (1+1), seq, hlc, consistency, deps count, payload len. */
#define ENTRY_MIN_BYTES 7

/* ---- writing ---- */

static int put_u8(struct edge_buf *out, uint8_t v)
{
    return edge_buf_append(out, &v, 1);
}

static int str_ok(const char *s, size_t *out_len)
{
    if (s == NULL) {
        return 0;
    }
    size_t n = strnlen(s, EDGE_REPL_STR_MAX + 1);
    if (n > EDGE_REPL_STR_MAX) {
        return 0;
    }
    *out_len = n;
    return 1;
}

static int put_str(struct edge_buf *out, const char *s)
{
    size_t n = 0;
    if (!str_ok(s, &n)) {
        return EDGE_EINVAL;
    }
    int rv = edge__uvarint_put(out, n);
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, s, n);
    }
    return rv;
}

static int put_region(struct edge_buf *out, const char *region)
{
    if (region == NULL || !edge_vclock_region_valid(region)) {
        return EDGE_EINVAL;
    }
    return put_str(out, region);
}

int edge_repl_encode_challenge(struct edge_buf *out, const uint8_t nonce[EDGE_REPL_NONCE_LEN])
{
    int rv = put_u8(out, EDGE_REPL_MSG_CHALLENGE);
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, nonce, EDGE_REPL_NONCE_LEN);
    }
    return rv;
}

int edge_repl_encode_hello(struct edge_buf *out, const struct edge_repl_hello *h)
{
    int rv = put_u8(out, EDGE_REPL_MSG_HELLO);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, h->version);
    }
    if (rv == EDGE_OK) {
        rv = put_str(out, h->cluster);
    }
    if (rv == EDGE_OK) {
        rv = put_region(out, h->region);
    }
    if (rv == EDGE_OK) {
        rv = put_region(out, h->to_region);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, h->nonce, EDGE_REPL_NONCE_LEN);
    }
    if (rv == EDGE_OK) {
        rv = edge_vclock_encode(&h->vv, out);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, h->mac, EDGE_REPL_MAC_LEN);
    }
    return rv;
}

int edge_repl_encode_hello_ok(struct edge_buf *out, const char *region, const struct edge_vclock *vv,
                              const uint8_t mac[EDGE_REPL_MAC_LEN])
{
    int rv = put_u8(out, EDGE_REPL_MSG_HELLO_OK);
    if (rv == EDGE_OK) {
        rv = put_region(out, region);
    }
    if (rv == EDGE_OK) {
        rv = edge_vclock_encode(vv, out);
    }
    if (rv == EDGE_OK) {
        rv = edge_buf_append(out, mac, EDGE_REPL_MAC_LEN);
    }
    return rv;
}

int edge_repl_encode_entries_header(struct edge_buf *out, size_t n)
{
    if (n > EDGE_REPL_ENTRIES_MAX) {
        return EDGE_EINVAL;
    }
    int rv = put_u8(out, EDGE_REPL_MSG_ENTRIES);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, n);
    }
    return rv;
}

int edge_repl_encode_entry(struct edge_buf *out, const struct edge_repl_entry *e)
{
    if (e->seq == 0 || e->consistency > EDGE_REPL_ASYNC || (e->payload == NULL && e->payload_len > 0) ||
        e->payload_len > EDGE_REPL_FRAME_MAX) {
        return EDGE_EINVAL;
    }
    int rv = put_region(out, e->origin);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, e->seq);
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, e->hlc);
    }
    if (rv == EDGE_OK) {
        rv = put_u8(out, e->consistency);
    }
    if (rv == EDGE_OK) {
        rv = edge_vclock_encode(&e->deps, out);
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, e->payload_len);
    }
    if (rv == EDGE_OK && e->payload_len > 0) {
        rv = edge_buf_append(out, e->payload, e->payload_len);
    }
    return rv;
}

int edge_repl_encode_entries(struct edge_buf *out, const struct edge_repl_entry *e, size_t n)
{
    int rv = edge_repl_encode_entries_header(out, n);
    for (size_t i = 0; rv == EDGE_OK && i < n; i++) {
        rv = edge_repl_encode_entry(out, &e[i]);
    }
    return rv;
}

int edge_repl_encode_ack(struct edge_buf *out, const struct edge_vclock *vv)
{
    int rv = put_u8(out, EDGE_REPL_MSG_ACK);
    if (rv == EDGE_OK) {
        rv = edge_vclock_encode(vv, out);
    }
    return rv;
}

static int encode_t(struct edge_buf *out, uint8_t type, uint64_t t)
{
    int rv = put_u8(out, type);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_put(out, t);
    }
    return rv;
}

int edge_repl_encode_ping(struct edge_buf *out, uint64_t t)
{
    return encode_t(out, EDGE_REPL_MSG_PING, t);
}

int edge_repl_encode_pong(struct edge_buf *out, uint64_t t)
{
    return encode_t(out, EDGE_REPL_MSG_PONG, t);
}

int edge_repl_encode_pong_clock(struct edge_buf *out, uint64_t t, uint64_t wall_ms)
{
    int rv = encode_t(out, EDGE_REPL_MSG_PONG, t);
    if (rv == EDGE_OK) rv = edge__uvarint_put(out, wall_ms);
    return rv;
}

int edge_repl_encode_error(struct edge_buf *out, const char *code, const char *message)
{
    int rv = put_u8(out, EDGE_REPL_MSG_ERROR);
    if (rv == EDGE_OK) {
        rv = put_str(out, code);
    }
    if (rv == EDGE_OK) {
        rv = put_str(out, message);
    }
    return rv;
}

/* ---- reading ---- */

static int get_raw(struct edge__rd *c, size_t n, const uint8_t **out_p)
{
    if (n > c->len - c->off) {
        return EDGE_ECORRUPT;
    }
    *out_p = c->p + c->off;
    c->off += n;
    return EDGE_OK;
}

/* A string of at most max bytes, without NUL, copied to out[max + 1]. */
static int get_str(struct edge__rd *c, char *out, size_t max)
{
    uint64_t n = 0;
    const uint8_t *s = NULL;
    int rv = edge__uvarint_read(c, &n);
    if (rv != EDGE_OK) {
        return rv;
    }
    if (n > max || get_raw(c, (size_t)n, &s) != EDGE_OK || memchr(s, 0, (size_t)n) != NULL) {
        return EDGE_ECORRUPT;
    }
    memcpy(out, s, (size_t)n);
    out[n] = '\0';
    return EDGE_OK;
}

static int get_region(struct edge__rd *c, char out[EDGE_VCLOCK_REGION_MAX + 1])
{
    int rv = get_str(c, out, EDGE_VCLOCK_REGION_MAX);
    if (rv == EDGE_OK && !edge_vclock_region_valid(out)) {
        rv = EDGE_ECORRUPT;
    }
    return rv;
}

static int get_vclock(struct edge__rd *c, struct edge_vclock *vc)
{
    size_t used = 0;
    int rv = edge_vclock_decode(vc, c->p + c->off, c->len - c->off, &used);
    if (rv == EDGE_OK) {
        c->off += used;
    }
    return rv;
}

/* Start a cursor past the type byte after checking it. */
static int begin(struct edge__rd *c, const uint8_t *p, size_t len, int type)
{
    if (p == NULL || len == 0 || len > EDGE_REPL_FRAME_MAX || p[0] != type) {
        return EDGE_ECORRUPT;
    }
    c->p = p;
    c->len = len;
    c->off = 1;
    return EDGE_OK;
}

static int end(const struct edge__rd *c)
{
    return c->off == c->len ? EDGE_OK : EDGE_ECORRUPT;
}

int edge_repl_msg_type(const uint8_t *p, size_t len, int *out_type)
{
    if (p == NULL || len == 0 || len > EDGE_REPL_FRAME_MAX || p[0] < EDGE_REPL_MSG_CHALLENGE ||
        p[0] > EDGE_REPL_MSG_ERROR) {
        return EDGE_ECORRUPT;
    }
    *out_type = p[0];
    return EDGE_OK;
}

int edge_repl_decode_challenge(const uint8_t *p, size_t len, uint8_t out_nonce[EDGE_REPL_NONCE_LEN])
{
    struct edge__rd c;
    const uint8_t *n = NULL;
    int rv = begin(&c, p, len, EDGE_REPL_MSG_CHALLENGE);
    if (rv == EDGE_OK) {
        rv = get_raw(&c, EDGE_REPL_NONCE_LEN, &n);
    }
    if (rv == EDGE_OK) {
        rv = end(&c);
    }
    if (rv == EDGE_OK) {
        memcpy(out_nonce, n, EDGE_REPL_NONCE_LEN);
    }
    return rv;
}

int edge_repl_decode_hello(const uint8_t *p, size_t len, struct edge_repl_hello *out)
{
    struct edge__rd c;
    const uint8_t *raw = NULL;
    edge_vclock_init(&out->vv);
    int rv = begin(&c, p, len, EDGE_REPL_MSG_HELLO);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(&c, &out->version);
    }
    if (rv == EDGE_OK && out->version != EDGE_REPL_PROTO_VERSION) {
        return EDGE_EPROTO; /* another layout follows: not parsed */
    }
    if (rv == EDGE_OK) {
        rv = get_str(&c, out->cluster, EDGE_REPL_STR_MAX);
    }
    if (rv == EDGE_OK) {
        rv = get_region(&c, out->region);
    }
    if (rv == EDGE_OK) {
        rv = get_region(&c, out->to_region);
    }
    if (rv == EDGE_OK) {
        rv = get_raw(&c, EDGE_REPL_NONCE_LEN, &raw);
    }
    if (rv == EDGE_OK) {
        memcpy(out->nonce, raw, EDGE_REPL_NONCE_LEN);
        rv = get_vclock(&c, &out->vv);
    }
    if (rv == EDGE_OK) {
        rv = get_raw(&c, EDGE_REPL_MAC_LEN, &raw);
    }
    if (rv == EDGE_OK) {
        memcpy(out->mac, raw, EDGE_REPL_MAC_LEN);
        rv = end(&c);
    }
    if (rv != EDGE_OK) {
        edge_vclock_close(&out->vv);
    }
    return rv;
}

int edge_repl_decode_hello_ok(const uint8_t *p, size_t len, struct edge_repl_hello_ok *out)
{
    struct edge__rd c;
    const uint8_t *mac = NULL;
    edge_vclock_init(&out->vv);
    int rv = begin(&c, p, len, EDGE_REPL_MSG_HELLO_OK);
    if (rv == EDGE_OK) {
        rv = get_region(&c, out->region);
    }
    if (rv == EDGE_OK) {
        rv = get_vclock(&c, &out->vv);
    }
    if (rv == EDGE_OK) {
        rv = get_raw(&c, EDGE_REPL_MAC_LEN, &mac);
    }
    if (rv == EDGE_OK) {
        memcpy(out->mac, mac, EDGE_REPL_MAC_LEN);
        rv = end(&c);
    }
    if (rv != EDGE_OK) {
        edge_vclock_close(&out->vv);
    }
    return rv;
}

static int get_entry(struct edge__rd *c, struct edge_repl_entry *e)
{
    uint64_t plen = 0;
    const uint8_t *cons = NULL;
    int rv = get_region(c, e->origin);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(c, &e->seq);
    }
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(c, &e->hlc);
    }
    if (rv == EDGE_OK) {
        rv = get_raw(c, 1, &cons);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    if (e->seq == 0 || *cons > EDGE_REPL_ASYNC) {
        return EDGE_ECORRUPT;
    }
    e->consistency = *cons;
    rv = get_vclock(c, &e->deps);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(c, &plen);
    }
    if (rv == EDGE_OK) {
        rv = plen > c->len - c->off ? EDGE_ECORRUPT : get_raw(c, (size_t)plen, &e->payload);
    }
    if (rv == EDGE_OK) {
        e->payload_len = (size_t)plen;
        if (plen == 0) {
            e->payload = NULL;
        }
    }
    return rv;
}

int edge_repl_decode_entries(const uint8_t *p, size_t len, struct edge_repl_entry **out_entries,
                             size_t *out_n)
{
    struct edge__rd c;
    struct edge_repl_entry *e = NULL;
    uint64_t n = 0;
    size_t done = 0;
    int rv = begin(&c, p, len, EDGE_REPL_MSG_ENTRIES);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(&c, &n);
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    /* The count bounds the allocation only after it is checked against the input. */
    if (n > EDGE_REPL_ENTRIES_MAX || n > (c.len - c.off) / ENTRY_MIN_BYTES) {
        rv = EDGE_ECORRUPT;
        goto out;
    }
    if (n > 0) {
        e = edge_calloc((size_t)n, sizeof(*e));
        if (e == NULL) {
            rv = EDGE_ENOMEM;
            goto out;
        }
    }
    for (; done < n; done++) {
        edge_vclock_init(&e[done].deps);
        rv = get_entry(&c, &e[done]);
        if (rv != EDGE_OK) {
            edge_vclock_close(&e[done].deps);
            goto out;
        }
    }
    rv = end(&c);
out:
    if (rv != EDGE_OK) {
        edge_repl_entries_free(e, done);
        return rv;
    }
    *out_entries = e;
    *out_n = (size_t)n;
    return EDGE_OK;
}

int edge_repl_decode_ack(const uint8_t *p, size_t len, struct edge_vclock *out_vv)
{
    struct edge__rd c;
    int rv = begin(&c, p, len, EDGE_REPL_MSG_ACK);
    if (rv == EDGE_OK) {
        rv = get_vclock(&c, out_vv);
    }
    if (rv == EDGE_OK) {
        rv = end(&c);
    }
    if (rv != EDGE_OK) {
        edge_vclock_close(out_vv);
    }
    return rv;
}

static int decode_t(const uint8_t *p, size_t len, int type, uint64_t *out_t)
{
    struct edge__rd c;
    uint64_t t = 0;
    int rv = begin(&c, p, len, type);
    if (rv == EDGE_OK) {
        rv = edge__uvarint_read(&c, &t);
    }
    if (rv == EDGE_OK) {
        rv = end(&c);
    }
    if (rv == EDGE_OK) {
        *out_t = t;
    }
    return rv;
}

int edge_repl_decode_ping(const uint8_t *p, size_t len, uint64_t *out_t)
{
    return decode_t(p, len, EDGE_REPL_MSG_PING, out_t);
}

int edge_repl_decode_pong(const uint8_t *p, size_t len, uint64_t *out_t)
{
    uint64_t wall;
    return edge_repl_decode_pong_clock(p, len, out_t, &wall);
}

int edge_repl_decode_pong_clock(const uint8_t *p, size_t len, uint64_t *out_t, uint64_t *out_wall_ms)
{
    struct edge__rd c;
    uint64_t t = 0, wall = 0;
    int rv = begin(&c, p, len, EDGE_REPL_MSG_PONG);
    if (rv == EDGE_OK) rv = edge__uvarint_read(&c, &t);
    /* the responder's clock, optional: exactly one more varint or nothing; a clock
     * before 2004 (< 2^40 ms) is no clock, so stray bytes never read as one */
    if (rv == EDGE_OK && c.off < c.len) {
        rv = edge__uvarint_read(&c, &wall);
        if (rv == EDGE_OK && wall < ((uint64_t)1 << 40)) rv = EDGE_ECORRUPT;
    }
    if (rv == EDGE_OK) rv = end(&c);
    if (rv == EDGE_OK) {
        *out_t = t;
        *out_wall_ms = wall;
    }
    return rv;
}

int edge_repl_decode_error(const uint8_t *p, size_t len, struct edge_repl_error *out)
{
    struct edge__rd c;
    int rv = begin(&c, p, len, EDGE_REPL_MSG_ERROR);
    if (rv == EDGE_OK) {
        rv = get_str(&c, out->code, EDGE_REPL_STR_MAX);
    }
    if (rv == EDGE_OK) {
        rv = get_str(&c, out->message, EDGE_REPL_STR_MAX);
    }
    if (rv == EDGE_OK) {
        rv = end(&c);
    }
    return rv;
}

void edge_repl_entries_free(struct edge_repl_entry *e, size_t n)
{
    if (e == NULL) {
        return;
    }
    for (size_t i = 0; i < n; i++) {
        edge_vclock_close(&e[i].deps);
    }
    edge_free(e);
}

void edge_repl_hello_close(struct edge_repl_hello *h)
{
    edge_vclock_close(&h->vv);
}
