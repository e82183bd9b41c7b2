/* SPDX-License-Identifier: MIT */
/* CRDT throughput, in process: local operations/s and merges/s per type, plus the
 * OR-Set at 100,000 elements (encoded bytes per element, full-merge time). Each phase
 * is bounded by an operation count, so the whole run takes a few seconds. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "core/alloc.h"
#include "edgelite/crdt.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int die(const char *what, int rv)
{
    fprintf(stderr, "bench_crdt: %s: %s\n", what, edge_strerror(rv));
    return 1;
}

static const char *const regions[3] = {"us-west-2", "eu-west-1", "ap-south-1"};

static int count_cb(void *ud, const uint8_t *elem, size_t len)
{
    (void)elem;
    *(size_t *)ud += len;
    return 0;
}

/* n local ops on a fresh object; returns ops/s. */
static int bench_ops(int type, int n, double *out_rate)
{
    struct edge_crdt *c = NULL;
    char e[32];
    int rv = edge_crdt_create(type, &c);
    double t0 = now_s();
    for (int i = 0; rv == EDGE_OK && i < n; i++) {
        const char *r = regions[i % 3];
        switch (type) {
        case EDGE_CRDT_GCOUNTER:
            rv = edge_crdt_increment(c, r, 1, NULL);
            break;
        case EDGE_CRDT_PNCOUNTER:
            rv = i % 2 ? edge_crdt_increment(c, r, 2, NULL) : edge_crdt_decrement(c, r, 1, NULL);
            break;
        case EDGE_CRDT_ORSET:
            snprintf(e, sizeof(e), "\"e%d\"", i % 1000);
            rv = i % 4 == 3 ? edge_crdt_remove(c, r, e, strlen(e), NULL) : edge_crdt_add(c, r, e, strlen(e), NULL);
            break;
        default:
            snprintf(e, sizeof(e), "%d", i);
            rv = edge_crdt_set(c, r, (uint64_t)i, e, strlen(e), NULL);
            break;
        }
    }
    *out_rate = n / (now_s() - t0);
    edge_crdt_destroy(c);
    return rv;
}

/* n merges of small concurrent states (3 regions, a few elements). */
static int bench_merges(int type, int n, double *out_rate)
{
    struct edge_crdt *a = NULL, *b = NULL;
    int rv = edge_crdt_create(type, &a);
    if (rv == EDGE_OK) {
        rv = edge_crdt_create(type, &b);
    }
    double t0 = now_s();
    for (int i = 0; rv == EDGE_OK && i < n; i++) {
        /* one op on each side keeps them concurrent, then join both ways */
        switch (type) {
        case EDGE_CRDT_GCOUNTER:
        case EDGE_CRDT_PNCOUNTER:
            rv = edge_crdt_increment(a, regions[0], 1, NULL);
            if (rv == EDGE_OK) {
                rv = edge_crdt_increment(b, regions[1], 1, NULL);
            }
            break;
        case EDGE_CRDT_ORSET: {
            char e[16];
            snprintf(e, sizeof(e), "%d", i % 16);
            rv = edge_crdt_add(a, regions[0], e, strlen(e), NULL);
            if (rv == EDGE_OK) {
                rv = edge_crdt_remove(b, regions[1], e, strlen(e), NULL);
            }
            break;
        }
        default:
            rv = edge_crdt_set(a, regions[0], (uint64_t)i, "1", 1, NULL);
            if (rv == EDGE_OK) {
                rv = edge_crdt_set(b, regions[1], (uint64_t)i, "2", 1, NULL);
            }
            break;
        }
        if (rv == EDGE_OK) {
            rv = edge_crdt_merge(a, b, NULL);
        }
        if (rv == EDGE_OK) {
            rv = edge_crdt_merge(b, a, NULL);
        }
    }
    *out_rate = 2.0 * n / (now_s() - t0);
    edge_crdt_destroy(a);
    edge_crdt_destroy(b);
    return rv;
}

/* What one HTTP update of an OR-Set of n elements costs in the library: decode the
 * stored state, add or remove one element, encode the result. Alternates adds of new
 * elements and removes of existing ones so the size stays around n. Writes the mean
 * latency per update (ms) and, separately, the cost of listing the value in order. */
static int bench_update(int n, int rounds, double *out_ms, double *out_list_ms, double out_parts[3])
{
    double t_dec = 0, t_op = 0, t_enc = 0, t1;
    struct edge_crdt *s = NULL, *c = NULL;
    uint8_t *enc = NULL, *next = NULL;
    size_t len = 0, next_len = 0;
    char e[32];
    int rv = edge_crdt_create(EDGE_CRDT_ORSET, &s);
    for (int i = 0; rv == EDGE_OK && i < n; i++) {
        snprintf(e, sizeof(e), "\"user-%06d\"", i);
        rv = edge_crdt_add(s, regions[i % 2], e, strlen(e), NULL);
    }
    if (rv == EDGE_OK) {
        rv = edge_crdt_encode(s, &enc, &len);
    }
    double t0 = now_s();
    for (int i = 0; rv == EDGE_OK && i < rounds; i++) {
        t1 = now_s();
        if ((rv = edge_crdt_decode(enc, len, &c)) != EDGE_OK) {
            break;
        }
        t_dec += now_s() - t1;
        t1 = now_s();
        if (i % 2 == 0) {
            snprintf(e, sizeof(e), "\"zz-%06d\"", i);
            rv = edge_crdt_add(c, regions[2], e, strlen(e), NULL);
        } else {
            snprintf(e, sizeof(e), "\"user-%06d\"", (i * 7919) % n);
            rv = edge_crdt_remove(c, regions[2], e, strlen(e), NULL);
        }
        t_op += now_s() - t1;
        t1 = now_s();
        if (rv == EDGE_OK) {
            rv = edge_crdt_encode(c, &next, &next_len);
        }
        t_enc += now_s() - t1;
        edge_crdt_destroy(c);
        c = NULL;
        if (rv == EDGE_OK) {
            edge_free(enc);
            enc = next;
            len = next_len;
            next = NULL;
        }
    }
    *out_ms = (now_s() - t0) * 1e3 / rounds;
    out_parts[0] = t_dec * 1e3 / rounds;
    out_parts[1] = t_op * 1e3 / rounds;
    out_parts[2] = t_enc * 1e3 / rounds;
    size_t count = 0;
    t0 = now_s();
    for (int i = 0; rv == EDGE_OK && i < rounds; i++) {
        rv = edge_crdt_foreach(s, count_cb, &count);
    }
    *out_list_ms = (now_s() - t0) * 1e3 / rounds;
    edge_free(enc);
    edge_crdt_destroy(s);
    return rv;
}

