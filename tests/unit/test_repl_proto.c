/* SPDX-License-Identifier: MIT */
/* Unit tests of the peer protocol codec: a round trip of every message, rejection of
 * every strict prefix and of trailing bytes, field-level corruptions (bad consistency,
 * seq 0, NUL in strings, overlong strings, absurd counts), the HELLO and HELLO_OK MACs
 * (good, bad secret, other nonce either way, every field bound, wrong version) and the
 * frame seal (altered, replayed, reordered, reflected, other session), and the signature
 * of HTTP requests between regions. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/vclock.h"
#include "repl/proto.h"

#define BUF_MAX ((size_t)1 << 20)

static const uint8_t NONCE[EDGE_REPL_NONCE_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
                                                  17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

typedef int (*decode_fn)(const uint8_t *p, size_t len);

/* Every strict prefix and the frame plus one trailing byte must be rejected. */
static void check_truncations(const struct edge_buf *b, decode_fn fn)
{
    const uint8_t *p = (const uint8_t *)b->data;
    for (size_t n = 0; n < b->len; n++) {
        /* A copy of exactly n bytes lets ASan catch any read past the prefix. */
        uint8_t *cp = edge_malloc(n ? n : 1);
        assert_non_null(cp);
        memcpy(cp, p, n);
        assert_int_equal(fn(cp, n), EDGE_ECORRUPT);
        edge_free(cp);
    }
    uint8_t *longer = edge_malloc(b->len + 1);
    assert_non_null(longer);
    memcpy(longer, p, b->len);
    longer[b->len] = 0;
    assert_int_equal(fn(longer, b->len + 1), EDGE_ECORRUPT);
    edge_free(longer);
    assert_int_equal(fn(p, b->len), EDGE_OK);
}

static int dec_challenge(const uint8_t *p, size_t len)
{
    uint8_t n[EDGE_REPL_NONCE_LEN];
    return edge_repl_decode_challenge(p, len, n);
}

static int dec_hello(const uint8_t *p, size_t len)
{
    struct edge_repl_hello h;
    int rv = edge_repl_decode_hello(p, len, &h);
    if (rv == EDGE_OK) {
        edge_repl_hello_close(&h);
    }
    return rv;
}

static int dec_hello_ok(const uint8_t *p, size_t len)
{
    struct edge_repl_hello_ok h;
    int rv = edge_repl_decode_hello_ok(p, len, &h);
    if (rv == EDGE_OK) {
        edge_vclock_close(&h.vv);
    }
    return rv;
}

static int dec_entries(const uint8_t *p, size_t len)
{
    struct edge_repl_entry *e = NULL;
    size_t n = 0;
    int rv = edge_repl_decode_entries(p, len, &e, &n);
    if (rv == EDGE_OK) {
        edge_repl_entries_free(e, n);
    }
    return rv;
}

static int dec_ack(const uint8_t *p, size_t len)
{
    struct edge_vclock vv;
    edge_vclock_init(&vv);
    int rv = edge_repl_decode_ack(p, len, &vv);
    edge_vclock_close(&vv);
    return rv;
}

static int dec_ping(const uint8_t *p, size_t len)
{
    uint64_t t;
    return edge_repl_decode_ping(p, len, &t);
}

static int dec_pong(const uint8_t *p, size_t len)
{
    uint64_t t;
    return edge_repl_decode_pong(p, len, &t);
}

static int dec_error(const uint8_t *p, size_t len)
{
    struct edge_repl_error e;
    return edge_repl_decode_error(p, len, &e);
}

static void mk_vv(struct edge_vclock *vv)
{
    edge_vclock_init(vv);
    assert_int_equal(edge_vclock_set(vv, "eu-west", 42), EDGE_OK);
    assert_int_equal(edge_vclock_set(vv, "us-east", 300), EDGE_OK);
    assert_int_equal(edge_vclock_set(vv, "ap-south", 1ULL << 40), EDGE_OK);
}

/* ---- tests ---- */

