/* SPDX-License-Identifier: MIT */
/* The replication peer protocol: one message per WebSocket binary frame, 1 byte of type
 * then a body made of varints (core/vclock.h), length-prefixed strings and blobs, raw
 * fixed-size nonces/MACs and version vectors (edge_vclock_encode). Shared by the
 * outbound link (repl/peer.c) and the node's /v1/peer endpoint; the format is
 * documented in docs/internals/peer-protocol.md.
 *
 * DESIGN: decoders are the attack surface (a peer may be buggy or hostile), so every
 * one of them bounds-checks each field, refuses trailing bytes and overlong lengths
 * with EDGE_ECORRUPT, bounds allocations by the input size, and never reads outside
 * p[0..len). Strings must not contain NUL bytes (they become C strings, and the
 * HELLO MAC uses NUL as a separator). */
#ifndef EDGE_REPL_PROTO_H
#define EDGE_REPL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/vclock.h"

/* 2: entry payloads name their columns (payload version 3); 3: mutual handshake (client
 * nonce in HELLO, server MAC in HELLO_OK) and a MAC on every frame after it */
#define EDGE_REPL_PROTO_VERSION 3
#define EDGE_REPL_PROTO_VERSION_STR "3"
#define EDGE_REPL_WS_PROTOCOL "edgelite-peer1" /* Sec-WebSocket-Protocol and MAC label */
#define EDGE_REPL_STR_MAX 256                  /* bytes, any protocol string */
#define EDGE_REPL_FRAME_MAX ((size_t)64 << 20) /* bytes, one message */
#define EDGE_REPL_ENTRIES_MAX 100000           /* entries in one ENTRIES message */
#define EDGE_REPL_NONCE_LEN 32
#define EDGE_REPL_MAC_LEN 32
#define EDGE_REPL_KEY_LEN 32
/* bytes of one sealed frame on the wire: a message and its tag */
#define EDGE_REPL_WIRE_MAX (EDGE_REPL_FRAME_MAX + EDGE_REPL_MAC_LEN)

enum edge_repl_msg {
    EDGE_REPL_MSG_CHALLENGE = 1, /* S->C nonce[32] */
    EDGE_REPL_MSG_HELLO = 2,     /* C->S version, cluster, region, to_region, nonce[32], vv, mac[32] */
    EDGE_REPL_MSG_HELLO_OK = 3,  /* S->C region, vv, mac[32] */
    EDGE_REPL_MSG_ENTRIES = 4,   /* C->S count, entries */
    EDGE_REPL_MSG_ACK = 5,       /* S->C vv */
    EDGE_REPL_MSG_PING = 6,      /* both, t */
    EDGE_REPL_MSG_PONG = 7,      /* both, t echoed [, responder's wall clock ms] */
    EDGE_REPL_MSG_ERROR = 8      /* S->C code, message; the server closes after it */
};

enum edge_repl_consistency {
    EDGE_REPL_EVENTUAL = 0,
    EDGE_REPL_STRONG = 1,
    EDGE_REPL_ASYNC = 2
};

struct edge_repl_entry {
    char origin[EDGE_VCLOCK_REGION_MAX + 1]; /* region that wrote it, valid region id */
    uint64_t seq;                            /* >= 1, per origin */
    uint64_t hlc;                            /* hybrid logical clock of the write */
    uint8_t consistency;                     /* enum edge_repl_consistency */
    struct edge_vclock deps;                 /* origin's VV at write time */
    const uint8_t *payload;                  /* borrowed (from the frame when decoded) */
    size_t payload_len;
};

