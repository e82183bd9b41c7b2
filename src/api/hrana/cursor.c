/* SPDX-License-Identifier: MIT */
/* Hrana 3 cursors, independent of their transport: a batch run as a sequence of cursor
 * entries, and the JSON encoding of those entries (see hrana.h).
 *
 * DESIGN
 * A cursor runs its whole batch in one unit of work, on the route the batch was
 * classified to (read loop, writer group commit, transaction connection), exactly as a
 * batch request runs; only the shape of the results differs. The entries are kept in
 * one buffer with the same cap as a batch's response, and the transports hand them out:
 * POST /v3/cursor as the lines of its body, WebSocket fetch_cursor in slices. Running
 * the batch to its end before the first entry leaves means a cursor never holds the
 * writer, a SQLite statement or a read snapshot open between client requests. */
#include "api/hrana/hrana_int.h"

#include <stdio.h>
#include <string.h>

#include "core/alloc.h"

/* ---------------------------------------------------------------------------------- */
/* Running a batch as entries                                                         */
/* ---------------------------------------------------------------------------------- */

/* One step's results, forwarded to the encoder with the step's index. */
struct step_sink {
    const struct hrana_cursor_enc *enc;
    uint32_t step;
};

static int ss_begin(void *ud, sqlite3_stmt *st)
{
    struct step_sink *s = ud;
    return s->enc->step_begin(s->enc->ud, s->step, st);
}

static int ss_row(void *ud, sqlite3_stmt *st)
{
    struct step_sink *s = ud;
    return s->enc->row(s->enc->ud, st);
}

static int ss_end(void *ud, int64_t affected, bool has_rowid, int64_t rowid, uint64_t rows_read)
{
    (void)rows_read; /* not part of a step_end entry */
    struct step_sink *s = ud;
    return s->enc->step_end(s->enc->ud, affected, has_rowid, rowid);
}

static size_t ss_mark(void *ud)
{
    struct step_sink *s = ud;
    return s->enc->mark(s->enc->ud);
}

static void ss_rewind(void *ud, size_t mark)
{
    struct step_sink *s = ud;
    s->enc->rewind(s->enc->ud, mark);
}

int hrana_cursor_run(struct hrana_ctx *ctx, json_t *batch, const struct hrana_cursor_enc *enc)
{
    json_t *steps = json_object_get(batch, "steps");
    size_t n = json_array_size(steps);
    signed char *state = edge_calloc(n + 1, 1); /* 0 skipped, 1 ok, -1 error */
    if (state == NULL) {
        return enc->error(enc->ud, "out of memory", "INTERNAL");
    }
    int rv = EDGE_OK;
    for (size_t i = 0; i < n; i++) {
        json_t *step = json_array_get(steps, i);
        json_t *cond = json_object_get(step, "condition");
        if (cond != NULL && !json_is_null(cond) && !hrana__eval_cond(cond, state, ctx)) {
            continue; /* a skipped step has no entries */
        }
        struct step_sink ss = {enc, (uint32_t)i};
        const struct hrana__rows rows = {ss_begin, ss_row, ss_end, ss_mark, ss_rewind, &ss};
        struct stmt_error e = {{0}, NULL};
        if (hrana__run_stmt(ctx, json_object_get(step, "stmt"), &rows, &e) == 0) {
            state[i] = 1;
            continue;
        }
        state[i] = -1;
        if (enc->step_error(enc->ud, (uint32_t)i, e.message, e.code) != EDGE_OK) {
            /* Not even the step's error fits: the cursor ends here, saying why. */
            rv = enc->error(enc->ud, "the result of the cursor is too large", "RESPONSE_TOO_LARGE");
            break;
        }
    }
    edge_free(state);
    return rv;
}

/* ---------------------------------------------------------------------------------- */
/* JSON entries                                                                       */
/* ---------------------------------------------------------------------------------- */

void hrana_cursor_json_init(struct hrana_cursor_json *j, struct edge_buf *out)
{
    j->out = out;
    j->base = out->len;
    j->ends = NULL;
    j->n = 0;
    j->cap = 0;
}

void hrana_cursor_json_reset(struct hrana_cursor_json *j)
{
    j->base = j->out->len;
    j->n = 0;
}

void hrana_cursor_json_free(struct hrana_cursor_json *j)
{
    edge_free(j->ends);
    j->ends = NULL;
    j->n = j->cap = 0;
}