static void test_challenge(void **state)
{
    (void)state;
    struct edge_buf b;
    uint8_t got[EDGE_REPL_NONCE_LEN];
    int type = 0;
    edge_buf_init(&b, BUF_MAX);
    assert_int_equal(edge_repl_encode_challenge(&b, NONCE), EDGE_OK);
    assert_int_equal(b.len, 1 + EDGE_REPL_NONCE_LEN);
    assert_int_equal(edge_repl_msg_type((const uint8_t *)b.data, b.len, &type), EDGE_OK);
    assert_int_equal(type, EDGE_REPL_MSG_CHALLENGE);
    assert_int_equal(edge_repl_decode_challenge((const uint8_t *)b.data, b.len, got), EDGE_OK);
    assert_memory_equal(got, NONCE, sizeof(got));
    check_truncations(&b, dec_challenge);
    /* Another message's decoder refuses it by type. */
    assert_int_equal(dec_ping((const uint8_t *)b.data, b.len), EDGE_ECORRUPT);
    edge_buf_free(&b);
}

static void mk_hello(struct edge_repl_hello *h)
{
    memset(h, 0, sizeof(*h));
    h->version = EDGE_REPL_PROTO_VERSION;
    snprintf(h->cluster, sizeof(h->cluster), "prod-cluster");
    snprintf(h->region, sizeof(h->region), "us-east");
    snprintf(h->to_region, sizeof(h->to_region), "eu-west");
    for (int i = 0; i < EDGE_REPL_NONCE_LEN; i++) h->nonce[i] = (uint8_t)(0xa0 + i);
    mk_vv(&h->vv);
}

static void test_hello_roundtrip_and_mac(void **state)
{
    (void)state;
    struct edge_repl_hello h, d;
    struct edge_buf b;
    mk_hello(&h);
    assert_int_equal(edge_repl_hello_mac("s3cret", NONCE, &h, h.mac), EDGE_OK);
    edge_buf_init(&b, BUF_MAX);
    assert_int_equal(edge_repl_encode_hello(&b, &h), EDGE_OK);
    assert_int_equal(edge_repl_decode_hello((const uint8_t *)b.data, b.len, &d), EDGE_OK);
    assert_int_equal(d.version, EDGE_REPL_PROTO_VERSION);
    assert_string_equal(d.cluster, "prod-cluster");
    assert_string_equal(d.region, "us-east");
    assert_string_equal(d.to_region, "eu-west");
    assert_memory_equal(d.nonce, h.nonce, EDGE_REPL_NONCE_LEN);
    assert_memory_equal(d.mac, h.mac, EDGE_REPL_MAC_LEN);
    assert_int_equal(edge_vclock_compare(&d.vv, &h.vv), EDGE_VCLOCK_EQUAL);

    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_OK);
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "wrong", NONCE), EDGE_EAUTH);
    assert_int_equal(edge_repl_hello_verify(&d, "other", "s3cret", NONCE), EDGE_EAUTH);
    uint8_t other_nonce[EDGE_REPL_NONCE_LEN];
    memcpy(other_nonce, NONCE, sizeof(other_nonce));
    other_nonce[31] ^= 1;
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", other_nonce), EDGE_EAUTH);
    /* Every field is bound in: region, target region, client nonce, version vector. */
    snprintf(d.region, sizeof(d.region), "ap-south");
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EAUTH);
    snprintf(d.region, sizeof(d.region), "us-east");
    snprintf(d.to_region, sizeof(d.to_region), "ap-south");
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EAUTH);
    snprintf(d.to_region, sizeof(d.to_region), "eu-west");
    d.nonce[0] ^= 1;
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EAUTH);
    d.nonce[0] ^= 1;
    assert_int_equal(edge_vclock_set(&d.vv, "eu-west", 43), EDGE_OK);
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EAUTH);
    assert_int_equal(edge_vclock_set(&d.vv, "eu-west", 42), EDGE_OK);
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_OK);
    d.mac[0] ^= 0x80;
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EAUTH);
    d.mac[0] ^= 0x80;
    d.version = EDGE_REPL_PROTO_VERSION + 1;
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EPROTO);
    d.version = 2; /* one-way authentication, no frame MACs: refused */
    assert_int_equal(edge_repl_hello_verify(&d, "prod-cluster", "s3cret", NONCE), EDGE_EPROTO);
    edge_repl_hello_close(&d);
    check_truncations(&b, dec_hello);

    /* Another version is not parsed past its number (the server answers ERROR VERSION),
     * and a protocol 2 HELLO (no target region, no client nonce) is one of those. */
    edge_buf_reset(&b);
    const uint8_t v2[] = {EDGE_REPL_MSG_HELLO, 2, 1, 'c', 1, 'r'};
    assert_int_equal(edge_repl_decode_hello(v2, sizeof(v2), &d), EDGE_EPROTO);
    assert_int_equal(d.version, 2);
    h.version = 7;
    assert_int_equal(edge_repl_encode_hello(&b, &h), EDGE_OK);
    assert_int_equal(edge_repl_decode_hello((const uint8_t *)b.data, b.len, &d), EDGE_EPROTO);
    assert_int_equal(d.version, 7);
    h.version = EDGE_REPL_PROTO_VERSION;

    /* An invalid region cannot be encoded. */
    edge_buf_reset(&b);
    snprintf(h.region, sizeof(h.region), "has space");
    assert_int_equal(edge_repl_encode_hello(&b, &h), EDGE_EINVAL);
    edge_vclock_close(&h.vv);
    edge_buf_free(&b);
}