struct edge_repl_hello {
    uint64_t version;                     /* EDGE_REPL_PROTO_VERSION from a current client */
    char cluster[EDGE_REPL_STR_MAX + 1];  /* NUL-terminated */
    char region[EDGE_VCLOCK_REGION_MAX + 1];    /* the client's region */
    char to_region[EDGE_VCLOCK_REGION_MAX + 1]; /* the region the client means to reach */
    uint8_t nonce[EDGE_REPL_NONCE_LEN];   /* the client's fresh nonce */
    struct edge_vclock vv;                /* the client's version vector */
    uint8_t mac[EDGE_REPL_MAC_LEN];       /* edge_repl_hello_mac */
};

struct edge_repl_hello_ok {
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    struct edge_vclock vv;          /* the server's version vector */
    uint8_t mac[EDGE_REPL_MAC_LEN]; /* edge_repl_hello_ok_mac */
};

/* One side's frame protection state after the handshake: the session key and a
 * sequence number per direction. Plain data, wiped by edge_repl_seal_wipe. */
struct edge_repl_seal {
    uint8_t key[EDGE_REPL_KEY_LEN];
    uint8_t tx_dir, rx_dir; /* EDGE_REPL_DIR_C2S / _S2C */
    uint64_t tx_seq, rx_seq; /* the next frame's number, from 0 */
};
#define EDGE_REPL_DIR_C2S 1
#define EDGE_REPL_DIR_S2C 2

struct edge_repl_error {
    char code[EDGE_REPL_STR_MAX + 1];
    char message[EDGE_REPL_STR_MAX + 1];
};

/* Message type of a frame (first byte) into *out_type. EDGE_OK, or EDGE_ECORRUPT for an
 * empty frame, an unknown type or a frame over EDGE_REPL_FRAME_MAX. Any thread. */
int edge_repl_msg_type(const uint8_t *p, size_t len, int *out_type);

/* ---- encoders: append one whole message to out (borrowed). EDGE_OK, EDGE_ENOMEM,
 * EDGE_ETOOBIG (out's cap), EDGE_EINVAL (a string over EDGE_REPL_STR_MAX or with a NUL,
 * an invalid region, consistency > 2, seq 0). On error out may hold a partial message:
 * callers reset it. ---- */
int edge_repl_encode_challenge(struct edge_buf *out, const uint8_t nonce[EDGE_REPL_NONCE_LEN]);
/* h borrowed; h->version is written as given (tests send wrong versions). */
int edge_repl_encode_hello(struct edge_buf *out, const struct edge_repl_hello *h);
/* mac: edge_repl_hello_ok_mac of the same region and vv. */
int edge_repl_encode_hello_ok(struct edge_buf *out, const char *region, const struct edge_vclock *vv,
                              const uint8_t mac[EDGE_REPL_MAC_LEN]);
/* A whole ENTRIES message from n entries (borrowed); n <= EDGE_REPL_ENTRIES_MAX. */
int edge_repl_encode_entries(struct edge_buf *out, const struct edge_repl_entry *e, size_t n);
/* Incremental form for batching: the type byte and count, then n calls to
 * edge_repl_encode_entry, give the same bytes as edge_repl_encode_entries. */
int edge_repl_encode_entries_header(struct edge_buf *out, size_t n);
int edge_repl_encode_entry(struct edge_buf *out, const struct edge_repl_entry *e);
int edge_repl_encode_ack(struct edge_buf *out, const struct edge_vclock *vv);
int edge_repl_encode_ping(struct edge_buf *out, uint64_t t);
int edge_repl_encode_pong(struct edge_buf *out, uint64_t t);
/* PONG with the responder's wall clock (unix ms) after t: the pinger estimates the
 * offset between the two clocks from it (clock_offset_ms in /v1/status). */
int edge_repl_encode_pong_clock(struct edge_buf *out, uint64_t t, uint64_t wall_ms);
int edge_repl_encode_error(struct edge_buf *out, const char *code, const char *message);

/* ---- decoders: p[0..len) is one whole frame, type byte included, borrowed. EDGE_OK,
 * EDGE_ECORRUPT (wrong type, truncation, trailing bytes, overlong or invalid field),
 * EDGE_ENOMEM. Out-structs are fully written on success and need no cleanup on error. ---- */
