/* SPDX-License-Identifier: MIT */
/* Hrana over HTTP: the transaction connection pool, streams and batons. */
#include "api/node_int.h"

#include <sodium.h>
#include <string.h>

#include "core/alloc.h"
#include "core/log.h"

void edge__api_txconn_close(struct txconn *t)
{
    if (t == NULL) return;
    edge_capture_destroy(t->cap);
    edge_store_close(t->conn);
    edge_free(t);
}

int edge__api_pool_acquire(struct edge_node *n, struct txconn **out)
{
    pthread_mutex_lock(&n->pool_mu);
    if (n->n_pool > 0) {
        *out = n->pool[--n->n_pool];
        pthread_mutex_unlock(&n->pool_mu);
        return EDGE_OK;
    }
    if (n->n_txn >= MAX_TXN_CONNS) {
        pthread_mutex_unlock(&n->pool_mu);
        return EDGE_EBUSY;
    }
    n->n_txn++;
    pthread_mutex_unlock(&n->pool_mu);
    char err[EDGE_ERRMSG_SIZE];
    struct txconn *t = edge_calloc(1, sizeof(*t));
    int rv = t ? edge_store_open(n->db_path, EDGE_STORE_WRITE, n->cfg.synchronous_full, 5000, &t->conn, err, sizeof(err))
               : EDGE_ENOMEM;
    if (rv == EDGE_OK && n->repl.cluster) {
        rv = edge_capture_create(edge_store_db(t->conn), &t->cap);
        if (rv == EDGE_OK) rv = edge_capture_ids_enable(t->cap, n->repl.id_index, EDGE_REPL_ID_STRIDE);
        if (rv == EDGE_OK) edge_capture_set_crdt(t->cap, n->repl.local.crdt);
    }
    if (rv != EDGE_OK) {
        EDGE_LOG(EDGE_LOG_ERROR, EDGE_MOD_API, "pool: %s", rv == EDGE_ENOMEM ? "out of memory" : err);
        edge__api_txconn_close(t);
        pthread_mutex_lock(&n->pool_mu);
        n->n_txn--;
        pthread_mutex_unlock(&n->pool_mu);
        return rv;
    }
    *out = t;
    return EDGE_OK;
}

/* Give a connection back; an open transaction is rolled back first. Any thread that
 * currently owns the connection. */