/* The server's proof and the session key: both sides derive the same, bound to both nonces. */
static void test_hello_ok_mac_and_seal(void **state)
{
    (void)state;
    struct edge_repl_hello h;
    struct edge_repl_hello_ok ok;
    struct edge_buf b;
    mk_hello(&h);
    edge_buf_init(&b, BUF_MAX);
    uint8_t mac[EDGE_REPL_MAC_LEN];
    assert_int_equal(edge_repl_hello_ok_mac("s3cret", NONCE, &h, "eu-west", &h.vv, mac), EDGE_OK);
    assert_int_equal(edge_repl_encode_hello_ok(&b, "eu-west", &h.vv, mac), EDGE_OK);
    assert_int_equal(edge_repl_decode_hello_ok((const uint8_t *)b.data, b.len, &ok), EDGE_OK);
    assert_int_equal(edge_repl_hello_ok_verify(&ok, "s3cret", NONCE, &h), EDGE_OK);
    assert_int_equal(edge_repl_hello_ok_verify(&ok, "wrong", NONCE, &h), EDGE_EAUTH);
    h.nonce[5] ^= 1; /* another client nonce: a replayed HELLO_OK */
    assert_int_equal(edge_repl_hello_ok_verify(&ok, "s3cret", NONCE, &h), EDGE_EAUTH);
    h.nonce[5] ^= 1;
    snprintf(ok.region, sizeof(ok.region), "ap-south");
    assert_int_equal(edge_repl_hello_ok_verify(&ok, "s3cret", NONCE, &h), EDGE_EAUTH);
    snprintf(ok.region, sizeof(ok.region), "eu-west");
    assert_int_equal(edge_vclock_set(&ok.vv, "us-east", 1), EDGE_OK);
    assert_int_equal(edge_repl_hello_ok_verify(&ok, "s3cret", NONCE, &h), EDGE_EAUTH);
    edge_vclock_close(&ok.vv);
    /* A HELLO MAC is no HELLO_OK MAC (labels differ). */
    uint8_t hmac[EDGE_REPL_MAC_LEN];
    assert_int_equal(edge_repl_hello_mac("s3cret", NONCE, &h, hmac), EDGE_OK);
    assert_memory_not_equal(hmac, mac, EDGE_REPL_MAC_LEN);

    struct edge_repl_seal c, s, other;
    assert_int_equal(edge_repl_seal_init(&c, "s3cret", NONCE, &h, "eu-west", true), EDGE_OK);
    assert_int_equal(edge_repl_seal_init(&s, "s3cret", NONCE, &h, "eu-west", false), EDGE_OK);
    assert_memory_equal(c.key, s.key, EDGE_REPL_KEY_LEN);
    h.nonce[0] ^= 1;
    assert_int_equal(edge_repl_seal_init(&other, "s3cret", NONCE, &h, "eu-west", false), EDGE_OK);
    h.nonce[0] ^= 1;
    assert_memory_not_equal(c.key, other.key, EDGE_REPL_KEY_LEN);

    /* Frames: each opens once, in order, in its direction only. */
    struct edge_buf f1, f2;
    size_t n = 0;
    edge_buf_init(&f1, BUF_MAX);
    edge_buf_init(&f2, BUF_MAX);
    assert_int_equal(edge_repl_encode_ping(&f1, 7), EDGE_OK);
    assert_int_equal(edge_repl_encode_ping(&f2, 8), EDGE_OK);
    size_t l1 = f1.len;
    assert_int_equal(edge_repl_seal_frame(&c, &f1), EDGE_OK);
    assert_int_equal(edge_repl_seal_frame(&c, &f2), EDGE_OK);
    assert_int_equal(f1.len, l1 + EDGE_REPL_MAC_LEN);
    /* reordered: the second frame first */
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f2.data, f2.len, &n), EDGE_EAUTH);
    /* reflected: the client's frame back to the client */
    assert_int_equal(edge_repl_open_frame(&c, (const uint8_t *)f1.data, f1.len, &n), EDGE_EAUTH);
    /* another session's key */
    assert_int_equal(edge_repl_open_frame(&other, (const uint8_t *)f1.data, f1.len, &n), EDGE_EAUTH);
    /* altered: any bit of message or tag */
    for (size_t i = 0; i < f1.len; i++) {
        f1.data[i] ^= 0x04;
        assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f1.data, f1.len, &n), EDGE_EAUTH);
        f1.data[i] ^= 0x04;
    }
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f1.data, f1.len - 1, &n), EDGE_EAUTH);
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f1.data, 3, &n), EDGE_EAUTH);
    assert_int_equal(s.rx_seq, 0);
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f1.data, f1.len, &n), EDGE_OK);
    assert_int_equal(n, l1);
    /* replayed */
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f1.data, f1.len, &n), EDGE_EAUTH);
    assert_int_equal(edge_repl_open_frame(&s, (const uint8_t *)f2.data, f2.len, &n), EDGE_OK);
    uint64_t t = 0;
    assert_int_equal(edge_repl_decode_ping((const uint8_t *)f2.data, n, &t), EDGE_OK);
    assert_int_equal(t, 8);
    /* the other direction has its own numbers */
    edge_buf_reset(&f1);
    assert_int_equal(edge_repl_encode_ping(&f1, 9), EDGE_OK);
    assert_int_equal(edge_repl_seal_frame(&s, &f1), EDGE_OK);
    assert_int_equal(edge_repl_open_frame(&c, (const uint8_t *)f1.data, f1.len, &n), EDGE_OK);
    edge_repl_seal_wipe(&c);
    edge_repl_seal_wipe(&s);
    edge_repl_seal_wipe(&other);
    edge_buf_free(&f1);
    edge_buf_free(&f2);
    edge_vclock_close(&h.vv);
    edge_buf_free(&b);
}

