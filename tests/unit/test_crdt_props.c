/* SPDX-License-Identifier: MIT */
/* Property tests of the CRDTs, seeded and reproducible: EDGE_SEED=<n> replays a run; the
 * seed and history number are printed on any failure.
 *
 * Method: 3-5 simulated regions apply random operations to their own replica. Changes
 * travel either as deltas (a network pool delivers them late, out of order and
 * duplicated) or as full states (random pairwise merges). At the end everything is
 * delivered everywhere; then every replica must hold byte-identical state whose value
 * equals the sequential specification. A separate check runs the join laws
 * (commutative, associative, idempotent) on random states. */
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "crdt/crdt.h"

#define MAX_REPLICAS 5
#define MAX_OPS 48
#define POOL_MAX (MAX_OPS * 4)

static uint64_t g_seed;
static uint64_t g_rng;
static int g_history;

static uint64_t rnd(void)
{
    /* xorshift64*: tiny, fast, good enough for test schedules */
    g_rng ^= g_rng >> 12;
    g_rng ^= g_rng << 25;
    g_rng ^= g_rng >> 27;
    return g_rng * 0x2545F4914F6CDD1Du;
}

static uint64_t rnd_below(uint64_t n) { return rnd() % n; }

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            print_message("property failed: %s (EDGE_SEED=%" PRIu64 " history=%d)\n", #cond,      \
                          g_seed, g_history);                                                      \
            fail();                                                                                \
        }                                                                                          \
    } while (0)

static const char *const regions[MAX_REPLICAS] = {"ap-south-1", "eu-west-1", "us-east-1", "us-west-2",
                                                  "sa-east-1"};

static int same_bytes(const struct edge_crdt *a, const struct edge_crdt *b)
{
    uint8_t *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    assert_int_equal(edge_crdt_encode(a, &x, &xl), EDGE_OK);
    assert_int_equal(edge_crdt_encode(b, &y, &yl), EDGE_OK);
    int same = xl == yl && memcmp(x, y, xl) == 0;
    edge_free(x);
    edge_free(y);
    return same;
}

static void roundtrip(const struct edge_crdt *c)
{
    uint8_t *x = NULL;
    size_t xl = 0;
    struct edge_crdt *d = NULL;
    assert_int_equal(edge_crdt_encode(c, &x, &xl), EDGE_OK);
    CHECK(edge_crdt_decode(x, xl, &d) == EDGE_OK);
    CHECK(same_bytes(c, d));
    edge_crdt_destroy(d);
    edge_free(x);
}

/* ---- one random history ---- */

struct op_rec {
    int replica;
    int kind; /* 'i', 'd', 'a', 'r', 's' */
    uint64_t amount;
    int elem;
    uint64_t hlc; /* effective timestamp (LWW) */
    uint64_t past; /* OR-Set: bitset of ops this replica had seen before the op */
};

struct sim {
    int type;
    int n_rep;
    int use_deltas;
    struct edge_crdt *rep[MAX_REPLICAS];
    uint64_t seen[MAX_REPLICAS]; /* full-state mode: ops known to each replica */
    struct edge_crdt *pool[POOL_MAX];
    int n_pool;
    struct op_rec ops[MAX_OPS];
    int n_ops;
};

static void deliver(struct sim *s, int to, int k)
{
    CHECK(edge_crdt_merge(s->rep[to], s->pool[k], NULL) == EDGE_OK);
}

static void local_op(struct sim *s)
{
    int r = (int)rnd_below((uint64_t)s->n_rep);
    struct op_rec *op = &s->ops[s->n_ops];
    struct edge_crdt *delta = NULL;
    struct edge_crdt **dp = s->use_deltas ? &delta : NULL;
    char e[8];
    op->replica = r;
    op->past = s->seen[r];
    switch (s->type) {
    case EDGE_CRDT_GCOUNTER:
        op->kind = 'i';
        op->amount = 1 + rnd_below(1000);
        CHECK(edge_crdt_increment(s->rep[r], regions[r], op->amount, dp) == EDGE_OK);
        break;
    case EDGE_CRDT_PNCOUNTER:
        op->kind = rnd_below(2) ? 'i' : 'd';
        op->amount = 1 + rnd_below(1000);
        if (op->kind == 'i') {
            CHECK(edge_crdt_increment(s->rep[r], regions[r], op->amount, dp) == EDGE_OK);
        } else {
            CHECK(edge_crdt_decrement(s->rep[r], regions[r], op->amount, dp) == EDGE_OK);
        }
        break;
    case EDGE_CRDT_ORSET:
        op->kind = rnd_below(3) ? 'a' : 'r';
        op->elem = (int)rnd_below(5);
        snprintf(e, sizeof(e), "e%d", op->elem);
        if (op->kind == 'a') {
            CHECK(edge_crdt_add(s->rep[r], regions[r], e, strlen(e), dp) == EDGE_OK);
        } else {
            CHECK(edge_crdt_remove(s->rep[r], regions[r], e, strlen(e), dp) == EDGE_OK);
        }
        break;
    case EDGE_CRDT_LWW:
        op->kind = 's';
        op->elem = s->n_ops;
        snprintf(e, sizeof(e), "v%d", op->elem);
        /* a narrow time range forces timestamp ties between regions */
        CHECK(edge_crdt_set(s->rep[r], regions[r], 1 + rnd_below(8), e, strlen(e), dp) == EDGE_OK);
        CHECK(edge_crdt_get(s->rep[r], NULL, NULL, &op->hlc, NULL) == EDGE_OK);
        break;
    }
    s->seen[r] |= (uint64_t)1 << s->n_ops;
    s->n_ops++;
    if (delta != NULL) {
        CHECK(s->n_pool < POOL_MAX);
        s->pool[s->n_pool++] = delta;
    }
}