int edge_repl_decode_challenge(const uint8_t *p, size_t len, uint8_t out_nonce[EDGE_REPL_NONCE_LEN]);
/* Reads the version first: a version other than EDGE_REPL_PROTO_VERSION gives
 * EDGE_EPROTO with only out->version set (the rest of an old or newer HELLO has another
 * layout; the server answers ERROR VERSION). Caller edge_repl_hello_close(out) on
 * success. */
int edge_repl_decode_hello(const uint8_t *p, size_t len, struct edge_repl_hello *out);
/* Caller edge_vclock_close(&out->vv) on success. */
int edge_repl_decode_hello_ok(const uint8_t *p, size_t len, struct edge_repl_hello_ok *out);
/* Entries into *out_entries (caller edge_repl_entries_free(*out_entries, *out_n)); their
 * payload pointers borrow p, so p must outlive them. Zero entries is valid (NULL array). */
int edge_repl_decode_entries(const uint8_t *p, size_t len, struct edge_repl_entry **out_entries,
                             size_t *out_n);
/* out_vv must be empty (edge_vclock_init); caller closes it on success. */
int edge_repl_decode_ack(const uint8_t *p, size_t len, struct edge_vclock *out_vv);
int edge_repl_decode_ping(const uint8_t *p, size_t len, uint64_t *out_t);
int edge_repl_decode_pong(const uint8_t *p, size_t len, uint64_t *out_t);
/* PONG: t, then optionally the responder's wall clock (*out_wall_ms 0 when absent). */
int edge_repl_decode_pong_clock(const uint8_t *p, size_t len, uint64_t *out_t, uint64_t *out_wall_ms);
int edge_repl_decode_error(const uint8_t *p, size_t len, struct edge_repl_error *out);

/* Free the deps of n entries and the array itself (NULL is fine). */
void edge_repl_entries_free(struct edge_repl_entry *e, size_t n);
/* Free h's version vector; h is reusable after edge_vclock_init(&h->vv). */
void edge_repl_hello_close(struct edge_repl_hello *h);

/* ---- authentication (DESIGN.md 3: HMAC challenge, both ways) ----
 * K = SHA-256(secret). Every MAC input starts with a label and a NUL, and strings are
 * NUL-terminated in it (they hold no NUL), vv as edge_vclock_encode:
 *   HELLO    mac = HMAC-SHA256(K, "edgelite-peer3 hello" 0 || ns || nc || cluster 0 || region 0
 *                              || to_region 0 || vv)
 *   HELLO_OK mac = HMAC-SHA256(K, "edgelite-peer3 hello-ok" 0 || ns || nc || cluster 0 ||
 *                              client region 0 || server region 0 || server vv)
 *   session key = HMAC-SHA256(K, "edgelite-peer3 session" 0 || ns || nc || cluster 0 ||
 *                              client region 0 || server region 0)
 * ns: the server's CHALLENGE nonce, nc: the client's nonce from the HELLO. */

/* HELLO MAC of h's fields (h->mac is ignored). EDGE_OK, EDGE_EINVAL, EDGE_ENOMEM. */
int edge_repl_hello_mac(const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                        const struct edge_repl_hello *h, uint8_t out_mac[EDGE_REPL_MAC_LEN]);
/* Server-side check of a decoded HELLO against the nonce it sent: EDGE_OK, EDGE_EPROTO
 * (version != EDGE_REPL_PROTO_VERSION), EDGE_EAUTH (cluster differs or the MAC is wrong;
 * constant-time compare). The caller then checks h->to_region and h->region. */
int edge_repl_hello_verify(const struct edge_repl_hello *h, const char *cluster, const char *secret,
                           const uint8_t server_nonce[EDGE_REPL_NONCE_LEN]);
