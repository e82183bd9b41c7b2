/* SPDX-License-Identifier: MIT */
/* The asynchronous HTTP client (src/net/httpc_async.c) against a scripted TCP server on
 * the same uv loop: keep-alive reuse, the bound on connections (the rest queue), chunked
 * bodies, the body cap, malformed answers, a server that closes mid-request, deadlines,
 * a refused connect, and closing the pool with requests pending. Every wait is a bounded
 * number of loop turns (timers keep each turn short), never an assertion on time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include <cmocka.h>

#include "core/alloc.h"
#include "core/err.h"
#include "net/httpc_async.h"

#define TURNS 4000
#define MAX_SRV 16
#define MAX_REQ 16

struct srv_conn {
    uv_tcp_t tcp;
    struct fixture *fx;
    int slot;     /* index in fx->conns, -1 if untracked */
    int requests; /* request heads seen ("\r\n\r\n" counted) */
    char tail[4];
    bool open;
};

struct result {
    bool done;
    int calls;
    int rv;
    int status;
    char body[256];
    size_t body_len;
    char bookmark[160];
    char ctype[128];
};

struct fixture {
    uv_loop_t loop;
    uv_tcp_t listener;
    uv_timer_t tick; /* keeps every loop turn short */
    int port;
    const char *answer;  /* sent for every request; NULL: hold the request */
    bool close_after;    /* close the connection after answering (or at once when answer is NULL) */
    int accepted;
    struct srv_conn *conns[MAX_SRV];
    struct result res[MAX_REQ];
    struct edge_httpca *p;
};

static void srv_closed(uv_handle_t *h)
{
    struct srv_conn *sc = h->data;
    if (sc->slot >= 0) sc->fx->conns[sc->slot] = NULL; /* the test may no longer use it */
    edge_free(sc);
}

static void srv_close(struct srv_conn *sc)
{
    if (sc == NULL || !sc->open) return;
    sc->open = false;
    uv_close((uv_handle_t *)&sc->tcp, srv_closed);
}

static void srv_write_done(uv_write_t *w, int status)
{
    (void)status;
    edge_free(w);
}

static void srv_send(struct srv_conn *sc, const char *text)
{
    if (sc == NULL || !sc->open) return; /* the client closed it already */
    size_t n = strlen(text);
    uv_write_t *w = edge_malloc(sizeof(*w) + n);
    memcpy((char *)(w + 1), text, n);
    uv_buf_t b = uv_buf_init((char *)(w + 1), (unsigned)n);
    uv_write(w, (uv_stream_t *)&sc->tcp, &b, 1, srv_write_done);
}

static void srv_alloc(uv_handle_t *h, size_t s, uv_buf_t *b)
{
    (void)h;
    b->base = edge_malloc(s);
    b->len = s;
}

static void srv_read(uv_stream_t *s, ssize_t n, const uv_buf_t *b)
{
    struct srv_conn *sc = s->data;
    if (n < 0) {
        srv_close(sc);
    } else {
        /* Count request heads; the client's bodies here hold no blank line. */
        for (ssize_t i = 0; i < n; i++) {
            memmove(sc->tail, sc->tail + 1, 3);
            sc->tail[3] = b->base[i];
            if (memcmp(sc->tail, "\r\n\r\n", 4) == 0) {
                sc->requests++;
                struct fixture *fx = sc->fx;
                if (fx->answer != NULL) srv_send(sc, fx->answer);
                if (fx->close_after) srv_close(sc);
                if (!sc->open) break;
            }
        }
    }
    edge_free(b->base);
}