static void test_hello_ok_ack_ping_pong_error(void **state)
{
    (void)state;
    struct edge_vclock vv, got;
    struct edge_buf b;
    struct edge_repl_hello_ok ok;
    struct edge_repl_error er;
    uint64_t t = 0;
    mk_vv(&vv);
    edge_buf_init(&b, BUF_MAX);

    const uint8_t mac[EDGE_REPL_MAC_LEN] = {9, 9, 9};
    assert_int_equal(edge_repl_encode_hello_ok(&b, "eu-west", &vv, mac), EDGE_OK);
    assert_int_equal(edge_repl_decode_hello_ok((const uint8_t *)b.data, b.len, &ok), EDGE_OK);
    assert_string_equal(ok.region, "eu-west");
    assert_int_equal(edge_vclock_compare(&ok.vv, &vv), EDGE_VCLOCK_EQUAL);
    assert_memory_equal(ok.mac, mac, EDGE_REPL_MAC_LEN);
    edge_vclock_close(&ok.vv);
    check_truncations(&b, dec_hello_ok);

    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_ack(&b, &vv), EDGE_OK);
    edge_vclock_init(&got);
    assert_int_equal(edge_repl_decode_ack((const uint8_t *)b.data, b.len, &got), EDGE_OK);
    assert_int_equal(edge_vclock_get(&got, "ap-south"), 1ULL << 40);
    assert_int_equal(edge_vclock_compare(&got, &vv), EDGE_VCLOCK_EQUAL);
    edge_vclock_close(&got);
    check_truncations(&b, dec_ack);

    /* An empty VV is valid. */
    edge_buf_reset(&b);
    edge_vclock_init(&got);
    assert_int_equal(edge_repl_encode_ack(&b, &got), EDGE_OK);
    assert_int_equal(b.len, 2);
    assert_int_equal(dec_ack((const uint8_t *)b.data, b.len), EDGE_OK);

    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_ping(&b, UINT64_MAX), EDGE_OK);
    assert_int_equal(edge_repl_decode_ping((const uint8_t *)b.data, b.len, &t), EDGE_OK);
    assert_true(t == UINT64_MAX);
    check_truncations(&b, dec_ping);
    assert_int_equal(dec_pong((const uint8_t *)b.data, b.len), EDGE_ECORRUPT);

    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_pong(&b, 123456789), EDGE_OK);
    assert_int_equal(edge_repl_decode_pong((const uint8_t *)b.data, b.len, &t), EDGE_OK);
    assert_int_equal(t, 123456789);
    check_truncations(&b, dec_pong);

    /* PONG with the responder's clock: both fields back; a clock before 2004 is refused */
    edge_buf_reset(&b);
    uint64_t wall = 0;
    assert_int_equal(edge_repl_encode_pong_clock(&b, 42, 1764633600123ull), EDGE_OK);
    assert_int_equal(edge_repl_decode_pong_clock((const uint8_t *)b.data, b.len, &t, &wall), EDGE_OK);
    assert_int_equal(t, 42);
    assert_true(wall == 1764633600123ull);
    for (size_t n = 3; n < b.len; n++) { /* cut inside the clock: corrupt */
        assert_int_equal(edge_repl_decode_pong_clock((const uint8_t *)b.data, n, &t, &wall), EDGE_ECORRUPT);
    }
    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_pong_clock(&b, 42, 99), EDGE_OK);
    assert_int_equal(edge_repl_decode_pong_clock((const uint8_t *)b.data, b.len, &t, &wall), EDGE_ECORRUPT);

    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_error(&b, "AUTH", "bad mac"), EDGE_OK);
    assert_int_equal(edge_repl_decode_error((const uint8_t *)b.data, b.len, &er), EDGE_OK);
    assert_string_equal(er.code, "AUTH");
    assert_string_equal(er.message, "bad mac");
    check_truncations(&b, dec_error);

    /* Strings: 256 bytes pass, 257 do not, on both sides. */
    char s[EDGE_REPL_STR_MAX + 2];
    memset(s, 'x', sizeof(s));
    s[EDGE_REPL_STR_MAX] = '\0';
    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_error(&b, s, ""), EDGE_OK);
    assert_int_equal(dec_error((const uint8_t *)b.data, b.len), EDGE_OK);
    s[EDGE_REPL_STR_MAX] = 'x';
    s[EDGE_REPL_STR_MAX + 1] = '\0';
    edge_buf_reset(&b);
    assert_int_equal(edge_repl_encode_error(&b, s, ""), EDGE_EINVAL);
    /* Hand-made overlong string and embedded NUL. */
    uint8_t over[1 + 2 + 257 + 1];
    over[0] = EDGE_REPL_MSG_ERROR;
    over[1] = 0x81; /* 257 as a varint */
    over[2] = 0x02;
    memset(over + 3, 'a', 257);
    over[260] = 0;
    assert_int_equal(dec_error(over, sizeof(over)), EDGE_ECORRUPT);
    const uint8_t nul[] = {EDGE_REPL_MSG_ERROR, 2, 'a', 0, 0};
    assert_int_equal(dec_error(nul, sizeof(nul)), EDGE_ECORRUPT);
    const uint8_t unknown[] = {9, 0};
    int type = 0;
    assert_int_equal(edge_repl_msg_type(unknown, sizeof(unknown), &type), EDGE_ECORRUPT);
    assert_int_equal(edge_repl_msg_type(unknown, 0, &type), EDGE_ECORRUPT);

    edge_vclock_close(&vv);
    edge_buf_free(&b);
}