/* HELLO_OK MAC the server sends for HELLO h (already verified). */
int edge_repl_hello_ok_mac(const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                           const struct edge_repl_hello *h, const char *server_region,
                           const struct edge_vclock *server_vv, uint8_t out_mac[EDGE_REPL_MAC_LEN]);
/* Client-side check of a decoded HELLO_OK for the HELLO h it sent: EDGE_OK or EDGE_EAUTH
 * (wrong MAC: the server does not know the secret, or the message was altered). */
int edge_repl_hello_ok_verify(const struct edge_repl_hello_ok *ok, const char *secret,
                              const uint8_t server_nonce[EDGE_REPL_NONCE_LEN], const struct edge_repl_hello *h);
/* Derive the session key of the handshake (ns, h, server_region) into *s, with both
 * sequence numbers at 0; client: true on the connecting side. EDGE_OK, EDGE_EINVAL. */
int edge_repl_seal_init(struct edge_repl_seal *s, const char *secret, const uint8_t server_nonce[EDGE_REPL_NONCE_LEN],
                        const struct edge_repl_hello *h, const char *server_region, bool client);
void edge_repl_seal_wipe(struct edge_repl_seal *s);
/* Append the tag of the message in b[0..len) for the next outgoing sequence number:
 * tag = BLAKE2b-256(key = session key, dir || seq (8 bytes, big endian) || message).
 * EDGE_OK (tx_seq advanced) or EDGE_ENOMEM / EDGE_ETOOBIG (b's cap; b unchanged). */
int edge_repl_seal_frame(struct edge_repl_seal *s, struct edge_buf *b);
/* Check a received sealed frame p[0..len) against the next incoming sequence number:
 * EDGE_OK with *out_len = the message's length (the tag stripped; rx_seq advanced), or
 * EDGE_EAUTH (shorter than a tag, or the tag does not match: injected, altered, replayed,
 * reordered or reflected) and rx_seq unchanged. Constant-time compare. */
int edge_repl_open_frame(struct edge_repl_seal *s, const uint8_t *p, size_t len, size_t *out_len);

/* ---- HTTP requests between regions (GET /v1/snapshot, a peer's /v1/status) ----
 * The same idea without a connection to bind to: the client sends a fresh nonce nc to
 * GET /v1/cluster/challenge?cnonce=HEX and gets a single-use server nonce ns with the
 * server's proof; the request then carries X-Edge-Cluster-Auth with its MAC, bound to
 * the method and the path, so the secret itself never travels.
 *   proof = HMAC-SHA256(K, "edgelite-http1 challenge" 0 || nc || ns || cluster 0 || server region 0)
 *   mac   = HMAC-SHA256(K, "edgelite-http1 request" 0 || ns || nc || cluster 0 || client region 0
 *                          || method 0 || path 0) */
#define EDGE_REPL_HTTP_AUTH_HEADER "X-Edge-Cluster-Auth"

struct edge_repl_http_auth {
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    uint8_t nonce[EDGE_REPL_NONCE_LEN];  /* ns */
    uint8_t cnonce[EDGE_REPL_NONCE_LEN]; /* nc */
    uint8_t mac[EDGE_REPL_MAC_LEN];
};

int edge_repl_http_proof(const char *secret, const uint8_t cnonce[EDGE_REPL_NONCE_LEN],
                         const uint8_t nonce[EDGE_REPL_NONCE_LEN], const char *cluster, const char *server_region,
                         uint8_t out_mac[EDGE_REPL_MAC_LEN]);
int edge_repl_http_mac(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                       const char *method, const char *path, uint8_t out_mac[EDGE_REPL_MAC_LEN]);
/* Constant-time check of a->mac: EDGE_OK or EDGE_EAUTH. */
int edge_repl_http_verify(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                          const char *method, const char *path);
/* The header's value: "region=R nonce=HEX cnonce=HEX mac=HEX" (that order, single
 * spaces). Parse: EDGE_OK or EDGE_EINVAL (anything else, an invalid region, bad hex). */