static void srv_accept(uv_stream_t *l, int status)
{
    struct fixture *fx = l->data;
    if (status < 0) return;
    struct srv_conn *sc = edge_calloc(1, sizeof(*sc));
    sc->fx = fx;
    sc->slot = -1;
    uv_tcp_init(&fx->loop, &sc->tcp);
    sc->tcp.data = sc;
    if (uv_accept(l, (uv_stream_t *)&sc->tcp) != 0) {
        uv_close((uv_handle_t *)&sc->tcp, srv_closed);
        return;
    }
    sc->open = true;
    if (fx->accepted < MAX_SRV) {
        sc->slot = fx->accepted;
        fx->conns[fx->accepted] = sc;
    }
    fx->accepted++;
    uv_read_start((uv_stream_t *)&sc->tcp, srv_alloc, srv_read);
}

static void on_tick(uv_timer_t *t) { (void)t; }

static int setup(void **state)
{
    struct fixture *fx = edge_calloc(1, sizeof(*fx));
    uv_loop_init(&fx->loop);
    uv_tcp_init(&fx->loop, &fx->listener);
    fx->listener.data = fx;
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    assert_int_equal(uv_tcp_bind(&fx->listener, (const struct sockaddr *)&a, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&fx->listener, 64, srv_accept), 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&fx->listener, (struct sockaddr *)&a, &len);
    fx->port = ntohs(a.sin_port);
    uv_timer_init(&fx->loop, &fx->tick);
    uv_timer_start(&fx->tick, on_tick, 1, 1);
    char port[8];
    snprintf(port, sizeof(port), "%d", fx->port);
    assert_int_equal(edge_httpca_new(&fx->loop, "127.0.0.1", port, 2, 60000, &fx->p), EDGE_OK);
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *fx = *state;
    edge_httpca_close(fx->p);
    for (int i = 0; i < MAX_SRV && i < fx->accepted; i++) srv_close(fx->conns[i]);
    uv_close((uv_handle_t *)&fx->listener, NULL);
    uv_close((uv_handle_t *)&fx->tick, NULL);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    edge_free(fx);
    return 0;
}

static void on_resp(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct result *r = ud;
    r->calls++;
    r->done = true;
    r->rv = rv;
    if (rv == EDGE_OK) {
        r->status = resp->status;
        r->body_len = resp->body.len;
        snprintf(r->body, sizeof(r->body), "%s", resp->body.data ? resp->body.data : "");
        snprintf(r->bookmark, sizeof(r->bookmark), "%s", resp->bookmark);
        snprintf(r->ctype, sizeof(r->ctype), "%s", resp->content_type);
    }
}

static void send_req(struct fixture *fx, int i, uint64_t timeout_ms, size_t max_body)
{
    assert_int_equal(edge_httpca_request(fx->p, "POST", "/v2/pipeline", "X-Test: 1\r\n", "{}", 2, timeout_ms, max_body,
                                         on_resp, &fx->res[i]),
                     EDGE_OK);
    assert_false(fx->res[i].done); /* never answered from inside the call */
}

static bool run_until(struct fixture *fx, int n)
{
    for (int t = 0; t < TURNS; t++) {
        int done = 0;
        for (int i = 0; i < n; i++) done += fx->res[i].done;
        if (done == n) return true;
        uv_run(&fx->loop, UV_RUN_ONCE);
    }
    return false;
}

static bool run_until_one(struct fixture *fx, int i)
{
    for (int t = 0; t < TURNS && !fx->res[i].done; t++) uv_run(&fx->loop, UV_RUN_ONCE);
    return fx->res[i].done;
}

static void turns(struct fixture *fx, int n)
{
    for (int t = 0; t < n; t++) uv_run(&fx->loop, UV_RUN_ONCE);
}

#define OK_ANSWER                                                                                                  \
    "HTTP/1.1 200 OK\r\nContent-Type: Application/JSON; charset=utf-8\r\nX-Edge-Bookmark: a:7\r\n"                \
    "Content-Length: 11\r\n\r\n{\"ok\":true}"

