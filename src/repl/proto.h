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

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/vclock.h"

#define EDGE_REPL_PROTO_VERSION 2 /* 2: entry payloads name their columns (payload version 3) */
#define EDGE_REPL_WS_PROTOCOL "edgelite-peer1" /* Sec-WebSocket-Protocol and MAC label */
#define EDGE_REPL_STR_MAX 256                  /* bytes, any protocol string */
#define EDGE_REPL_FRAME_MAX ((size_t)64 << 20) /* bytes, one message */
#define EDGE_REPL_ENTRIES_MAX 100000           /* entries in one ENTRIES message */
#define EDGE_REPL_NONCE_LEN 32
#define EDGE_REPL_MAC_LEN 32

enum edge_repl_msg {
    EDGE_REPL_MSG_CHALLENGE = 1, /* S->C nonce[32] */
    EDGE_REPL_MSG_HELLO = 2,     /* C->S version, cluster, region, mac[32], vv */
    EDGE_REPL_MSG_HELLO_OK = 3,  /* S->C region, vv */
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
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    uint8_t mac[EDGE_REPL_MAC_LEN];       /* edge_repl_hello_mac */
    struct edge_vclock vv;                /* the client's version vector */
};

struct edge_repl_hello_ok {
    char region[EDGE_VCLOCK_REGION_MAX + 1];
    struct edge_vclock vv; /* the server's version vector */
};

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
int edge_repl_encode_hello_ok(struct edge_buf *out, const char *region, const struct edge_vclock *vv);
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
/* Accepts any version number (so a server can answer a newer client with ERROR);
 * caller edge_repl_hello_close(out) on success. */
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

/* ---- authentication (DESIGN.md 3: HMAC challenge) ----
 * mac = HMAC-SHA256(key = SHA-256(secret),
 *                   msg = "edgelite-peer1" || nonce || cluster || 0x00 || region).
 * Strings borrowed. EDGE_OK or EDGE_EINVAL (NULL/overlong cluster or region). */
int edge_repl_hello_mac(const char *secret, const uint8_t nonce[EDGE_REPL_NONCE_LEN], const char *cluster,
                        const char *region, uint8_t out_mac[EDGE_REPL_MAC_LEN]);
/* Server-side check of a decoded HELLO against the nonce it sent: EDGE_OK, EDGE_EPROTO
 * (version != EDGE_REPL_PROTO_VERSION), EDGE_EAUTH (cluster differs or the MAC is wrong;
 * constant-time compare). All arguments borrowed. */
int edge_repl_hello_verify(const struct edge_repl_hello *h, const char *cluster, const char *secret,
                           const uint8_t nonce[EDGE_REPL_NONCE_LEN]);

#endif