static void test_entries(void **state)
{
    (void)state;
    struct edge_repl_entry in[3];
    struct edge_buf b, b2;
    static const uint8_t pay[] = "changeset-bytes";
    memset(in, 0, sizeof(in));
    for (int i = 0; i < 3; i++) {
        snprintf(in[i].origin, sizeof(in[i].origin), i == 1 ? "eu-west" : "us-east");
        in[i].seq = (uint64_t)i + 1;
        in[i].hlc = (1ULL << 40) + (uint64_t)i;
        in[i].consistency = (uint8_t)i;
        edge_vclock_init(&in[i].deps);
        if (i > 0) {
            assert_int_equal(edge_vclock_set(&in[i].deps, "us-east", (uint64_t)i), EDGE_OK);
        }
        in[i].payload = i == 2 ? NULL : pay;
        in[i].payload_len = i == 2 ? 0 : sizeof(pay);
    }
    edge_buf_init(&b, BUF_MAX);
    assert_int_equal(edge_repl_encode_entries(&b, in, 3), EDGE_OK);
    /* The incremental encoder produces the same bytes. */
    edge_buf_init(&b2, BUF_MAX);
    assert_int_equal(edge_repl_encode_entries_header(&b2, 3), EDGE_OK);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(edge_repl_encode_entry(&b2, &in[i]), EDGE_OK);
    }
    assert_int_equal(b.len, b2.len);
    assert_memory_equal(b.data, b2.data, b.len);

    struct edge_repl_entry *out = NULL;
    size_t n = 0;
    assert_int_equal(edge_repl_decode_entries((const uint8_t *)b.data, b.len, &out, &n), EDGE_OK);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_string_equal(out[i].origin, in[i].origin);
        assert_int_equal(out[i].seq, in[i].seq);
        assert_int_equal(out[i].hlc, in[i].hlc);
        assert_int_equal(out[i].consistency, in[i].consistency);
        assert_int_equal(edge_vclock_compare(&out[i].deps, &in[i].deps), EDGE_VCLOCK_EQUAL);
        assert_int_equal(out[i].payload_len, in[i].payload_len);
        if (in[i].payload_len > 0) {
            /* Borrowed from the frame, not copied. */
            assert_true(out[i].payload > (const uint8_t *)b.data &&
                        out[i].payload < (const uint8_t *)b.data + b.len);
            assert_memory_equal(out[i].payload, pay, sizeof(pay));
        }
    }
    edge_repl_entries_free(out, n);
    check_truncations(&b, dec_entries);

    /* Zero entries. */
    edge_buf_reset(&b2);
    assert_int_equal(edge_repl_encode_entries(&b2, NULL, 0), EDGE_OK);
    out = NULL;
    assert_int_equal(edge_repl_decode_entries((const uint8_t *)b2.data, b2.len, &out, &n), EDGE_OK);
    assert_int_equal(n, 0);
    assert_null(out);

    /* Field corruptions: the last entry (seq 3, consistency 2, empty payload) ends with
     * "... cons=2, deps, 0"; find its consistency byte by re-encoding it alone. */
    edge_buf_reset(&b2);
    assert_int_equal(edge_repl_encode_entry(&b2, &in[2]), EDGE_OK);
    size_t start = b.len - b2.len;
    size_t cons_at = start + 1 + strlen("us-east") + 1 + 6; /* origin, seq(1), hlc(6) */
    assert_int_equal((uint8_t)b.data[cons_at], 2);
    b.data[cons_at] = 3;
    assert_int_equal(dec_entries((const uint8_t *)b.data, b.len), EDGE_ECORRUPT);
    b.data[cons_at] = 2;
    size_t seq_at = start + 1 + strlen("us-east");
    assert_int_equal((uint8_t)b.data[seq_at], 3);
    b.data[seq_at] = 0;
    assert_int_equal(dec_entries((const uint8_t *)b.data, b.len), EDGE_ECORRUPT);
    b.data[seq_at] = 3;
    assert_int_equal(dec_entries((const uint8_t *)b.data, b.len), EDGE_OK);

    /* A count larger than the bytes could hold, or over the cap, is refused before any
     * allocation. */
    const uint8_t huge[] = {EDGE_REPL_MSG_ENTRIES, 0xff, 0xff, 0xff, 0xff, 0x0f};
    assert_int_equal(dec_entries(huge, sizeof(huge)), EDGE_ECORRUPT);
    const uint8_t three[] = {EDGE_REPL_MSG_ENTRIES, 3, 1, 'a', 1, 1, 0, 0, 0};
    assert_int_equal(dec_entries(three, sizeof(three)), EDGE_ECORRUPT);
    assert_int_equal(edge_repl_encode_entries_header(&b2, EDGE_REPL_ENTRIES_MAX + 1), EDGE_EINVAL);
    /* Encoder refuses invalid entries. */
    in[0].seq = 0;
    assert_int_equal(edge_repl_encode_entry(&b2, &in[0]), EDGE_EINVAL);
    in[0].seq = 1;
    in[0].consistency = 9;
    assert_int_equal(edge_repl_encode_entry(&b2, &in[0]), EDGE_EINVAL);

    for (int i = 0; i < 3; i++) {
        edge_vclock_close(&in[i].deps);
    }
    edge_buf_free(&b);
    edge_buf_free(&b2);
}

