/* SPDX-License-Identifier: MIT */
/* Forwarding a strong write or schema change from a replica to the primary.
 *
 * DESIGN: the request goes out on the loop that received it, through that loop's pool
 * of keep-alive connections to the primary (net/httpc_async.h), and its answer comes
 * back as a loop callback. No thread waits while the primary gathers its majority (up
 * to the strong timeout), so forwarded writes cannot take libuv's thread pool from
 * interactive transactions however many are in flight. Under WAN emulation each hop
 * crosses the emulated WAN, half the round trip each way, as the peer links do: a
 * timer before the request and one before the answer. Loop thread throughout. */
#include "api/node_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"
#include "net/httpc.h"
#include "net/httpc_async.h"

struct forward {
    uv_timer_t delay; /* WAN emulation */
    struct loop *l;
    struct edge_http_conn *conn;
    char *body;
    size_t body_len;
    char headers[4096];
    int mode;
    uint64_t start_ns;
    uint64_t half_rtt_ms;
    int region;       /* index in the configuration's regions of the target */
    bool read;        /* a read sent to another region (router), not a write to the primary */
    bool sent;
    int rv;
    struct edge_httpc_resp resp;
};

static void forward_closed(uv_handle_t *h)
{
    struct forward *f = h->data;
    atomic_fetch_sub(&f->l->node->m.forwarding, 1);
    edge_httpc_resp_free(&f->resp);
    edge_http_conn_unref(f->conn);
    edge_free(f->body);
    edge_free(f);
}

static void forward_answer(struct forward *f)
{
    struct edge_node *n = f->l->node;
    if (!edge_http_conn_is_closed(f->conn)) {
        if (f->rv != EDGE_OK) {
            char msg[256];
            snprintf(msg, sizeof(msg), "the %s region %s could not be reached: %s", f->read ? "chosen" : "primary",
                     n->cfg.conf->regions[f->region].id, edge_strerror(f->rv));
            edge__api_observe(n, EP_PIPELINE, f->start_ns, true);
            edge_http_respond_error(f->conn, 503, f->read ? "REGION_UNREACHABLE" : "PRIMARY_UNREACHABLE", msg);
        } else if (f->resp.status == 200) {
            /* The primary's bookmark orders reads everywhere; a read's is the vector of the
             * snapshot it ran on there, passed on whole (unless it may have been cut short). */
            char origin[EDGE_VCLOCK_REGION_MAX + 1] = "";
            uint64_t seq = 0;
            const char *body = f->resp.body.data ? f->resp.body.data : "";
            if (f->read && strlen(f->resp.bookmark) < sizeof(f->resp.bookmark) - 1) {
                edge__api_pipeline_answer_bm(n, f->conn, f->mode, f->resp.bookmark, body, f->resp.body.len,
                                             f->start_ns);
            } else {
                if (!edge__api_bookmark_parse(f->resp.bookmark, origin, &seq)) seq = 0; /* none: answer without one */
                edge__api_pipeline_answer(n, f->conn, f->mode, seq ? origin : NULL, seq, body, f->resp.body.len,
                                          f->start_ns);
            }
        } else {
            edge__api_observe(n, f->mode == PIPE_REPLICATE ? EP_REPLICATE : EP_PIPELINE, f->start_ns, true);
            edge_http_respond(f->conn, f->resp.status, "application/json", NULL,
                              f->resp.body.data ? f->resp.body.data : "", f->resp.body.len);
        }
    }
    uv_close((uv_handle_t *)&f->delay, forward_closed);
}

static void on_delay(uv_timer_t *t);

static void forward_done(void *ud, int rv, struct edge_httpc_resp *resp)
{
    struct forward *f = ud;
    f->rv = rv;
    if (rv == EDGE_OK) {
        f->resp = *resp; /* take the body */
        memset(&resp->body, 0, sizeof(resp->body));
    }
    if (f->half_rtt_ms > 0 && !f->l->stopping) {
        uv_timer_start(&f->delay, on_delay, f->half_rtt_ms, 0);
    } else {
        forward_answer(f);
    }
}

/* This loop's connections to a region (by its index in the configuration), opened on first use. */
static struct edge_httpca *region_pool(struct loop *l, int region)
{
    struct edge_node *n = l->node;
    if (region < 0 || region >= EDGE_API_MAX_REGIONS) return NULL;
    if (l->fwd[region] != NULL || l->stopping) return l->fwd[region];
    const char *url = n->cfg.conf->regions[region].url;
    if (url == NULL) return NULL;
    /* Idle connections close well before the other region's own idle timeout would. */
    uint64_t idle = n->cfg.idle_conn_timeout_ms / 2;
    int rv = edge__api_peer_pool(l, url, EDGE_API_FORWARD_CONNS, idle ? idle : 1, &l->fwd[region]);
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_WARN, EDGE_MOD_API, "forward: region url %s: %s (a numeric loopback address is needed)",
                 url, edge_strerror(rv));
        l->fwd[region] = NULL;
    }
    return l->fwd[region];
}