static void gossip(struct sim *s)
{
    if (s->use_deltas) {
        if (s->n_pool > 0) {
            deliver(s, (int)rnd_below((uint64_t)s->n_rep), (int)rnd_below((uint64_t)s->n_pool));
        }
        return;
    }
    int a = (int)rnd_below((uint64_t)s->n_rep), b = (int)rnd_below((uint64_t)s->n_rep);
    CHECK(edge_crdt_merge(s->rep[a], s->rep[b], NULL) == EDGE_OK);
    s->seen[a] |= s->seen[b];
}

/* The final value every replica must have, from the operation log alone. */
static void check_spec(struct sim *s, const struct edge_crdt *c)
{
    if (s->type == EDGE_CRDT_GCOUNTER || s->type == EDGE_CRDT_PNCOUNTER) {
        int64_t want = 0, got = 0;
        for (int i = 0; i < s->n_ops; i++) {
            want += s->ops[i].kind == 'i' ? (int64_t)s->ops[i].amount : -(int64_t)s->ops[i].amount;
        }
        CHECK(edge_crdt_value_i64(c, &got) == EDGE_OK);
        CHECK(got == want);
    } else if (s->type == EDGE_CRDT_LWW) {
        int best = -1;
        for (int i = 0; i < s->n_ops; i++) {
            const struct op_rec *o = &s->ops[i], *b = best >= 0 ? &s->ops[best] : NULL;
            if (b == NULL || o->hlc > b->hlc ||
                (o->hlc == b->hlc && strcmp(regions[o->replica], regions[b->replica]) > 0)) {
                best = i;
            }
        }
        const uint8_t *v = NULL;
        size_t len = 0;
        if (best < 0) {
            CHECK(edge_crdt_get(c, &v, &len, NULL, NULL) == EDGE_ENOTFOUND);
            return;
        }
        char e[8];
        snprintf(e, sizeof(e), "v%d", s->ops[best].elem);
        CHECK(edge_crdt_get(c, &v, &len, NULL, NULL) == EDGE_OK);
        CHECK(len == strlen(e) && memcmp(v, e, len) == 0);
    } else if (!s->use_deltas) {
        /* Add-wins: e is in the set iff some add(e) is not in the causal past of any
         * remove(e). Exact under full-state exchange, where "seen" is the causal past. */
        for (int e = 0; e < 5; e++) {
            int want = 0;
            for (int i = 0; i < s->n_ops && !want; i++) {
                if (s->ops[i].kind != 'a' || s->ops[i].elem != e) {
                    continue;
                }
                int removed = 0;
                for (int j = 0; j < s->n_ops; j++) {
                    if (s->ops[j].kind == 'r' && s->ops[j].elem == e && (s->ops[j].past >> i & 1)) {
                        removed = 1;
                    }
                }
                want = !removed;
            }
            char name[8];
            snprintf(name, sizeof(name), "e%d", e);
            CHECK(edge_crdt_contains(c, name, strlen(name)) == want);
        }
    }
}