static void test_keepalive_reuses_one_connection(void **state)
{
    struct fixture *fx = *state;
    fx->answer = OK_ANSWER;
    for (int i = 0; i < 5; i++) {
        send_req(fx, i, 5000, 1 << 20);
        assert_true(run_until(fx, i + 1));
        assert_int_equal(fx->res[i].rv, EDGE_OK);
        assert_int_equal(fx->res[i].status, 200);
        assert_string_equal(fx->res[i].body, "{\"ok\":true}");
        assert_int_equal(fx->res[i].body_len, 11);
        assert_string_equal(fx->res[i].bookmark, "a:7");
        assert_string_equal(fx->res[i].ctype, "application/json");
    }
    assert_int_equal(fx->accepted, 1);
    assert_non_null(fx->conns[0]);
    assert_int_equal(fx->conns[0]->requests, 5);
}

static void test_bounded_connections_queue_the_rest(void **state)
{
    struct fixture *fx = *state;
    fx->answer = NULL; /* hold every request */
    for (int i = 0; i < 10; i++) send_req(fx, i, 10000, 1 << 20);
    turns(fx, 50);
    assert_int_equal(fx->accepted, 2); /* the pool's bound */
    int conns = 0, pending = 0;
    edge_httpca_stats(fx->p, &conns, &pending);
    assert_int_equal(conns, 2);
    assert_int_equal(pending, 10);
    for (int i = 0; i < 10; i++) assert_false(fx->res[i].done);
    /* Answer what each server connection holds; queued requests follow on the same two. */
    fx->answer = OK_ANSWER;
    srv_send(fx->conns[0], OK_ANSWER);
    srv_send(fx->conns[1], OK_ANSWER);
    assert_true(run_until(fx, 10));
    for (int i = 0; i < 10; i++) {
        assert_int_equal(fx->res[i].rv, EDGE_OK);
        assert_int_equal(fx->res[i].calls, 1);
    }
    assert_int_equal(fx->accepted, 2);
    assert_non_null(fx->conns[0]);
    assert_non_null(fx->conns[1]);
    assert_int_equal(fx->conns[0]->requests + fx->conns[1]->requests, 10);
}

static void test_chunked_body(void **state)
{
    struct fixture *fx = *state;
    fx->answer = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
    send_req(fx, 0, 5000, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_OK);
    assert_string_equal(fx->res[0].body, "hello world");
    /* Still reusable after a chunked body. */
    send_req(fx, 1, 5000, 1 << 20);
    assert_true(run_until(fx, 2));
    assert_int_equal(fx->res[1].rv, EDGE_OK);
    assert_int_equal(fx->accepted, 1);
}

static void test_body_over_cap(void **state)
{
    struct fixture *fx = *state;
    fx->answer = OK_ANSWER;
    send_req(fx, 0, 5000, 4);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_ETOOBIG);
}

static void test_malformed_answer(void **state)
{
    struct fixture *fx = *state;
    fx->answer = "this is not http\r\n\r\n";
    send_req(fx, 0, 5000, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_EPROTO);
}

static void test_connection_close_answer_then_new_connection(void **state)
{
    struct fixture *fx = *state;
    fx->answer = "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nhi";
    send_req(fx, 0, 5000, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_OK);
    assert_string_equal(fx->res[0].body, "hi");
    send_req(fx, 1, 5000, 1 << 20);
    assert_true(run_until(fx, 2));
    assert_int_equal(fx->res[1].rv, EDGE_OK);
    assert_int_equal(fx->accepted, 2);
}

static void test_body_until_eof(void **state)
{
    struct fixture *fx = *state;
    fx->answer = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nto the end";
    fx->close_after = true;
    send_req(fx, 0, 5000, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_OK);
    assert_string_equal(fx->res[0].body, "to the end");
}

static void test_server_closes_mid_request(void **state)
{
    struct fixture *fx = *state;
    fx->answer = NULL;
    fx->close_after = true;
    send_req(fx, 0, 5000, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_EIO);
    assert_int_equal(fx->res[0].calls, 1);
}

