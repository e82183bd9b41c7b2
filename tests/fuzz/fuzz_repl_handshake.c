/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for the peer handshake and the frame seal (repl/proto.h): arbitrary
 * bytes go to the CHALLENGE, HELLO and HELLO_OK decoders and their verifiers, to the
 * frame check, and to the X-Edge-Cluster-Auth parser. Nothing may crash or read out of
 * bounds; whatever decodes must re-encode to the same bytes; a message made valid (its
 * MAC computed) must verify, and with any byte changed must not; arbitrary bytes must
 * never pass as a sealed frame.
 *
 * Input: byte 0 picks the target (mod 5), the rest is the message. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/vclock.h"
#include "edgelite/errors.h"
#include "repl/proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char SECRET[] = "fuzz-secret";
static const uint8_t NS[EDGE_REPL_NONCE_LEN] = {7, 7, 7, 7, 1, 2, 3, 4};

static void check(int cond)
{
    if (!cond) abort();
}

static void same(const struct edge_buf *b, int rv, const uint8_t *p, size_t n)
{
    check(rv == EDGE_OK && b->len == n && memcmp(b->data, p, n) == 0);
}

/* A HELLO that decoded: round trip, then make it valid and check the MAC binds it. */
static void hello(const uint8_t *p, size_t n)
{
    struct edge_repl_hello h;
    struct edge_buf b;
    if (edge_repl_decode_hello(p, n, &h) != EDGE_OK) return;
    edge_buf_init(&b, EDGE_REPL_FRAME_MAX);
    same(&b, edge_repl_encode_hello(&b, &h), p, n);
    /* an arbitrary MAC essentially never verifies; the computed one always does */
    (void)edge_repl_hello_verify(&h, h.cluster, SECRET, NS);
    if (edge_repl_hello_mac(SECRET, NS, &h, h.mac) == EDGE_OK) {
        check(edge_repl_hello_verify(&h, h.cluster, SECRET, NS) == EDGE_OK);
        check(edge_repl_hello_verify(&h, h.cluster, "other", NS) == EDGE_EAUTH);
        h.nonce[n % EDGE_REPL_NONCE_LEN] ^= 1;
        check(edge_repl_hello_verify(&h, h.cluster, SECRET, NS) == EDGE_EAUTH);
        h.nonce[n % EDGE_REPL_NONCE_LEN] ^= 1;
        /* the server's answer and the session keys of both sides */
        uint8_t mac[EDGE_REPL_MAC_LEN];
        struct edge_repl_hello_ok ok;
        edge_buf_reset(&b);
        if (edge_repl_hello_ok_mac(SECRET, NS, &h, h.to_region, &h.vv, mac) == EDGE_OK &&
            edge_repl_encode_hello_ok(&b, h.to_region, &h.vv, mac) == EDGE_OK) {
            check(edge_repl_decode_hello_ok((const uint8_t *)b.data, b.len, &ok) == EDGE_OK);
            check(edge_repl_hello_ok_verify(&ok, SECRET, NS, &h) == EDGE_OK);
            ok.mac[0] ^= 0x80;
            check(edge_repl_hello_ok_verify(&ok, SECRET, NS, &h) == EDGE_EAUTH);
            edge_vclock_close(&ok.vv);
        }
        struct edge_repl_seal c, s;
        if (edge_repl_seal_init(&c, SECRET, NS, &h, h.to_region, true) == EDGE_OK &&
            edge_repl_seal_init(&s, SECRET, NS, &h, h.to_region, false) == EDGE_OK) {
            check(memcmp(c.key, s.key, EDGE_REPL_KEY_LEN) == 0);
        }
    }
    edge_repl_hello_close(&h);
    edge_buf_free(&b);
}

static void hello_ok(const uint8_t *p, size_t n)
{
    struct edge_repl_hello_ok ok;
    struct edge_buf b;
    if (edge_repl_decode_hello_ok(p, n, &ok) != EDGE_OK) return;
    edge_buf_init(&b, EDGE_REPL_FRAME_MAX);
    same(&b, edge_repl_encode_hello_ok(&b, ok.region, &ok.vv, ok.mac), p, n);
    struct edge_repl_hello h;
    memset(&h, 0, sizeof(h));
    edge_vclock_init(&h.vv);
    h.version = EDGE_REPL_PROTO_VERSION;
    memcpy(h.cluster, "c", 2);
    memcpy(h.region, "r", 2);
    memcpy(h.to_region, ok.region, sizeof(ok.region));
    (void)edge_repl_hello_ok_verify(&ok, SECRET, NS, &h);
    edge_vclock_close(&ok.vv);
    edge_buf_free(&b);
}

