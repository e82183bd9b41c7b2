/* SPDX-License-Identifier: MIT */
/* libFuzzer driver for the peer protocol: every decoder must reject or accept any
 * frame without crashing or reading out of bounds, and the encoding is canonical, so
 * whatever is accepted must re-encode to exactly the input bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/buf.h"
#include "core/vclock.h"
#include "edgelite/errors.h"
#include "repl/proto.h"
#include "repl/repl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void same(const struct edge_buf *b, int rv, const uint8_t *data, size_t size)
{
    if (rv != EDGE_OK || b->len != size || memcmp(b->data, data, size) != 0) {
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int type = 0;
    struct edge_buf b;
    if (edge_repl_msg_type(data, size, &type) != EDGE_OK) {
        return 0;
    }
    edge_buf_init(&b, EDGE_REPL_FRAME_MAX);
    switch (type) {
    case EDGE_REPL_MSG_CHALLENGE: {
        uint8_t nonce[EDGE_REPL_NONCE_LEN];
        if (edge_repl_decode_challenge(data, size, nonce) == EDGE_OK) {
            same(&b, edge_repl_encode_challenge(&b, nonce), data, size);
        }
        break;
    }
    case EDGE_REPL_MSG_HELLO: {
        struct edge_repl_hello h;
        if (edge_repl_decode_hello(data, size, &h) == EDGE_OK) {
            same(&b, edge_repl_encode_hello(&b, &h), data, size);
            (void)edge_repl_hello_verify(&h, "c", "s", data);
            edge_repl_hello_close(&h);
        }
        break;
    }
    case EDGE_REPL_MSG_HELLO_OK: {
        struct edge_repl_hello_ok h;
        if (edge_repl_decode_hello_ok(data, size, &h) == EDGE_OK) {
            same(&b, edge_repl_encode_hello_ok(&b, h.region, &h.vv, h.mac), data, size);
            edge_vclock_close(&h.vv);
        }
        break;
    }
    case EDGE_REPL_MSG_ENTRIES: {
        struct edge_repl_entry *e = NULL;
        size_t n = 0;
        if (edge_repl_decode_entries(data, size, &e, &n) == EDGE_OK) {
            same(&b, edge_repl_encode_entries(&b, e, n), data, size);
            /* the payloads' own decoder (named columns, values, stamps): strict, never
             * reading past the payload */
            for (size_t i = 0; i < n; i++) (void)edge_repl_payload_walk(e[i].payload, e[i].payload_len, NULL, NULL);
            edge_repl_entries_free(e, n);
        }
        break;
    }
    case EDGE_REPL_MSG_ACK: {
        struct edge_vclock vv;
        edge_vclock_init(&vv);
        if (edge_repl_decode_ack(data, size, &vv) == EDGE_OK) {
            same(&b, edge_repl_encode_ack(&b, &vv), data, size);
            edge_vclock_close(&vv);
        }
        break;
    }
    case EDGE_REPL_MSG_PING:
    case EDGE_REPL_MSG_PONG: {
        uint64_t t = 0;
        if (type == EDGE_REPL_MSG_PING && edge_repl_decode_ping(data, size, &t) == EDGE_OK) {
            same(&b, edge_repl_encode_ping(&b, t), data, size);
        } else if (type == EDGE_REPL_MSG_PONG) {
            uint64_t wall = 0;
            if (edge_repl_decode_pong_clock(data, size, &t, &wall) == EDGE_OK) {
                same(&b, wall ? edge_repl_encode_pong_clock(&b, t, wall) : edge_repl_encode_pong(&b, t), data, size);
            }
        }
        break;
    }
    case EDGE_REPL_MSG_ERROR: {
        struct edge_repl_error er;
        if (edge_repl_decode_error(data, size, &er) == EDGE_OK) {
            same(&b, edge_repl_encode_error(&b, er.code, er.message), data, size);
        }
        break;
    }
    default:
        abort();
    }
    edge_buf_free(&b);
    return 0;
}