/* Single-byte corruptions never crash and never leak (ASan runs check the latter). */
static void test_entries_bitflips(void **state)
{
    (void)state;
    struct edge_repl_entry e;
    struct edge_buf b;
    static const uint8_t pay[] = {1, 2, 3};
    memset(&e, 0, sizeof(e));
    snprintf(e.origin, sizeof(e.origin), "r1");
    e.seq = 9;
    e.hlc = 77;
    edge_vclock_init(&e.deps);
    assert_int_equal(edge_vclock_set(&e.deps, "r1", 8), EDGE_OK);
    assert_int_equal(edge_vclock_set(&e.deps, "r2", 3), EDGE_OK);
    e.payload = pay;
    e.payload_len = sizeof(pay);
    edge_buf_init(&b, BUF_MAX);
    assert_int_equal(edge_repl_encode_entries(&b, &e, 1), EDGE_OK);
    int accepted = 0;
    for (size_t i = 0; i < b.len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            b.data[i] ^= (char)(1 << bit);
            accepted += dec_entries((const uint8_t *)b.data, b.len) == EDGE_OK;
            b.data[i] ^= (char)(1 << bit);
        }
    }
    /* Payload and hlc flips stay valid, so some are accepted, but not all. */
    assert_true(accepted > 0 && accepted < (int)(b.len * 8));
    edge_vclock_close(&e.deps);
    edge_buf_free(&b);
}