/* Arbitrary bytes as a received sealed frame, then as a message to seal and open. */
static void frame(const uint8_t *p, size_t n)
{
    struct edge_repl_hello h;
    struct edge_repl_seal c, s;
    size_t len = 0;
    memset(&h, 0, sizeof(h));
    edge_vclock_init(&h.vv);
    memcpy(h.cluster, "c", 2);
    memcpy(h.region, "a", 2);
    memcpy(h.to_region, "b", 2);
    check(edge_repl_seal_init(&c, SECRET, NS, &h, "b", true) == EDGE_OK);
    check(edge_repl_seal_init(&s, SECRET, NS, &h, "b", false) == EDGE_OK);
    check(edge_repl_open_frame(&s, p, n, &len) == EDGE_EAUTH);
    check(s.rx_seq == 0);
    struct edge_buf b;
    edge_buf_init(&b, EDGE_REPL_WIRE_MAX);
    if (n > 0) check(edge_buf_append(&b, p, n) == EDGE_OK);
    check(edge_repl_seal_frame(&c, &b) == EDGE_OK);
    check(b.len == n + EDGE_REPL_MAC_LEN);
    /* one byte changed, anywhere: refused, nothing counted */
    size_t at = n > 0 ? (size_t)p[0] % b.len : 0;
    b.data[at] ^= 0x01;
    check(edge_repl_open_frame(&s, (const uint8_t *)b.data, b.len, &len) == EDGE_EAUTH);
    b.data[at] ^= 0x01;
    /* reflected back to its sender: refused */
    check(edge_repl_open_frame(&c, (const uint8_t *)b.data, b.len, &len) == EDGE_EAUTH);
    check(edge_repl_open_frame(&s, (const uint8_t *)b.data, b.len, &len) == EDGE_OK);
    check(len == n && (n == 0 || memcmp(b.data, p, n) == 0));
    /* replayed: refused */
    check(edge_repl_open_frame(&s, (const uint8_t *)b.data, b.len, &len) == EDGE_EAUTH);
    edge_buf_free(&b);
}

static void http_auth(const uint8_t *p, size_t n)
{
    char *v = edge_malloc(n + 1);
    if (v == NULL) return;
    memcpy(v, p, n);
    v[n] = '\0';
    struct edge_repl_http_auth a, b;
    if (edge_repl_http_auth_parse(v, &a) == EDGE_OK) {
        char out[400];
        check(edge_repl_http_auth_format(&a, out, sizeof(out)) == EDGE_OK);
        check(edge_repl_http_auth_parse(out, &b) == EDGE_OK);
        check(memcmp(&a, &b, sizeof(a)) == 0);
        (void)edge_repl_http_verify(SECRET, &a, "c", "GET", "/v1/snapshot");
        check(edge_repl_http_mac(SECRET, &a, "c", "GET", "/v1/snapshot", a.mac) == EDGE_OK);
        check(edge_repl_http_verify(SECRET, &a, "c", "GET", "/v1/snapshot") == EDGE_OK);
        check(edge_repl_http_verify(SECRET, &a, "c", "GET", "/v1/status") == EDGE_EAUTH);
    }
    edge_free(v);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || size > ((size_t)1 << 20)) return 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (data[0] % 5) {
    case 0: {
        uint8_t nonce[EDGE_REPL_NONCE_LEN];
        struct edge_buf b;
        if (edge_repl_decode_challenge(p, n, nonce) == EDGE_OK) {
            edge_buf_init(&b, 64);
            same(&b, edge_repl_encode_challenge(&b, nonce), p, n);
            edge_buf_free(&b);
        }
        break;
    }
    case 1: hello(p, n); break;
    case 2: hello_ok(p, n); break;
    case 3: frame(p, n); break;
    case 4: http_auth(p, n); break;
    }
    return 0;
}