void edge__api_pool_release(struct edge_node *n, struct txconn *t, bool readonly_txn)
{
    if (t == NULL) {
        return;
    }
    sqlite3 *db = edge_store_db(t->conn);
    if (!sqlite3_get_autocommit(db)) {
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    if (readonly_txn) {
        sqlite3_exec(db, "PRAGMA query_only=0", NULL, NULL, NULL);
    }
    if (t->cap != NULL) {
        edge_capture_reset(t->cap);
    }
    edge_feed_unmark(&n->repl, &t->mark); /* a COMMIT that failed and was never settled */
    t->bm[0] = '\0';
    t->bm_over = false;
    pthread_mutex_lock(&n->pool_mu);
    if (n->n_pool < MAX_TXN_CONNS) {
        n->pool[n->n_pool++] = t;
        t = NULL;
    } else {
        n->n_txn--;
    }
    pthread_mutex_unlock(&n->pool_mu);
    edge__api_txconn_close(t);
}

void edge__api_stream_free(struct edge_node *n, struct stream *s)
{
    if (s == NULL) return;
    edge__api_pool_release(n, s->txn, s->readonly_txn);
    hrana_sqlmap_free(&s->sqls);
    edge_free(s);
}

static int baton_encode(struct edge_node *n, const struct stream *s, struct edge_buf *out)
{
    uint8_t raw[32];
    for (int i = 0; i < 8; i++) {
        raw[i] = (uint8_t)(s->id >> (8 * i));
        raw[8 + i] = (uint8_t)(s->seq >> (8 * i));
    }
    uint8_t mac[crypto_auth_hmacsha256_BYTES];
    crypto_auth_hmacsha256(mac, raw, 16, n->baton_key);
    memcpy(raw + 16, mac, 16);
    return edge_buf_base64url(out, raw, sizeof(raw));
}

static bool baton_decode(struct edge_node *n, const char *b, size_t len, uint64_t *id, uint64_t *seq)
{
    uint8_t *raw = NULL;
    size_t rlen = 0;
    if (len > 64 || edge_base64_decode(b, len, &raw, &rlen) != EDGE_OK) return false;
    bool ok = false;
    if (rlen == 32) {
        uint8_t mac[crypto_auth_hmacsha256_BYTES];
        crypto_auth_hmacsha256(mac, raw, 16, n->baton_key);
        if (sodium_memcmp(mac, raw + 16, 16) == 0) {
            *id = 0;
            *seq = 0;
            for (int i = 0; i < 8; i++) {
                *id |= (uint64_t)raw[i] << (8 * i);
                *seq |= (uint64_t)raw[8 + i] << (8 * i);
            }
            ok = true;
        }
    }
    edge_free(raw);
    return ok;
}

/* Find the stream for a baton and mark it busy. Returns NULL with an error code. */
struct stream *edge__api_stream_checkout(struct edge_node *n, const char *baton, size_t len, const char **code,
                                      const char **msg)
{
    uint64_t id, seq;
    if (!baton_decode(n, baton, len, &id, &seq)) {
        *code = "BATON_INVALID";
        *msg = "the baton is invalid";
        return NULL;
    }
    struct stream *found = NULL;
    pthread_mutex_lock(&n->streams_mu);
    for (size_t i = 0; i < n->n_streams; i++) {
        if (n->streams[i]->id == id) {
            found = n->streams[i];
            break;
        }
    }
    if (found == NULL) {
        *code = "BATON_INVALID";
        *msg = "the baton does not refer to a stream";
        for (size_t i = 0; i < n->n_expired; i++) {
            if (n->expired[i].id == id) {
                *code = "STREAM_EXPIRED";
                *msg = "The stream has expired due to inactivity";
            }
        }
    } else if (found->busy) {
        *code = "STREAM_BUSY";
        *msg = "the stream is already handling a request";
        found = NULL;
    } else if (found->seq != seq) {
        *code = "BATON_REUSED";
        *msg = "the baton has already been used";
        found = NULL;
    } else {
        found->busy = true;
    }
    pthread_mutex_unlock(&n->streams_mu);
    return found;
}

/* Return a stream after a request: register it (first use), bump its sequence, or
 * remove it when closed. Writes the next baton (or null) into out. */
int edge__api_stream_checkin(struct edge_node *n, struct stream *s, struct edge_buf *out)
{
    int rv = EDGE_OK;
    if (s->closed) {
        pthread_mutex_lock(&n->streams_mu);
        if (s->registered) {
            for (size_t i = 0; i < n->n_streams; i++) {
                if (n->streams[i] == s) {
                    n->streams[i] = n->streams[--n->n_streams];
                    break;
                }
            }
        }
        pthread_mutex_unlock(&n->streams_mu);
        edge__api_stream_free(n, s);
        return edge_buf_puts(out, "null");
    }
    pthread_mutex_lock(&n->streams_mu);
    if (!s->registered) {
        if (n->n_streams == n->cap_streams) {
            size_t cap = n->cap_streams ? n->cap_streams * 2 : 64;
            struct stream **p = edge_realloc(n->streams, cap * sizeof(*p));
            if (p == NULL) {
                pthread_mutex_unlock(&n->streams_mu);
                s->closed = true;
                edge__api_stream_free(n, s);
                return edge_buf_puts(out, "null");
            }
            n->streams = p;
            n->cap_streams = cap;
        }
        s->id = ++n->next_stream_id;
        n->streams[n->n_streams++] = s;
        s->registered = true;
    }
    s->seq++;
    s->busy = false;
    s->last_used_ms = mono_ms();
    pthread_mutex_unlock(&n->streams_mu);
    rv = edge_buf_putc(out, '"');
    if (rv == EDGE_OK) rv = baton_encode(n, s, out);
    if (rv == EDGE_OK) rv = edge_buf_putc(out, '"');
    return rv;
}

/* Give up a stream checked out for a request that will not run (closing it). */
void edge__api_stream_discard(struct edge_node *n, struct stream *s)
{
    struct edge_buf tmp;
    s->closed = true;
    edge_buf_init(&tmp, 256);
    edge__api_stream_checkin(n, s, &tmp);
    edge_buf_free(&tmp);
}

/* Loop 0, periodically: expire idle streams (rolling back) and forget old expiries. */
void edge__api_stream_sweep(uv_timer_t *t)
{
    struct loop *l = t->data;
    struct edge_node *n = l->node;
    uint64_t now = mono_ms();
    struct stream *victims[64];
    size_t nv = 0;
    pthread_mutex_lock(&n->streams_mu);
    for (size_t i = 0; i < n->n_streams && nv < 64;) {
        struct stream *s = n->streams[i];
        if (!s->busy && now - s->last_used_ms >= n->cfg.stream_timeout_ms) {
            n->streams[i] = n->streams[--n->n_streams];
            if (n->n_expired == n->cap_expired) {
                size_t cap = n->cap_expired ? n->cap_expired * 2 : 64;
                struct expired *p = edge_realloc(n->expired, cap * sizeof(*p));
                if (p != NULL) {
                    n->expired = p;
                    n->cap_expired = cap;
                }
            }
            if (n->n_expired < n->cap_expired) {
                n->expired[n->n_expired++] = (struct expired){s->id, now};
            }
            victims[nv++] = s;
        } else {
            i++;
        }
    }
    for (size_t i = 0; i < n->n_expired;) {
        if (now - n->expired[i].at_ms > EXPIRED_KEEP_MS) {
            n->expired[i] = n->expired[--n->n_expired];
        } else {
            i++;
        }
    }
    pthread_mutex_unlock(&n->streams_mu);
    for (size_t i = 0; i < nv; i++) {
        EDGE_LOG(EDGE_LOG_DEBUG, EDGE_MOD_API, "stream %llu expired%s", (unsigned long long)victims[i]->id,
                 victims[i]->txn ? ", rolling back" : "");
        edge__api_stream_free(n, victims[i]);
    }
}