/* Signed HTTP requests: format and parse round trip, strict parsing, and every input bound
 * into the MAC (cluster, caller, callee, method, path, query, ts, nonce, body). */
static void test_http_sig(void **state)
{
    (void)state;
    struct edge_repl_http_sig s, t;
    char v[320];
    memset(&s, 0, sizeof(s));
    snprintf(s.region, sizeof(s.region), "eu-west");
    s.ts_ms = 1764672000123;
    memcpy(s.nonce, NONCE, sizeof(s.nonce));
    static const char body[] = "{\"from\":\"eu-west\",\"ids\":[\"x\"]}";
    assert_int_equal(edge_repl_http_sig_mac("s3cret", "c1", &s, "us-east", "POST", "/v1/_sessions/access", NULL, body,
                                            sizeof(body) - 1, s.mac),
                     EDGE_OK);
    assert_int_equal(edge_repl_http_sig_format(&s, v, sizeof(v)), EDGE_OK);
    assert_int_equal(edge_repl_http_sig_parse(v, &t), EDGE_OK);
    assert_string_equal(t.region, "eu-west");
    assert_true(t.ts_ms == s.ts_ms);
    assert_memory_equal(t.nonce, s.nonce, sizeof(s.nonce));
    assert_memory_equal(t.mac, s.mac, sizeof(s.mac));
#define OK(sec, cl, to, m, p, q, b, n) edge_repl_http_sig_verify(sec, cl, &t, to, m, p, q, b, n)
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1), EDGE_OK);
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", "", body, sizeof(body) - 1), EDGE_OK);
    assert_int_equal(OK("wrong", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c2", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "ap-south", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "us-east", "GET", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/router/point", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", "a=1", body, sizeof(body) - 1),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 2),
                     EDGE_EAUTH);
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, NULL, 0), EDGE_EAUTH);
    t.ts_ms++;
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    t.ts_ms--;
    t.nonce[31] ^= 1;
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
    t.nonce[31] ^= 1;
    snprintf(t.region, sizeof(t.region), "ap-south");
    assert_int_equal(OK("s3cret", "c1", "us-east", "POST", "/v1/_sessions/access", NULL, body, sizeof(body) - 1),
                     EDGE_EAUTH);
