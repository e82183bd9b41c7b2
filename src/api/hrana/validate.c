/* SPDX-License-Identifier: MIT */
/* Hrana requests: stored SQL and validation (see hrana.h).
 *
 * DESIGN
 * Bad input must change nothing, so a whole pipeline is validated before any of it
 * runs; only SQL-level failures (a constraint, a missing table) are reported per
 * statement, as sqld does. Results are written straight into one output buffer with a
 * small JSON writer rather than built as a jansson tree: for point reads, building and
 * serialising a tree cost more than the query itself. Parameter binding follows sqld
 * (libsql-server/src/query.rs): positional by index, ?NNN by number, named by exact
 * name and then by name without its prefix character. */
#include "api/hrana.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/alloc.h"

/* ---------------------------------------------------------------------------------- */
/* Stored SQL                                                                         */
/* ---------------------------------------------------------------------------------- */

void hrana_sqlmap_init(struct hrana_sqlmap *m, size_t max)
{
    m->items = NULL;
    m->n = 0;
    m->max = max;
}

void hrana_sqlmap_free(struct hrana_sqlmap *m)
{
    for (size_t i = 0; i < m->n; i++) {
        edge_free(m->items[i].sql);
    }
    edge_free(m->items);
    m->items = NULL;
    m->n = 0;
}

const char *hrana_sqlmap_get(const struct hrana_sqlmap *m, int32_t id)
{
    for (size_t i = 0; i < m->n; i++) {
        if (m->items[i].id == id) {
            return m->items[i].sql;
        }
    }
    return NULL;
}

/* ---------------------------------------------------------------------------------- */
/* Validation                                                                         */
/* ---------------------------------------------------------------------------------- */

static bool opt_type(json_t *obj, const char *key, json_type t)
{
    json_t *v = json_object_get(obj, key);
    return v == NULL || json_is_null(v) || json_typeof(v) == t;
}

static bool is_int32(json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= INT32_MIN && json_integer_value(v) <= INT32_MAX;
}

static int fail(char *err, size_t errlen, const char *fmt, const char *a)
{
    snprintf(err, errlen, fmt, a);
    return EDGE_EPROTO;
}

static int validate_value(json_t *v, char *err, size_t errlen)
{
    if (!json_is_object(v)) {
        return fail(err, errlen, "%sa value must be an object", "");
    }
    const char *t = json_string_value(json_object_get(v, "type"));
    if (t == NULL) {
        return fail(err, errlen, "%sa value needs a string 'type'", "");
    }
    json_t *val = json_object_get(v, "value");
    if (strcmp(t, "null") == 0) return EDGE_OK;
    if (strcmp(t, "integer") == 0) {
        /* The client sends a decimal string; accept an integral JSON number too. */
        if (json_is_string(val) || json_is_integer(val)) return EDGE_OK;
        return fail(err, errlen, "%sinteger value must be a string", "");
    }
    if (strcmp(t, "float") == 0) {
        if (json_is_number(val)) return EDGE_OK;
        return fail(err, errlen, "%sfloat value must be a number", "");
    }
    if (strcmp(t, "text") == 0) {
        if (json_is_string(val)) return EDGE_OK;
        return fail(err, errlen, "%stext value must be a string", "");
    }
    if (strcmp(t, "blob") == 0) {
        if (json_is_string(json_object_get(v, "base64"))) return EDGE_OK;
        return fail(err, errlen, "%sblob value needs a string 'base64'", "");
    }
    return fail(err, errlen, "unknown value type '%s'", t);
}

