/* SPDX-License-Identifier: MIT */
/* Hrana 3 cursors over WebSocket: open_cursor runs its batch as a unit of work (see
 * cursor.c) into the cursor's buffer; fetch_cursor hands the entries out in slices;
 * close_cursor, close_stream and the end of the session free them. */
#include "api/node_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

#define WS_MAX_CURSORS 128
/* A fetch_cursor answer carries at most this many entries, and stops adding entries once
 * it holds this many bytes (a single larger entry still goes out whole). */
#define FETCH_MAX_ENTRIES 4096
#define FETCH_MAX_BYTES ((size_t)1 << 20)

static struct ws_cursor *find(struct ws_session *s, int32_t id, size_t *idx)
{
    for (size_t i = 0; i < s->n_cursors; i++) {
        if (s->cursors[i]->id == id) {
            if (idx) *idx = i;
            return s->cursors[i];
        }
    }
    return NULL;
}

static void cursor_free(struct ws_cursor *c)
{
    hrana_cursor_json_free(&c->entries);
    edge_buf_free(&c->buf);
    edge_free(c);
}

static void send_error(struct ws_session *s, int64_t request_id, const char *msg, const char *code)
{
    struct edge_buf b;
    edge_buf_init(&b, 1 << 16);
    hrana_write_response_error(&b, request_id, msg, code);
    edge_http_ws_send(s->conn, 1, b.data, b.len);
    edge_buf_free(&b);
}

struct ws_cursor *edge__api_ws_cursor_open(struct ws_session *s, json_t *req, int64_t request_id)
{
    int32_t id = (int32_t)json_integer_value(json_object_get(req, "cursor_id"));
    if (find(s, id, NULL) != NULL) {
        send_error(s, request_id, "a cursor with this id is already open", "CURSOR_EXISTS");
        return NULL;
    }
    if (s->n_cursors >= WS_MAX_CURSORS) {
        send_error(s, request_id, "too many open cursors", "CURSOR_TOO_MANY");
        return NULL;
    }
    struct ws_cursor **p = edge_realloc(s->cursors, (s->n_cursors + 1) * sizeof(*p));
    struct ws_cursor *c = p ? edge_calloc(1, sizeof(*c)) : NULL;
    if (p != NULL) s->cursors = p;
    if (c == NULL) {
        send_error(s, request_id, "out of memory", "INTERNAL");
        return NULL;
    }
    c->id = id;
    c->stream_id = (int32_t)json_integer_value(json_object_get(req, "stream_id"));
    /* The same cap as a batch's response (unit.c). */
    edge_buf_init(&c->buf, (size_t)1 << 30);
    hrana_cursor_json_init(&c->entries, &c->buf);
    s->cursors[s->n_cursors++] = c;
    return c;
}

void edge__api_ws_cursor_failed(struct ws_cursor *c, const char *message, const char *code)
{
    c->failed = true;
    snprintf(c->err_msg, sizeof(c->err_msg), "%s", message);
    c->err_code = code;
    hrana_cursor_json_free(&c->entries);
    edge_buf_free(&c->buf);
}

void edge__api_ws_cursor_fetch(struct ws_session *s, json_t *req, int64_t request_id)
{
    int32_t id = (int32_t)json_integer_value(json_object_get(req, "cursor_id"));
    size_t max = (size_t)json_integer_value(json_object_get(req, "max_count"));
    struct ws_cursor *c = find(s, id, NULL);
    if (c == NULL) {
        send_error(s, request_id, "no cursor with this id is open", "CURSOR_NOT_FOUND");
        return;
    }
    if (c->failed) {
        send_error(s, request_id, c->err_msg, c->err_code);
        return;
    }
    if (max > FETCH_MAX_ENTRIES) max = FETCH_MAX_ENTRIES;
    struct edge_buf b;
    edge_buf_init(&b, (size_t)1 << 30);
    int rv = edge_buf_printf(&b,
                             "{\"type\":\"response_ok\",\"request_id\":%lld,"
                             "\"response\":{\"type\":\"fetch_cursor\",\"entries\":[",
                             (long long)request_id);
    size_t k = 0, bytes = 0;
    while (rv == EDGE_OK && k < max && c->pos < c->entries.n && (k == 0 || bytes < FETCH_MAX_BYTES)) {
        size_t len = 0;
        const char *e = hrana_cursor_json_entry(&c->entries, c->pos, &len);
        if (k > 0) rv = edge_buf_putc(&b, ',');
        if (rv == EDGE_OK) rv = edge_buf_append(&b, e, len);
        if (rv != EDGE_OK) break;
        bytes += len;
        c->pos++;
        k++;
    }
    bool done = c->pos >= c->entries.n;
    if (rv == EDGE_OK) rv = edge_buf_printf(&b, "],\"done\":%s}}", done ? "true" : "false");
    if (rv != EDGE_OK) {
        edge_buf_free(&b);
        send_error(s, request_id, "out of memory", "INTERNAL");
        return;
    }
    edge_http_ws_send(s->conn, 1, b.data, b.len);
    edge_buf_free(&b);
    if (done && c->buf.data != NULL) {
        /* Everything went out: later fetches answer no entries, so free the memory now. */
        hrana_cursor_json_free(&c->entries);
        edge_buf_free(&c->buf);
        c->pos = 0;
    }
}

void edge__api_ws_cursor_close(struct ws_session *s, int32_t cursor_id)
{
    size_t i;
    struct ws_cursor *c = find(s, cursor_id, &i);
    if (c == NULL) return;
    s->cursors[i] = s->cursors[--s->n_cursors];
    cursor_free(c);
}

void edge__api_ws_cursors_of_stream(struct ws_session *s, int32_t stream_id)
{
    for (size_t i = 0; i < s->n_cursors;) {
        if (s->cursors[i]->stream_id == stream_id) {
            cursor_free(s->cursors[i]);
            s->cursors[i] = s->cursors[--s->n_cursors];
        } else {
            i++;
        }
    }
}

void edge__api_ws_cursors_free(struct ws_session *s)
{
    for (size_t i = 0; i < s->n_cursors; i++) cursor_free(s->cursors[i]);
    edge_free(s->cursors);
    s->cursors = NULL;
    s->n_cursors = 0;
}