#undef OK
    /* An empty body and no body are the same thing. */
    uint8_t m1[EDGE_REPL_MAC_LEN], m2[EDGE_REPL_MAC_LEN];
    assert_int_equal(edge_repl_http_sig_mac("k", "c1", &s, "us-east", "GET", "/v1/router/point", NULL, NULL, 0, m1),
                     EDGE_OK);
    assert_int_equal(edge_repl_http_sig_mac("k", "c1", &s, "us-east", "GET", "/v1/router/point", NULL, "", 0, m2),
                     EDGE_OK);
    assert_memory_equal(m1, m2, sizeof(m1));

    static const char *const bad[] = {
        "",
        "region=eu-west",
        "region=eu-west ts=1 nonce=00",
        "region= ts=1 nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
        "region=eu-west ts=-1 nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
        "region=eu-west ts=1234567890123456 nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
        "region=eu-west ts= nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
        "region=eu-west ts=1 nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000 extra=1",
        "ts=1 region=eu-west nonce=0000000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
        "region=eu-west ts=1 nonce=zz00000000000000000000000000000000000000000000000000000000000000 "
        "mac=0000000000000000000000000000000000000000000000000000000000000000",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(edge_repl_http_sig_parse(bad[i], &t), EDGE_EINVAL);
    }
    assert_int_equal(edge_repl_http_sig_parse(NULL, &t), EDGE_EINVAL);

    /* The snapshot answer's MAC: bound to both nonces, both regions, the size and the hash. */
    struct edge_repl_http_auth a;
    memset(&a, 0, sizeof(a));
    snprintf(a.region, sizeof(a.region), "eu-west");
    memcpy(a.nonce, NONCE, sizeof(a.nonce));
    memcpy(a.cnonce, NONCE, sizeof(a.cnonce));
    a.cnonce[0] ^= 0x80;
    static const char h1[] = "0f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f";
    static const char h2[] = "1f0e0d0c0b0a09080706050403020100000102030405060708090a0b0c0d0e0f";
    uint8_t base[EDGE_REPL_MAC_LEN], other[EDGE_REPL_MAC_LEN];
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4096, h1, base), EDGE_OK);
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4096, h2, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4097, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "ap-south", 4096, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    assert_int_equal(edge_repl_http_snapshot_mac("wrong", &a, "c1", "us-east", 4096, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    a.nonce[3] ^= 1;
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4096, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    a.nonce[3] ^= 1;
    a.cnonce[3] ^= 1;
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4096, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
    a.cnonce[3] ^= 1;
    snprintf(a.region, sizeof(a.region), "eu-north");
    assert_int_equal(edge_repl_http_snapshot_mac("s3cret", &a, "c1", "us-east", 4096, h1, other), EDGE_OK);
    assert_memory_not_equal(base, other, sizeof(base));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_challenge),
        cmocka_unit_test(test_http_sig),
        cmocka_unit_test(test_hello_roundtrip_and_mac),
        cmocka_unit_test(test_hello_ok_mac_and_seal),
        cmocka_unit_test(test_hello_ok_ack_ping_pong_error),
        cmocka_unit_test(test_entries),
        cmocka_unit_test(test_entries_bitflips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