static void test_deadline_then_fresh_connection(void **state)
{
    struct fixture *fx = *state;
    fx->answer = NULL;
    send_req(fx, 0, 30, 1 << 20);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_ETIMEDOUT);
    /* A late answer on the old connection must not be taken for the next request. */
    srv_send(fx->conns[0], OK_ANSWER);
    fx->answer = "HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    send_req(fx, 1, 5000, 1 << 20);
    assert_true(run_until(fx, 2));
    assert_int_equal(fx->res[1].rv, EDGE_OK);
    assert_int_equal(fx->res[1].status, 201);
    assert_int_equal(fx->accepted, 2);
    assert_int_equal(fx->res[0].calls, 1);
}

static void test_queued_request_deadline(void **state)
{
    struct fixture *fx = *state;
    fx->answer = NULL;
    send_req(fx, 0, 10000, 1 << 20);
    send_req(fx, 1, 10000, 1 << 20);
    send_req(fx, 2, 30, 1 << 20); /* waits behind two held requests */
    assert_true(run_until_one(fx, 2));
    assert_int_equal(fx->res[2].rv, EDGE_ETIMEDOUT);
    assert_false(fx->res[0].done);
    assert_false(fx->res[1].done);
}

static void test_refused_connect(void **state)
{
    struct fixture *fx = *state;
    /* A port nobody listens on: bind one, note it, close it. */
    uv_tcp_t t;
    uv_tcp_init(&fx->loop, &t);
    struct sockaddr_in a;
    uv_ip4_addr("127.0.0.1", 0, &a);
    uv_tcp_bind(&t, (const struct sockaddr *)&a, 0);
    int len = sizeof(a);
    uv_tcp_getsockname(&t, (struct sockaddr *)&a, &len);
    char port[8];
    snprintf(port, sizeof(port), "%d", ntohs(a.sin_port));
    uv_close((uv_handle_t *)&t, NULL);
    turns(fx, 2);
    struct edge_httpca *p = NULL;
    assert_int_equal(edge_httpca_new(&fx->loop, "127.0.0.1", port, 2, 1000, &p), EDGE_OK);
    assert_int_equal(edge_httpca_request(p, "POST", "/", NULL, NULL, 0, 5000, 1024, on_resp, &fx->res[0]), EDGE_OK);
    assert_true(run_until(fx, 1));
    assert_int_equal(fx->res[0].rv, EDGE_ECONNREFUSED); /* nothing was sent: a caller may try elsewhere */
    edge_httpca_close(p);
}

static void test_bad_host_refused(void **state)
{
    struct fixture *fx = *state;
    struct edge_httpca *p = NULL;
    assert_int_equal(edge_httpca_new(&fx->loop, "primary.example", "80", 2, 1000, &p), EDGE_EINVAL);
    assert_int_equal(edge_httpca_new(&fx->loop, "127.0.0.1", "0", 2, 1000, &p), EDGE_EINVAL);
    assert_int_equal(edge_httpca_new(&fx->loop, "127.0.0.1", "80x", 2, 1000, &p), EDGE_EINVAL);
}

static void test_close_fails_pending_at_once(void **state)
{
    struct fixture *fx = *state;
    fx->answer = NULL;
    for (int i = 0; i < 5; i++) send_req(fx, i, 10000, 1 << 20);
    turns(fx, 20);
    edge_httpca_close(fx->p);
    for (int i = 0; i < 5; i++) {
        assert_true(fx->res[i].done);
        assert_int_equal(fx->res[i].rv, EDGE_ECLOSED);
        assert_int_equal(fx->res[i].calls, 1);
    }
    assert_int_equal(edge_httpca_request(fx->p, "POST", "/", NULL, NULL, 0, 10, 10, on_resp, &fx->res[5]), EDGE_ECLOSED);
    turns(fx, 20); /* the pool frees itself once its handles are closed */
    fx->p = NULL;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_keepalive_reuses_one_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bounded_connections_queue_the_rest, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_body, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_over_cap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_malformed_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_answer_then_new_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_until_eof, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_closes_mid_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_then_fresh_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_queued_request_deadline, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_connect, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_host_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_close_fails_pending_at_once, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