static void run_history(int type, int use_deltas)
{
    struct sim s;
    memset(&s, 0, sizeof(s));
    s.type = type;
    s.use_deltas = use_deltas;
    s.n_rep = 3 + (int)rnd_below(3);
    for (int i = 0; i < s.n_rep; i++) {
        assert_int_equal(edge_crdt_create(type, &s.rep[i]), EDGE_OK);
    }
    int n_ops = 1 + (int)rnd_below(MAX_OPS);
    for (int steps = 0; s.n_ops < n_ops && steps < 10 * MAX_OPS; steps++) {
        if (rnd_below(3) == 0) {
            gossip(&s);
        } else {
            local_op(&s);
        }
    }
    /* Final anti-entropy. Deltas: every delta to every replica in a shuffled order with
     * duplicates. States: two rounds of all-to-all in random order. */
    if (use_deltas) {
        for (int to = 0; to < s.n_rep; to++) {
            int order[POOL_MAX];
            for (int k = 0; k < s.n_pool; k++) {
                order[k] = k;
            }
            for (int k = s.n_pool - 1; k > 0; k--) {
                int j = (int)rnd_below((uint64_t)k + 1), t = order[k];
                order[k] = order[j];
                order[j] = t;
            }
            for (int k = 0; k < s.n_pool; k++) {
                deliver(&s, to, order[k]);
                if (rnd_below(4) == 0) {
                    deliver(&s, to, order[rnd_below((uint64_t)k + 1)]);
                }
            }
        }
    } else {
        for (int round = 0; round < 2; round++) {
            for (int k = 0; k < s.n_rep * s.n_rep; k++) {
                int a = (int)rnd_below((uint64_t)s.n_rep), b = k % s.n_rep;
                CHECK(edge_crdt_merge(s.rep[a], s.rep[b], NULL) == EDGE_OK);
                s.seen[a] |= s.seen[b];
            }
            for (int a = 0; a < s.n_rep; a++) {
                for (int b = 0; b < s.n_rep; b++) {
                    CHECK(edge_crdt_merge(s.rep[a], s.rep[b], NULL) == EDGE_OK);
                }
            }
        }
    }
    for (int i = 1; i < s.n_rep; i++) {
        CHECK(same_bytes(s.rep[0], s.rep[i]));
    }
    check_spec(&s, s.rep[0]);
    roundtrip(s.rep[0]);
    for (int i = 0; i < s.n_rep; i++) {
        edge_crdt_destroy(s.rep[i]);
    }
    for (int k = 0; k < s.n_pool; k++) {
        roundtrip(s.pool[k]);
        edge_crdt_destroy(s.pool[k]);
    }
}

#define HISTORIES 1000

static void run_type(int type)
{
    for (g_history = 0; g_history < HISTORIES; g_history++) {
        run_history(type, g_history % 2);
    }
}

static void test_gcounter_converges(void **state)
{
    (void)state;
    run_type(EDGE_CRDT_GCOUNTER);
}

static void test_pncounter_converges(void **state)
{
    (void)state;
    run_type(EDGE_CRDT_PNCOUNTER);
}

static void test_orset_converges(void **state)
{
    (void)state;
    run_type(EDGE_CRDT_ORSET);
}

static void test_lww_converges(void **state)
{
    (void)state;
    run_type(EDGE_CRDT_LWW);
}

/* ---- join laws on random states ---- */

static struct edge_crdt *random_state(int type)
{
    struct sim s;
    memset(&s, 0, sizeof(s));
    s.type = type;
    s.n_rep = 3;
    for (int i = 0; i < s.n_rep; i++) {
        assert_int_equal(edge_crdt_create(type, &s.rep[i]), EDGE_OK);
    }
    int n = (int)rnd_below(20);
    for (int k = 0; k < n; k++) {
        if (rnd_below(3) == 0) {
            gossip(&s);
        } else {
            local_op(&s);
        }
    }
    struct edge_crdt *pick = s.rep[rnd_below(3)];
    for (int i = 0; i < s.n_rep; i++) {
        if (s.rep[i] != pick) {
            edge_crdt_destroy(s.rep[i]);
        }
    }
    return pick;
}

static struct edge_crdt *join(const struct edge_crdt *a, const struct edge_crdt *b)
{
    struct edge_crdt *c = NULL;
    assert_int_equal(edge_crdt_clone(a, &c), EDGE_OK);
    CHECK(edge_crdt_merge(c, b, NULL) == EDGE_OK);
    return c;
}

static void test_join_laws(void **state)
{
    (void)state;
    for (g_history = 0; g_history < 2000; g_history++) {
        int type = 1 + g_history % 4;
        struct edge_crdt *a = random_state(type), *b = random_state(type), *c = random_state(type);
        struct edge_crdt *ab = join(a, b), *ba = join(b, a);
        CHECK(same_bytes(ab, ba));
        struct edge_crdt *ab_c = join(ab, c), *bc = join(b, c), *a_bc = join(a, bc);
        CHECK(same_bytes(ab_c, a_bc));
        struct edge_crdt *aa = join(a, a);
        CHECK(same_bytes(aa, a));
        struct edge_crdt *ab_b = join(ab, b); /* absorbing what is already there */
        CHECK(same_bytes(ab_b, ab));
        struct edge_crdt *all[] = {a, b, c, ab, ba, ab_c, bc, a_bc, aa, ab_b};
        for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++) {
            edge_crdt_destroy(all[i]);
        }
    }
}

int main(void)
{
    const char *env = getenv("EDGE_SEED");
    g_seed = env != NULL ? strtoull(env, NULL, 10) : 20240601u;
    g_rng = g_seed ? g_seed : 1;
    print_message("test_crdt_props: EDGE_SEED=%" PRIu64 "\n", g_seed);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gcounter_converges), cmocka_unit_test(test_pncounter_converges),
        cmocka_unit_test(test_orset_converges),    cmocka_unit_test(test_lww_converges),
        cmocka_unit_test(test_join_laws),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