int edge_repl_http_auth_parse(const char *value, struct edge_repl_http_auth *out);
/* Into out[cap] (at least 256 bytes): EDGE_OK or EDGE_EINVAL. */
int edge_repl_http_auth_format(const struct edge_repl_http_auth *a, char *out, size_t cap);
/* The answer to GET /v1/snapshot is bound to its request: the server sends
 *   X-Edge-Snapshot-Mac = HMAC-SHA256(K, "edgelite-http1 snapshot" 0 || ns || nc || cluster 0 || server region 0
 *                                      || caller region 0 || size (decimal) 0 || sha256 (hex) 0)
 * with the nonces and caller of the request's X-Edge-Cluster-Auth, so the size and hash
 * the body is checked against (and through them the body) cannot be swapped on the path,
 * nor an answer to another request replayed. */
#define EDGE_REPL_SNAPSHOT_MAC_HEADER "X-Edge-Snapshot-Mac"
int edge_repl_http_snapshot_mac(const char *secret, const struct edge_repl_http_auth *a, const char *cluster,
                                const char *server_region, uint64_t size, const char *sha256_hex,
                                uint8_t out_mac[EDGE_REPL_MAC_LEN]);

/* ---- Signed HTTP requests between regions (session access reports, broadcast relays,
 * the router's read index) ----
 * Hot paths that cannot afford the challenge's round trip: the request carries
 * X-Edge-Cluster-Sig with the caller's region, its wall clock, a fresh nonce and
 *   mac = HMAC-SHA256(K, "edgelite-http1 signed" 0 || cluster 0 || caller region 0 || callee region 0
 *                        || method 0 || path 0 || query 0 || ts (8 bytes, big-endian) || nonce
 *                        || SHA-256(body))
 * so the secret never travels and nothing of the request (body included) can be altered
 * or sent to another region. The callee refuses a ts outside EDGE_REPL_HTTP_SIG_WINDOW_MS
 * of its own clock and a nonce it has seen (api/cluster_sig.c keeps them). */
#define EDGE_REPL_HTTP_SIG_HEADER "X-Edge-Cluster-Sig"
#define EDGE_REPL_HTTP_SIG_WINDOW_MS 30000

struct edge_repl_http_sig {
    char region[EDGE_VCLOCK_REGION_MAX + 1]; /* the caller */
    int64_t ts_ms;                           /* the caller's wall clock, Unix milliseconds */
    uint8_t nonce[EDGE_REPL_NONCE_LEN];
    uint8_t mac[EDGE_REPL_MAC_LEN];
};

/* path without the query; query NULL or without its '?'. */
int edge_repl_http_sig_mac(const char *secret, const char *cluster, const struct edge_repl_http_sig *s,
                           const char *to_region, const char *method, const char *path, const char *query,
                           const void *body, size_t len, uint8_t out_mac[EDGE_REPL_MAC_LEN]);
/* Constant-time check of s->mac: EDGE_OK or EDGE_EAUTH. */
int edge_repl_http_sig_verify(const char *secret, const char *cluster, const struct edge_repl_http_sig *s,
                              const char *to_region, const char *method, const char *path, const char *query,
                              const void *body, size_t len);
/* The header's value: "region=R ts=MS nonce=HEX mac=HEX" (that order, single spaces).
 * Parse: EDGE_OK or EDGE_EINVAL. Format into out[cap] (at least 256 bytes). */
int edge_repl_http_sig_parse(const char *value, struct edge_repl_http_sig *out);
int edge_repl_http_sig_format(const struct edge_repl_http_sig *s, char *out, size_t cap);

/* 64 lowercase hex digits of a 32-byte value into out[65], and back (EDGE_EINVAL). */
void edge_repl_hex32(const uint8_t v[32], char out[65]);
int edge_repl_unhex32(const char *s, size_t len, uint8_t out[32]);

#endif