static int validate_stmt(json_t *s, char *err, size_t errlen)
{
    if (!json_is_object(s)) {
        return fail(err, errlen, "%sstmt must be an object", "");
    }
    json_t *sql = json_object_get(s, "sql");
    json_t *sql_id = json_object_get(s, "sql_id");
    bool has_sql = sql != NULL && !json_is_null(sql);
    bool has_id = sql_id != NULL && !json_is_null(sql_id);
    if (has_sql == has_id) {
        return fail(err, errlen, "%sstmt needs exactly one of 'sql' and 'sql_id'", "");
    }
    if (has_sql && !json_is_string(sql)) return fail(err, errlen, "%s'sql' must be a string", "");
    if (has_id && !is_int32(sql_id)) return fail(err, errlen, "%s'sql_id' must be a 32-bit integer", "");
    if (!opt_type(s, "args", JSON_ARRAY)) return fail(err, errlen, "%s'args' must be an array", "");
    if (!opt_type(s, "named_args", JSON_ARRAY)) return fail(err, errlen, "%s'named_args' must be an array", "");
    json_t *wr = json_object_get(s, "want_rows");
    if (wr != NULL && !json_is_null(wr) && !json_is_boolean(wr)) {
        return fail(err, errlen, "%s'want_rows' must be a boolean", "");
    }
    size_t i;
    json_t *a;
    json_array_foreach(json_object_get(s, "args"), i, a) {
        if (validate_value(a, err, errlen) != EDGE_OK) return EDGE_EPROTO;
    }
    json_array_foreach(json_object_get(s, "named_args"), i, a) {
        if (!json_is_object(a) || !json_is_string(json_object_get(a, "name"))) {
            return fail(err, errlen, "%snamed_args entries need a string 'name'", "");
        }
        if (validate_value(json_object_get(a, "value"), err, errlen) != EDGE_OK) return EDGE_EPROTO;
    }
    return EDGE_OK;
}

static int validate_cond(json_t *c, size_t step, int version, int depth, char *err, size_t errlen)
{
    if (depth > 32) return fail(err, errlen, "%scondition nested too deeply", "");
    if (!json_is_object(c)) return fail(err, errlen, "%scondition must be an object", "");
    const char *t = json_string_value(json_object_get(c, "type"));
    if (t == NULL) return fail(err, errlen, "%scondition needs a string 'type'", "");
    if (strcmp(t, "ok") == 0 || strcmp(t, "error") == 0) {
        json_t *s = json_object_get(c, "step");
        if (!json_is_integer(s) || json_integer_value(s) < 0 || (size_t)json_integer_value(s) >= step) {
            return fail(err, errlen, "%scondition 'step' must refer to an earlier step", "");
        }
        return EDGE_OK;
    }
    if (strcmp(t, "not") == 0) {
        return validate_cond(json_object_get(c, "cond"), step, version, depth + 1, err, errlen);
    }
    if (strcmp(t, "and") == 0 || strcmp(t, "or") == 0) {
        json_t *cs = json_object_get(c, "conds");
        if (!json_is_array(cs)) return fail(err, errlen, "%s'conds' must be an array", "");
        size_t i;
        json_t *x;
        json_array_foreach(cs, i, x) {
            if (validate_cond(x, step, version, depth + 1, err, errlen) != EDGE_OK) return EDGE_EPROTO;
        }
        return EDGE_OK;
    }
    if (strcmp(t, "is_autocommit") == 0 && version >= 3) return EDGE_OK;
    return fail(err, errlen, "unknown condition type '%s'", t);
}

static int validate_batch(json_t *b, int version, char *err, size_t errlen)
{
    json_t *steps = json_object_get(b, "steps");
    if (!json_is_object(b) || !json_is_array(steps)) {
        return fail(err, errlen, "%sbatch needs an array 'steps'", "");
    }
    if (json_array_size(steps) > 10000) return fail(err, errlen, "%stoo many batch steps", "");
    size_t i;
    json_t *st;
    json_array_foreach(steps, i, st) {
        if (!json_is_object(st)) return fail(err, errlen, "%sa batch step must be an object", "");
        if (validate_stmt(json_object_get(st, "stmt"), err, errlen) != EDGE_OK) return EDGE_EPROTO;
        json_t *c = json_object_get(st, "condition");
        if (c != NULL && !json_is_null(c) && validate_cond(c, i, version, 0, err, errlen) != EDGE_OK) {
            return EDGE_EPROTO;
        }
    }
    return EDGE_OK;
}

static int validate_sql_or_id(json_t *r, char *err, size_t errlen)
{
    json_t *sql = json_object_get(r, "sql");
    json_t *id = json_object_get(r, "sql_id");
    bool has_sql = sql != NULL && !json_is_null(sql);
    bool has_id = id != NULL && !json_is_null(id);
    if (has_sql == has_id) return fail(err, errlen, "%sneeds exactly one of 'sql' and 'sql_id'", "");
    if (has_sql && !json_is_string(sql)) return fail(err, errlen, "%s'sql' must be a string", "");
    if (has_id && !is_int32(id)) return fail(err, errlen, "%s'sql_id' must be a 32-bit integer", "");
    return EDGE_OK;
}