static void forward_send(struct forward *f)
{
    struct edge_node *n = f->l->node;
    struct edge_httpca *p = region_pool(f->l, f->region);
    f->sent = true;
    /* /v3 accepts every v2 pipeline and also what a v3 client may send (is_autocommit,
     * get_autocommit, and every protobuf request, which travels as its JSON form). */
    int rv = p == NULL ? EDGE_ECLOSED
                       : edge_httpca_request(p, "POST", f->mode == PIPE_EVENTS ? "/v1/events" : "/v3/pipeline",
                                             f->headers, f->body, f->body_len,
                                             n->cfg.strong_timeout_ms + 2000, (size_t)1 << 30, forward_done, f);
    if (rv != EDGE_OK) {
        f->rv = rv == EDGE_ECLOSED ? EDGE_EIO : rv;
        forward_answer(f);
    }
}

static void on_delay(uv_timer_t *t)
{
    struct forward *f = t->data;
    if (!f->sent) {
        forward_send(f);
    } else {
        forward_answer(f);
    }
}

static int region_index(const struct edge_conf *conf, const char *id)
{
    for (size_t i = 0; conf != NULL && id != NULL && i < conf->n_regions && i < EDGE_API_MAX_REGIONS; i++) {
        if (strcmp(conf->regions[i].id, id) == 0) return (int)i;
    }
    return -1;
}

struct edge_httpca *edge__api_region_pool(struct loop *l, const char *region)
{
    int idx = region_index(l->node->cfg.conf, region);
    return idx < 0 ? NULL : region_pool(l, idx);
}

void edge__api_forward(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body, int mode,
                       bool strong)
{
    edge__api_forward_to(l, c, req, body, mode, strong, l->node->repl.primary, false);
}

void edge__api_forward_to(struct loop *l, struct edge_http_conn *c, struct edge_http_req *req, json_t *body,
                          int mode, bool strong, const char *region, bool read)
{
    struct edge_node *n = l->node;
    int idx = region_index(n->cfg.conf, region);
    const char *code = read ? "REGION_UNREACHABLE" : "PRIMARY_UNREACHABLE";
    if (idx < 0 || n->cfg.conf->regions[idx].url == NULL) {
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, code, "cannot forward to that region (no url)");
        return;
    }
    struct forward *f = edge_calloc(1, sizeof(*f));
    char *text = json_dumps(body, JSON_COMPACT);
    if (f == NULL || text == NULL) {
        edge_free(f);
        free(text);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, code, "cannot forward to that region");
        return;
    }
    f->region = idx;
    f->read = read;
    f->body = edge_strdup(text);
    free(text);
    if (f->body == NULL) {
        edge_free(f);
        edge__api_respond_error(n, c, req, EP_PIPELINE, 503, code, "cannot forward to that region");
        return;
    }
    f->body_len = strlen(f->body);
    f->l = l;
    f->conn = c;
    edge_http_conn_ref(c);
    f->mode = mode;
    f->start_ns = req->start_ns;
    double rtt = n->cfg.wan ? edge_regions_rtt_ms(n->cfg.wan, n->region, region) : 0;
    f->half_rtt_ms = rtt > 0 ? (uint64_t)(rtt / 2.0 + 0.5) : 0;
    const char *auth = edge_http_header(req, "authorization");
    /* A read sent on keeps its bookmark: the region chosen serves it only once it has the write. */
    const char *bm = read ? edge_http_header(req, "x-edge-bookmark") : NULL;
    if (bm != NULL && strlen(bm) > 100) bm = NULL;
    snprintf(f->headers, sizeof(f->headers), "%sX-Edge-Forwarded: %s\r\n%s%s%s%s%s%s",
             strong ? "X-Edge-Consistency: strong\r\n" : "", n->region, auth ? "Authorization: " : "", auth ? auth : "",
             auth ? "\r\n" : "", bm ? "X-Edge-Bookmark: " : "", bm ? bm : "", bm ? "\r\n" : "");
    uv_timer_init(&l->loop, &f->delay);
    f->delay.data = f;
    atomic_fetch_add(&n->m.forwarding, 1);
    if (f->half_rtt_ms > 0) {
        uv_timer_start(&f->delay, on_delay, f->half_rtt_ms, 0);
    } else {
        forward_send(f);
    }
}