int main(void)
{
    static const char *const names[] = {"", "g-counter", "pn-counter", "or-set", "lww-register"};
    double rate;
    int rv;
    for (int t = EDGE_CRDT_GCOUNTER; t <= EDGE_CRDT_LWW; t++) {
        if ((rv = bench_ops(t, 1000000, &rate)) != EDGE_OK) {
            return die("ops", rv);
        }
        printf("%-13s local ops:  %12.0f ops/s\n", names[t], rate);
        if ((rv = bench_merges(t, 200000, &rate)) != EDGE_OK) {
            return die("merges", rv);
        }
        printf("%-13s merges:     %12.0f merges/s (small concurrent states)\n", names[t], rate);
    }

    static const int sizes[2] = {9000, 100000};
    for (int i = 0; i < 2; i++) {
        double ms, list_ms, parts[3];
        if ((rv = bench_update(sizes[i], sizes[i] > 10000 ? 20 : 200, &ms, &list_ms, parts)) != EDGE_OK) {
            return die("update", rv);
        }
        printf("or-set %6d: one update (decode + add/remove + encode) %.3f ms = %.3f + %.3f + %.3f; "
               "listing the value %.3f ms\n",
               sizes[i], ms, parts[0], parts[1], parts[2], list_ms);
        printf("RESULT name=crdt_orset_update_%d ms=%.3f list_ms=%.3f\n", sizes[i], ms, list_ms);
    }

    /* OR-Set at 100k elements, written by two regions, then joined with a replica that
     * diverged by 1,000 concurrent adds and removes. */
    enum { N = 100000 };
    struct edge_crdt *a = NULL, *b = NULL, *c = NULL;
    char e[32];
    uint8_t *enc = NULL;
    size_t len = 0;
    if ((rv = edge_crdt_create(EDGE_CRDT_ORSET, &a)) != EDGE_OK) {
        return die("create", rv);
    }
    double t0 = now_s();
    for (int i = 0; i < N; i++) {
        snprintf(e, sizeof(e), "\"user-%06d\"", i);
        if ((rv = edge_crdt_add(a, regions[i % 2], e, strlen(e), NULL)) != EDGE_OK) {
            return die("add", rv);
        }
    }
    double t_build = now_s() - t0;
    if ((rv = edge_crdt_clone(a, &b)) != EDGE_OK) {
        return die("clone", rv);
    }
    for (int i = 0; i < 1000; i++) {
        snprintf(e, sizeof(e), "\"user-%06d\"", i * 7);
        rv = edge_crdt_remove(b, regions[2], e, strlen(e), NULL);
        snprintf(e, sizeof(e), "\"new-%06d\"", i);
        if (rv != EDGE_OK || (rv = edge_crdt_add(b, regions[2], e, strlen(e), NULL)) != EDGE_OK) {
            return die("diverge", rv);
        }
    }
    t0 = now_s();
    if ((rv = edge_crdt_encode(a, &enc, &len)) != EDGE_OK) {
        return die("encode", rv);
    }
    double t_enc = now_s() - t0;
    t0 = now_s();
    if ((rv = edge_crdt_decode(enc, len, &c)) != EDGE_OK) {
        return die("decode", rv);
    }
    double t_dec = now_s() - t0;
    const int rounds = 10;
    t0 = now_s();
    for (int i = 0; i < rounds; i++) {
        if ((rv = edge_crdt_merge(c, b, NULL)) != EDGE_OK) {
            return die("merge", rv);
        }
    }
    double t_merge = (now_s() - t0) / rounds;
    printf("or-set 100k:  build %.1f ms (%.0f adds/s), %zu bytes encoded = %.2f bytes/element\n", t_build * 1e3,
           N / t_build, len, (double)len / N);
    printf("or-set 100k:  encode %.2f ms, decode %.2f ms, full merge (100k x 100k, 2,000 diffs) %.2f ms, "
           "result %zu elements\n",
           t_enc * 1e3, t_dec * 1e3, t_merge * 1e3, edge_crdt_size(c));
    printf("RESULT name=crdt_orset_merge_100k ms=%.3f encode_ms=%.3f decode_ms=%.3f\n", t_merge * 1e3, t_enc * 1e3,
           t_dec * 1e3);
    edge_free(enc);
    edge_crdt_destroy(a);
    edge_crdt_destroy(b);
    edge_crdt_destroy(c);
    return 0;
}