int hrana_validate_request(json_t *r, int version, bool ws, char *err, size_t errlen)
{
    if (!json_is_object(r)) return fail(err, errlen, "%sa request must be an object", "");
    const char *t = json_string_value(json_object_get(r, "type"));
    if (t == NULL) return fail(err, errlen, "%sa request needs a string 'type'", "");
    bool needs_stream = ws;
    int rv = EDGE_OK;
    if (strcmp(t, "execute") == 0) {
        rv = validate_stmt(json_object_get(r, "stmt"), err, errlen);
    } else if (strcmp(t, "batch") == 0) {
        rv = validate_batch(json_object_get(r, "batch"), version, err, errlen);
    } else if (strcmp(t, "sequence") == 0 || strcmp(t, "describe") == 0) {
        rv = validate_sql_or_id(r, err, errlen);
    } else if (strcmp(t, "store_sql") == 0) {
        needs_stream = false;
        if (!is_int32(json_object_get(r, "sql_id")) || !json_is_string(json_object_get(r, "sql"))) {
            rv = fail(err, errlen, "%sstore_sql needs an integer 'sql_id' and a string 'sql'", "");
        }
    } else if (strcmp(t, "close_sql") == 0) {
        needs_stream = false;
        if (!is_int32(json_object_get(r, "sql_id"))) rv = fail(err, errlen, "%sclose_sql needs 'sql_id'", "");
    } else if (strcmp(t, "get_autocommit") == 0 && version >= 3) {
        /* no fields */
    } else if (ws && version >= 3 && strcmp(t, "open_cursor") == 0) {
        if (!is_int32(json_object_get(r, "cursor_id"))) {
            rv = fail(err, errlen, "%s'cursor_id' must be a 32-bit integer", "");
        }
        if (rv == EDGE_OK) rv = validate_batch(json_object_get(r, "batch"), version, err, errlen);
    } else if (ws && version >= 3 && (strcmp(t, "fetch_cursor") == 0 || strcmp(t, "close_cursor") == 0)) {
        needs_stream = false;
        json_t *mc = json_object_get(r, "max_count");
        if (!is_int32(json_object_get(r, "cursor_id"))) {
            rv = fail(err, errlen, "%s'cursor_id' must be a 32-bit integer", "");
        } else if (t[0] == 'f' && (!json_is_integer(mc) || json_integer_value(mc) < 0 ||
                                   json_integer_value(mc) > UINT32_MAX)) {
            rv = fail(err, errlen, "%s'max_count' must be an unsigned 32-bit integer", "");
        }
    } else if (!ws && strcmp(t, "close") == 0) {
        /* no fields */
    } else if (ws && (strcmp(t, "open_stream") == 0 || strcmp(t, "close_stream") == 0)) {
        /* stream_id checked below */
    } else {
        return fail(err, errlen, "unknown request type '%s'", t);
    }
    if (rv == EDGE_OK && needs_stream && !is_int32(json_object_get(r, "stream_id"))) {
        rv = fail(err, errlen, "%s'stream_id' must be a 32-bit integer", "");
    }
    return rv;
}

int hrana_validate_pipeline(json_t *body, int version, char *err, size_t errlen)
{
    if (!json_is_object(body)) return fail(err, errlen, "%sthe body must be a JSON object", "");
    json_t *baton = json_object_get(body, "baton");
    if (baton != NULL && !json_is_null(baton) && !json_is_string(baton)) {
        return fail(err, errlen, "%s'baton' must be a string or null", "");
    }
    json_t *reqs = json_object_get(body, "requests");
    if (!json_is_array(reqs)) return fail(err, errlen, "%s'requests' must be an array", "");
    if (json_array_size(reqs) > 10000) return fail(err, errlen, "%stoo many requests", "");
    size_t i;
    json_t *r;
    json_array_foreach(reqs, i, r) {
        if (hrana_validate_request(r, version, false, err, errlen) != EDGE_OK) return EDGE_EPROTO;
    }
    return EDGE_OK;
}


int hrana_validate_cursor(json_t *body, char *err, size_t errlen)
{
    if (!json_is_object(body)) return fail(err, errlen, "%sthe body must be a JSON object", "");
    json_t *baton = json_object_get(body, "baton");
    if (baton != NULL && !json_is_null(baton) && !json_is_string(baton)) {
        return fail(err, errlen, "%s'baton' must be a string or null", "");
    }
    if (json_object_get(body, "batch") == NULL) return fail(err, errlen, "%sthe body needs a 'batch'", "");
    return validate_batch(json_object_get(body, "batch"), 3, err, errlen);
}