const char *hrana_cursor_json_entry(const struct hrana_cursor_json *j, size_t i, size_t *len)
{
    size_t start = i == 0 ? j->base : j->ends[i - 1];
    *len = j->ends[i] - start - 1;
    return j->out->data + start;
}

static void truncate_to(struct edge_buf *out, size_t len)
{
    out->len = len;
    if (out->data) out->data[len] = '\0';
}

/* Close the entry begun at start (rv says whether it was written whole): its newline and
 * its place in ends[], or nothing of it. */
static int entry_done(struct hrana_cursor_json *j, size_t start, int rv)
{
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, '\n');
    if (rv == EDGE_OK && j->n == j->cap) {
        size_t cap = j->cap ? j->cap * 2 : 64;
        size_t *p = edge_realloc(j->ends, cap * sizeof(*p));
        if (p == NULL) {
            rv = EDGE_ENOMEM;
        } else {
            j->ends = p;
            j->cap = cap;
        }
    }
    if (rv != EDGE_OK) {
        truncate_to(j->out, start);
        return rv;
    }
    j->ends[j->n++] = j->out->len;
    return EDGE_OK;
}

static int cj_step_begin(void *ud, uint32_t step, sqlite3_stmt *st)
{
    struct hrana_cursor_json *j = ud;
    size_t start = j->out->len;
    int rv = edge_buf_printf(j->out, "{\"type\":\"step_begin\",\"step\":%u,", (unsigned)step);
    if (rv == EDGE_OK) rv = hrana__write_cols(j->out, st);
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, '}');
    return entry_done(j, start, rv);
}

static int cj_row(void *ud, sqlite3_stmt *st)
{
    struct hrana_cursor_json *j = ud;
    size_t start = j->out->len;
    int rv = edge_buf_puts(j->out, "{\"type\":\"row\",\"row\":[");
    int ncol = sqlite3_column_count(st);
    for (int c = 0; c < ncol && rv == EDGE_OK; c++) {
        if (c > 0) rv = edge_buf_putc(j->out, ',');
        if (rv == EDGE_OK) rv = hrana__write_value(j->out, st, c);
    }
    if (rv == EDGE_OK) rv = edge_buf_puts(j->out, "]}");
    return entry_done(j, start, rv);
}

static int cj_step_end(void *ud, int64_t affected, bool has_rowid, int64_t rowid)
{
    struct hrana_cursor_json *j = ud;
    size_t start = j->out->len;
    char rid[32] = "null";
    if (has_rowid) snprintf(rid, sizeof(rid), "\"%lld\"", (long long)rowid);
    int rv = edge_buf_printf(j->out, "{\"type\":\"step_end\",\"affected_row_count\":%lld,\"last_insert_rowid\":%s}",
                             (long long)affected, rid);
    return entry_done(j, start, rv);
}

static int cj_step_error(void *ud, uint32_t step, const char *message, const char *code)
{
    struct hrana_cursor_json *j = ud;
    size_t start = j->out->len;
    int rv = edge_buf_printf(j->out, "{\"type\":\"step_error\",\"step\":%u,\"error\":", (unsigned)step);
    if (rv == EDGE_OK) rv = hrana_write_error(j->out, message, code);
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, '}');
    return entry_done(j, start, rv);
}

static int cj_error(void *ud, const char *message, const char *code)
{
    struct hrana_cursor_json *j = ud;
    size_t start = j->out->len;
    /* The last entry says why the cursor ended, so it may go past the cap by its own
     * (small) size: a full buffer must not leave the client without the reason. */
    size_t max = j->out->max;
    j->out->max = max + strlen(message) * 6 + 256;
    int rv = edge_buf_puts(j->out, "{\"type\":\"error\",\"error\":");
    if (rv == EDGE_OK) rv = hrana_write_error(j->out, message, code);
    if (rv == EDGE_OK) rv = edge_buf_putc(j->out, '}');
    rv = entry_done(j, start, rv);
    j->out->max = max;
    return rv;
}

static size_t cj_mark(void *ud)
{
    return ((struct hrana_cursor_json *)ud)->n;
}

static void cj_rewind(void *ud, size_t mark)
{
    struct hrana_cursor_json *j = ud;
    if (mark >= j->n) return;
    truncate_to(j->out, mark == 0 ? j->base : j->ends[mark - 1]);
    j->n = mark;
}

struct hrana_cursor_enc hrana_cursor_json_enc(struct hrana_cursor_json *j)
{
    return (struct hrana_cursor_enc){cj_step_begin, cj_row, cj_step_end, cj_step_error, cj_error,
                                     cj_mark, cj_rewind, j};
}
