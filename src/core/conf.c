/* SPDX-License-Identifier: MIT */
/* Strict loader for deployment/edge-config.yaml (libyaml document API); regions.json is
 * loaded by regions.c.
 *
 * DESIGN: the YAML is loaded into a libyaml document first, so every node keeps its
 * source line; each mapping is then checked against a fixed list of allowed keys
 * (unknown and duplicate keys are errors, since a typo such as `sync_interval: 5`
 * silently falling back to a default is worse than refusing to start). Messages have
 * the form "FILE:LINE: KEY.PATH: what is wrong[, got 'VALUE']". Relative paths are
 * kept as written; resolving them is the caller's business. */
#include "core/conf.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "core/alloc.h"
#include "core/conf_int.h"
#include "core/err.h"
#include "core/jwt.h"

#define CONF_FILE_MAX (1024 * 1024)
#define PATH_LEN EDGE__CONF_PATH_LEN

/* ------------------------------------------------------------------------------------
 * Small shared helpers
 * ---------------------------------------------------------------------------------- */

/* Region ids end up in URLs, file names and metrics labels: keep them tame. */
int edge__conf_valid_region_id(const char *s)
{
    if (s == NULL || s[0] == '\0') {
        return 0;
    }
    for (const char *p = s; *p != '\0'; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-')) {
            return 0;
        }
    }
    return 1;
}

/* "HOST:PORT", "[v6]:PORT"; port 1..65535. */
static int valid_listen(const char *s)
{
    const char *colon = strrchr(s, ':');
    if (colon == NULL || colon == s) {
        return 0;
    }
    size_t hlen = (size_t)(colon - s);
    if (s[0] == '[') {
        if (hlen < 3 || s[hlen - 1] != ']') {
            return 0;
        }
    } else if (memchr(s, ':', hlen) != NULL) {
        return 0; /* bare IPv6 needs brackets */
    }
    const char *p = colon + 1;
    size_t n = strlen(p);
    if (n == 0 || n > 5) {
        return 0;
    }
    long port = 0;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9') {
            return 0;
        }
        port = port * 10 + (p[i] - '0');
    }
    return port >= 1 && port <= 65535;
}

const char *edge_consistency_name(enum edge_consistency c)
{
    switch (c) {
    case EDGE_CONS_STRONG: return "strong";
    case EDGE_CONS_ASYNC: return "async";
    case EDGE_CONS_EVENTUAL: break;
    }
    return "eventual";
}

int edge_consistency_parse(const char *s, enum edge_consistency *out)
{
    if (s == NULL) {
        return EDGE_EINVAL;
    }
    if (strcmp(s, "strong") == 0) {
        *out = EDGE_CONS_STRONG;
    } else if (strcmp(s, "eventual") == 0) {
        *out = EDGE_CONS_EVENTUAL;
    } else if (strcmp(s, "async") == 0) {
        *out = EDGE_CONS_ASYNC;
    } else {
        return EDGE_EINVAL;
    }
    return EDGE_OK;
}

/* ------------------------------------------------------------------------------------
 * YAML walking
 * ---------------------------------------------------------------------------------- */

/* Section parsers in other files see it as struct edge__conf_ctx (conf_int.h). */
struct ctx {
    const char *name; /* file name for messages */
    char *errmsg;
    size_t errmsg_len;
    yaml_document_t *doc;
    struct edge_conf *c;
};

static unsigned long line_of(const yaml_node_t *n)
{
    return n == NULL ? 1ul : (unsigned long)n->start_mark.line + 1ul;
}

/* Describe a node for "got ..." in messages (bounded, printable). */
static void describe(const yaml_node_t *n, char *out, size_t len)
{
    if (n == NULL) {
        snprintf(out, len, "nothing");
    } else if (n->type == YAML_MAPPING_NODE) {
        snprintf(out, len, "a mapping");
    } else if (n->type == YAML_SEQUENCE_NODE) {
        snprintf(out, len, "a list");
    } else {
        const char *v = (const char *)n->data.scalar.value;
        size_t vlen = n->data.scalar.length;
        snprintf(out, len, "'%.*s%s'", (int)(vlen > 40 ? 40 : vlen), v, vlen > 40 ? "..." : "");
        for (char *p = out; *p != '\0'; p++) {
            if ((unsigned char)*p < 0x20) {
                *p = '?';
            }
        }
    }
}

static int fail(struct ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int fail(struct ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    char what[EDGE_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    if (path != NULL && path[0] != '\0') {
        edge__errmsg_set(x->errmsg, x->errmsg_len, "%s:%lu: %s: %s", x->name, line_of(n), path, what);
    } else {
        edge__errmsg_set(x->errmsg, x->errmsg_len, "%s:%lu: %s", x->name, line_of(n), what);
    }
    return EDGE_ECONFIG;
}

static int fail_type(struct ctx *x, const yaml_node_t *n, const char *path, const char *want)
{
    char got[64];
    describe(n, got, sizeof(got));
    return fail(x, n, path, "expected %s, got %s", want, got);
}

static int is_null(const yaml_node_t *n)
{
    if (n == NULL) {
        return 1;
    }
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return 0;
    }
    const char *v = (const char *)n->data.scalar.value;
    return n->data.scalar.length == 0 || strcmp(v, "~") == 0 || strcmp(v, "null") == 0 ||
           strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

static yaml_node_t *node_at(struct ctx *x, int idx)
{
    return yaml_document_get_node(x->doc, idx);
}

/* out = parent.key (or key at the top), truncated to PATH_LEN - 1 bytes. */
static void join(char *out, const char *parent, const char *key)
{
    size_t o = 0;
    const char *parts[3] = {parent, parent[0] != '\0' ? "." : "", key};
    for (size_t i = 0; i < 3; i++) {
        for (const char *p = parts[i]; *p != '\0' && o + 1 < PATH_LEN; p++) {
            out[o++] = *p;
        }
    }
    out[o] = '\0';
}

/* Check that every key of mapping `m` is a scalar from `allowed` (NULL-terminated;
 * NULL list = any key) and appears once. */
static int check_keys(struct ctx *x, yaml_node_t *m, const char *path,
                      const char *const *allowed)
{
    char kp[PATH_LEN];
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(x, p->key);
        if (k == NULL || k->type != YAML_SCALAR_NODE) {
            return fail(x, k, path, "keys must be plain strings");
        }
        const char *ks = (const char *)k->data.scalar.value;
        join(kp, path, ks);
        if (allowed != NULL) {
            int ok = 0;
            for (const char *const *a = allowed; *a != NULL; a++) {
                ok |= strcmp(*a, ks) == 0;
            }
            if (!ok) {
                return fail(x, k, kp, "unknown key");
            }
        }
        for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *k2 = node_at(x, q->key);
            if (k2 != NULL && k2->type == YAML_SCALAR_NODE &&
                strcmp((const char *)k2->data.scalar.value, ks) == 0) {
                return fail(x, k, kp, "duplicate key (first at line %lu)", line_of(k2));
            }
        }
    }
    return EDGE_OK;
}

/* The value of `key` in mapping m, or NULL if absent. */
static yaml_node_t *lookup(struct ctx *x, yaml_node_t *m, const char *key)
{
    for (yaml_node_pair_t *p = m->data.mapping.pairs.start; p < m->data.mapping.pairs.top; p++) {
        yaml_node_t *k = node_at(x, p->key);
        if (k != NULL && k->type == YAML_SCALAR_NODE &&
            strcmp((const char *)k->data.scalar.value, key) == 0) {
            return node_at(x, p->value);
        }
    }
    return NULL;
}

/* A section that may be a mapping or null/absent (*out NULL then). */
static int get_section(struct ctx *x, yaml_node_t *m, const char *key, yaml_node_t **out)
{
    yaml_node_t *v = lookup(x, m, key);
    *out = NULL;
    if (v == NULL || is_null(v)) {
        return EDGE_OK;
    }
    if (v->type != YAML_MAPPING_NODE) {
        return fail_type(x, v, key, "a mapping");
    }
    *out = v;
    return EDGE_OK;
}

/* String field: *out replaced by a copy; null leaves *out unchanged when allowed. */
static int get_str(struct ctx *x, yaml_node_t *m, const char *parent, const char *key,
                   int allow_null, char **out, yaml_node_t **out_node)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(x, m, key);
    join(kp, parent, key);
    if (out_node != NULL) {
        *out_node = v;
    }
    if (v == NULL) {
        return EDGE_OK;
    }
    if (is_null(v)) {
        return allow_null ? EDGE_OK : fail(x, v, kp, "expected a string, got null");
    }
    if (v->type != YAML_SCALAR_NODE) {
        return fail_type(x, v, kp, "a string");
    }
    char *s = edge_strndup((const char *)v->data.scalar.value, v->data.scalar.length);
    if (s == NULL) {
        return EDGE_ENOMEM;
    }
    edge_free(*out);
    *out = s;
    return EDGE_OK;
}

/* A file name, resolved against the config file's directory when relative (so a
 * config and its certificates can move together). */
static int get_path(struct ctx *x, yaml_node_t *m, const char *parent, const char *key, char **out)
{
    yaml_node_t *node = NULL;
    int rv = get_str(x, m, parent, key, 1, out, &node);
    if (rv != EDGE_OK || *out == NULL) return rv;
    if ((*out)[0] == '\0') {
        char kp[PATH_LEN];
        join(kp, parent, key);
        return fail(x, node, kp, "must not be empty");
    }
    const char *slash = strrchr(x->name, '/');
    if ((*out)[0] == '/' || slash == NULL) return EDGE_OK;
    size_t dlen = (size_t)(slash - x->name) + 1, flen = strlen(*out);
    char *p = edge_malloc(dlen + flen + 1);
    if (p == NULL) return EDGE_ENOMEM;
    memcpy(p, x->name, dlen);
    memcpy(p + dlen, *out, flen + 1);
    edge_free(*out);
    *out = p;
    return EDGE_OK;
}

static int get_int(struct ctx *x, yaml_node_t *m, const char *parent, const char *key,
                   long min, int *out)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(x, m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) {
        return EDGE_OK; /* keep the default */
    }
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return fail_type(x, v, kp, "an integer");
    }
    const char *s = (const char *)v->data.scalar.value;
    char *end = NULL;
    errno = 0;
    long n = strtol(s, &end, 10);
    if (v->data.scalar.length == 0 || end == s || *end != '\0' || errno != 0 ||
        !((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+')) {
        return fail_type(x, v, kp, "an integer");
    }
    if (n < min || n > 2147483647L) {
        return fail(x, v, kp, "must be between %ld and 2147483647, got %ld", min, n);
    }
    *out = (int)n;
    return EDGE_OK;
}

/* Boolean field: exactly true or false (plain scalars); absent or null keeps the default. */
static int get_bool(struct ctx *x, yaml_node_t *m, const char *parent, const char *key, int *out)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(x, m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) {
        return EDGE_OK;
    }
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return fail_type(x, v, kp, "true or false");
    }
    const char *s = (const char *)v->data.scalar.value;
    if (strcmp(s, "true") == 0) {
        *out = 1;
    } else if (strcmp(s, "false") == 0) {
        *out = 0;
    } else {
        return fail_type(x, v, kp, "true or false");
    }
    return EDGE_OK;
}

/* ------------------------------------------------------------------------------------
 * The helpers for section parsers in other files (conf_int.h)
 * ---------------------------------------------------------------------------------- */

#define CX(x) ((struct ctx *)(void *)(x))

struct edge_conf *edge__conf_target(struct edge__conf_ctx *x)
{
    return CX(x)->c;
}

int edge__conf_fail(struct edge__conf_ctx *x, const yaml_node_t *n, const char *path, const char *fmt, ...)
{
    char what[EDGE_ERRMSG_SIZE];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return fail(CX(x), n, path, "%s", what);
}

int edge__conf_check_keys(struct edge__conf_ctx *x, yaml_node_t *m, const char *path, const char *const *allowed)
{
    return check_keys(CX(x), m, path, allowed);
}

yaml_node_t *edge__conf_lookup(struct edge__conf_ctx *x, yaml_node_t *m, const char *key)
{
    return lookup(CX(x), m, key);
}

yaml_node_t *edge__conf_node(struct edge__conf_ctx *x, int idx)
{
    return node_at(CX(x), idx);
}

int edge__conf_get_section(struct edge__conf_ctx *x, yaml_node_t *m, const char *path, const char *key,
                           yaml_node_t **out)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(CX(x), m, key);
    *out = NULL;
    if (v == NULL || is_null(v)) return EDGE_OK;
    join(kp, path, key);
    if (v->type != YAML_MAPPING_NODE) return fail_type(CX(x), v, kp, "a mapping");
    *out = v;
    return EDGE_OK;
}

int edge__conf_get_str(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                       int allow_null, char **out, yaml_node_t **out_node)
{
    return get_str(CX(x), m, parent, key, allow_null, out, out_node);
}

int edge__conf_get_int(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, long min,
                       int *out)
{
    return get_int(CX(x), m, parent, key, min, out);
}

int edge__conf_get_bool(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, int *out)
{
    return get_bool(CX(x), m, parent, key, out);
}

int edge__conf_fail_type(struct edge__conf_ctx *x, const yaml_node_t *n, const char *path, const char *want)
{
    return fail_type(CX(x), n, path, want);
}

int edge__conf_is_null(const yaml_node_t *n)
{
    return is_null(n);
}

void edge__conf_join(char *out, const char *parent, const char *key)
{
    join(out, parent, key);
}

int edge__conf_get_bytes(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key, long long min,
                         int64_t *out)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(CX(x), m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) return EDGE_OK; /* keep the default */
    const char *s = (const char *)v->data.scalar.value;
    char *end = NULL;
    errno = 0;
    long long n = v->type == YAML_SCALAR_NODE ? strtoll(s, &end, 10) : 0;
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE ||
        v->data.scalar.length == 0 || end == s || *end != '\0' || errno != 0 || !(s[0] >= '0' && s[0] <= '9')) {
        return fail_type(CX(x), v, kp, "a number of bytes");
    }
    if (n < min) return fail(CX(x), v, kp, "must be at least %lld, got %lld", min, n);
    *out = (int64_t)n;
    return EDGE_OK;
}

int edge__conf_get_duration(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                            int64_t *out_ms)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(CX(x), m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) {
        return EDGE_OK;
    }
    if (v->type != YAML_SCALAR_NODE) {
        return fail_type(CX(x), v, kp, "a duration such as 30s, 15m, 12h or 7d");
    }
    const char *s = (const char *)v->data.scalar.value;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(s, &end, 10);
    int64_t unit = 0;
    if (end != s && s[0] >= '0' && s[0] <= '9' && end[0] != '\0' && end[1] == '\0') {
        unit = end[0] == 's' ? 1000 : end[0] == 'm' ? 60000 : end[0] == 'h' ? 3600000 : end[0] == 'd' ? 86400000 : 0;
    }
    /* at most ~100 years: the product stays far from overflow */
    if (unit == 0 || errno != 0 || n <= 0 || n > 36500LL * 86400) {
        return fail_type(CX(x), v, kp, "a duration such as 30s, 15m, 12h or 7d");
    }
    *out_ms = (int64_t)n * unit;
    return EDGE_OK;
}

int edge__conf_get_consistency(struct edge__conf_ctx *x, yaml_node_t *v, const char *kp, enum edge_consistency *out)
{
    if (v->type != YAML_SCALAR_NODE || is_null(v) ||
        edge_consistency_parse((const char *)v->data.scalar.value, out) != EDGE_OK) {
        return fail_type(CX(x), v, kp, "one of strong, eventual, async");
    }
    return EDGE_OK;
}

int edge__conf_get_number(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                          double min_exclusive, double *out)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(CX(x), m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) return EDGE_OK;
    if (v->type != YAML_SCALAR_NODE || v->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) {
        return fail_type(CX(x), v, kp, "a number");
    }
    const char *s = (const char *)v->data.scalar.value;
    char *end = NULL;
    errno = 0;
    double d = strtod(s, &end);
    if (end == s || *end != '\0' || errno != 0 || !(d == d) || d > 1e15 || d < -1e15 ||
        !((s[0] >= '0' && s[0] <= '9') || s[0] == '-' || s[0] == '+' || s[0] == '.')) {
        return fail_type(CX(x), v, kp, "a number");
    }
    if (!(d > min_exclusive)) return fail(CX(x), v, kp, "must be greater than %g, got %g", min_exclusive, d);
    *out = d;
    return EDGE_OK;
}

int edge__conf_get_str_list(struct edge__conf_ctx *x, yaml_node_t *m, const char *parent, const char *key,
                            char ***out, size_t *n)
{
    char kp[PATH_LEN];
    yaml_node_t *v = lookup(CX(x), m, key);
    join(kp, parent, key);
    if (v == NULL || is_null(v)) return EDGE_OK;
    if (v->type != YAML_SEQUENCE_NODE) return fail_type(CX(x), v, kp, "a list of strings");
    size_t k = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
    char **items = edge_calloc(k + 1, sizeof(*items));
    if (items == NULL) return EDGE_ENOMEM;
    int rv = EDGE_OK;
    size_t i = 0;
    for (; i < k; i++) {
        yaml_node_t *e = node_at(CX(x), v->data.sequence.items.start[i]);
        char ip[PATH_LEN + 32];
        snprintf(ip, sizeof(ip), "%s[%zu]", kp, i);
        if (e == NULL || e->type != YAML_SCALAR_NODE || is_null(e)) {
            rv = fail_type(CX(x), e, ip, "a string");
            break;
        }
        items[i] = edge_strndup((const char *)e->data.scalar.value, e->data.scalar.length);
        if (items[i] == NULL) {
            rv = EDGE_ENOMEM;
            break;
        }
    }
    if (rv != EDGE_OK) {
        for (size_t j = 0; j < i; j++) edge_free(items[j]);
        edge_free(items);
        return rv;
    }
    for (size_t j = 0; j < *n; j++) edge_free((*out)[j]);
    edge_free(*out);
    *out = items;
    *n = k;
    return EDGE_OK;
}

/* ------------------------------------------------------------------------------------
 * Sections
 * ---------------------------------------------------------------------------------- */

static int parse_cluster(struct ctx *x, yaml_node_t *m)
{
    static const char *const keys[] = {"name", "secret", "secret_env", "ca_file", "sig_replay_max", NULL};
    char *env_name = NULL;
    yaml_node_t *name_node = NULL, *env_node = NULL;
    int rv = check_keys(x, m, "cluster", keys);
    if (rv == EDGE_OK) {
        rv = get_str(x, m, "cluster", "name", 0, &x->c->cluster_name, &name_node);
    }
    if (rv == EDGE_OK && x->c->cluster_name[0] == '\0') {
        rv = fail(x, name_node, "cluster.name", "must not be empty");
    }
    if (rv == EDGE_OK) {
        rv = get_str(x, m, "cluster", "secret", 1, &x->c->cluster_secret, NULL);
    }
    if (rv == EDGE_OK) {
        rv = get_str(x, m, "cluster", "secret_env", 1, &env_name, &env_node);
    }
    if (rv == EDGE_OK) {
        rv = get_path(x, m, "cluster", "ca_file", &x->c->ca_file);
    }
    if (rv == EDGE_OK) {
        rv = get_int(x, m, "cluster", "sig_replay_max", -2147483647L, &x->c->cluster_sig_replay_max);
    }
    if (rv == EDGE_OK &&
        (x->c->cluster_sig_replay_max < 1 || x->c->cluster_sig_replay_max > EDGE_CONF_SIG_REPLAY_MAX)) {
        rv = fail(x, lookup(x, m, "sig_replay_max"), "cluster.sig_replay_max", "must be between 1 and %d, got %d",
                  EDGE_CONF_SIG_REPLAY_MAX, x->c->cluster_sig_replay_max);
    }
    if (rv != EDGE_OK || env_name == NULL) {
        goto out;
    }
    if (x->c->cluster_secret != NULL) {
        rv = fail(x, env_node, "cluster.secret_env", "set either 'secret' or 'secret_env', not both");
        goto out;
    }
    /* Resolved at load time so that a missing variable stops start-up, instead of the
     * node joining (or failing to join) the cluster without a secret later. */
    const char *val = getenv(env_name);
    if (env_name[0] == '\0' || val == NULL || val[0] == '\0') {
        rv = fail(x, env_node, "cluster.secret_env", "environment variable '%s' is not set",
                  env_name);
        goto out;
    }
    x->c->cluster_secret = edge_strdup(val);
    rv = x->c->cluster_secret == NULL ? EDGE_ENOMEM : EDGE_OK;
out:
    edge_free(env_name);
    return rv;
}

static int parse_region(struct ctx *x, yaml_node_t *m, size_t i, struct edge_conf_region *r)
{
    static const char *const keys[] = {"id", "listen", "url", "data_dir", "priority", "capacity", "tls_cert",
                                       "tls_key", NULL};
    char path[PATH_LEN], kp[PATH_LEN];
    yaml_node_t *id_node = NULL, *listen_node = NULL;
    int rv;

    snprintf(path, sizeof(path), "regions[%zu]", i);
    if (m->type != YAML_MAPPING_NODE) {
        return fail_type(x, m, path, "a mapping");
    }
    rv = check_keys(x, m, path, keys);
    if (rv == EDGE_OK) {
        rv = get_str(x, m, path, "id", 0, &r->id, &id_node);
    }
    if (rv != EDGE_OK) {
        return rv;
    }
    join(kp, path, "id");
    if (r->id == NULL) {
        return fail(x, m, kp, "missing");
    }
    if (!edge__conf_valid_region_id(r->id)) {
        return fail(x, id_node, kp, "expected a region id of [a-z0-9-]+, got '%.40s'", r->id);
    }
    for (size_t j = 0; j < i; j++) {
        if (strcmp(x->c->regions[j].id, r->id) == 0) {
            return fail(x, id_node, kp, "duplicate region id '%s' (also regions[%zu])", r->id, j);
        }
    }
    rv = get_str(x, m, path, "listen", 1, &r->listen, &listen_node);
    if (rv == EDGE_OK && r->listen != NULL && !valid_listen(r->listen)) {
        join(kp, path, "listen");
        rv = fail(x, listen_node, kp, "expected HOST:PORT with port 1..65535, got '%.60s'",
                  r->listen);
    }
    if (rv == EDGE_OK) {
        rv = get_str(x, m, path, "url", 1, &r->url, NULL);
    }
    if (rv == EDGE_OK) {
        rv = get_str(x, m, path, "data_dir", 1, &r->data_dir, NULL);
    }
    if (rv == EDGE_OK) {
        rv = get_int(x, m, path, "priority", -2147483647L, &r->priority);
    }
    if (rv == EDGE_OK) rv = get_path(x, m, path, "tls_cert", &r->tls_cert);
    if (rv == EDGE_OK) rv = get_path(x, m, path, "tls_key", &r->tls_key);
    if (rv == EDGE_OK && (r->tls_cert == NULL) != (r->tls_key == NULL)) {
        join(kp, path, r->tls_cert == NULL ? "tls_cert" : "tls_key");
        rv = fail(x, m, kp, "missing: tls_cert and tls_key go together");
    }
    yaml_node_t *cap = NULL;
    if (rv == EDGE_OK) {
        rv = edge__conf_get_section((struct edge__conf_ctx *)x, m, path, "capacity", &cap);
    }
    if (rv == EDGE_OK && cap != NULL) {
        static const char *const cap_keys[] = {"max_sessions", "weight", NULL};
        join(kp, path, "capacity");
        rv = check_keys(x, cap, kp, cap_keys);
        if (rv == EDGE_OK) rv = get_int(x, cap, kp, "max_sessions", 0, &r->capacity.max_sessions);
        if (rv == EDGE_OK) {
            rv = edge__conf_get_number((struct edge__conf_ctx *)x, cap, kp, "weight", 0.0, &r->capacity.weight);
        }
    }
    return rv;
}

static int parse_regions(struct ctx *x, yaml_node_t *root)
{
    yaml_node_t *s = lookup(x, root, "regions");
    if (s == NULL) {
        return fail(x, root, "regions", "missing (at least one region is required)");
    }
    if (s->type != YAML_SEQUENCE_NODE) {
        return fail_type(x, s, "regions", "a list of regions");
    }
    size_t n = (size_t)(s->data.sequence.items.top - s->data.sequence.items.start);
    if (n == 0) {
        return fail(x, s, "regions", "at least one region is required");
    }
    x->c->regions = edge_calloc(n, sizeof(*x->c->regions));
    if (x->c->regions == NULL) {
        return EDGE_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        struct edge_conf_region *r = &x->c->regions[i];
        r->priority = 100;
        r->capacity.weight = 1.0;
        x->c->n_regions = i + 1; /* so edge_conf_free sees it even on failure */
        int rv = parse_region(x, node_at(x, s->data.sequence.items.start[i]), i, r);
        if (rv != EDGE_OK) {
            return rv;
        }
    }
    return EDGE_OK;
}

static int parse_root(struct ctx *x, yaml_node_t *root)
{
    static const char *const keys[] = {"cluster", "regions",  "replication", "auth",   "limits",
                                       "router",  "sessions", "realtime",    NULL};
    yaml_node_t *sec = NULL;
    int rv;

    if (root == NULL) {
        return fail(x, NULL, NULL, "empty configuration (expected a mapping)");
    }
    if (root->type != YAML_MAPPING_NODE) {
        return fail_type(x, root, NULL, "a mapping at the top level");
    }
    rv = check_keys(x, root, "", keys);
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "cluster", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        rv = parse_cluster(x, sec);
    }
    if (rv == EDGE_OK) {
        rv = parse_regions(x, root);
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "replication", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_parse_replication((struct edge__conf_ctx *)x, sec);
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "auth", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        static const char *const auth_keys[] = {"jwt_public_key_file", "public_metrics", NULL};
        rv = check_keys(x, sec, "auth", auth_keys);
        if (rv == EDGE_OK) {
            rv = get_str(x, sec, "auth", "jwt_public_key_file", 1, &x->c->jwt_public_key_file,
                         NULL);
        }
        if (rv == EDGE_OK) {
            rv = get_bool(x, sec, "auth", "public_metrics", &x->c->public_metrics);
        }
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "limits", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        static const char *const limit_keys[] = {"writer_queue", "ws_output_bytes", NULL};
        rv = check_keys(x, sec, "limits", limit_keys);
        if (rv == EDGE_OK) {
            rv = get_int(x, sec, "limits", "writer_queue", 1, &x->c->writer_queue);
        }
        if (rv == EDGE_OK) {
            /* below a few KiB even one ordinary answer would close the connection */
            rv = get_int(x, sec, "limits", "ws_output_bytes", 4096, &x->c->ws_output_bytes);
        }
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "router", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_parse_router((struct edge__conf_ctx *)x, sec);
    }
    if (rv == EDGE_OK) {
        rv = edge__conf_router_check((struct edge__conf_ctx *)x, root);
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "realtime", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_parse_realtime((struct edge__conf_ctx *)x, sec);
    }
    if (rv == EDGE_OK) {
        rv = get_section(x, root, "sessions", &sec);
    }
    if (rv == EDGE_OK && sec != NULL) {
        rv = edge__conf_parse_sessions((struct edge__conf_ctx *)x, sec);
    }
    return rv;
}

/* ------------------------------------------------------------------------------------
 * Public API: config
 * ---------------------------------------------------------------------------------- */

static int set_defaults(struct edge_conf *c)
{
    c->cluster_name = edge_strdup("edgelite");
    c->conflict_resolution = edge_strdup("version_vector");
    c->consistency = EDGE_CONS_EVENTUAL;
    c->sync_interval_ms = 1000;
    c->max_retries = 3;
    c->max_clock_skew_ms = 500;
    c->conflicts_keep = EDGE_CONF_CONFLICTS_KEEP;
    c->max_log_bytes = EDGE_CONF_MAX_LOG_BYTES;
    c->conflicts_max_age_ms = EDGE_CONF_CONFLICTS_MAX_AGE_MS;
    c->tombstone_gc_interval_ms = EDGE_CONF_TOMBSTONE_GC_INTERVAL_MS;
    c->writer_queue = EDGE_CONF_WRITER_QUEUE;
    c->cluster_sig_replay_max = EDGE_CONF_SIG_REPLAY_MAX;
    c->ws_output_bytes = EDGE_CONF_WS_OUTPUT_BYTES;
    edge__conf_router_defaults(c);
    c->sessions = (struct edge_conf_sessions)EDGE_CONF_SESSIONS_DEFAULTS;
    edge__conf_realtime_defaults(c);
    return c->cluster_name != NULL && c->conflict_resolution != NULL ? EDGE_OK : EDGE_ENOMEM;
}

int edge_conf_parse(const char *name, const char *yaml, size_t len, struct edge_conf **out,
                    char *errmsg, size_t errmsg_len)
{
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int have_doc = 0;
    struct ctx x = {.name = name, .errmsg = errmsg, .errmsg_len = errmsg_len, .doc = &doc};
    int rv = EDGE_ENOMEM;

    *out = NULL;
    if (errmsg != NULL && errmsg_len > 0) {
        errmsg[0] = '\0';
    }
    if (!yaml_parser_initialize(&parser)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", name);
        return EDGE_ENOMEM;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    x.c = edge_calloc(1, sizeof(*x.c));
    if (x.c == NULL || set_defaults(x.c) != EDGE_OK) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", name);
        goto out;
    }
    if (!yaml_parser_load(&parser, &doc)) {
        rv = parser.error == YAML_MEMORY_ERROR ? EDGE_ENOMEM : EDGE_ECONFIG;
        edge__errmsg_set(errmsg, errmsg_len, "%s:%lu: YAML syntax error: %s%s%s", name,
               (unsigned long)parser.problem_mark.line + 1ul,
               parser.problem != NULL ? parser.problem : "unknown",
               parser.context != NULL ? " " : "", parser.context != NULL ? parser.context : "");
        goto out;
    }
    have_doc = 1;
    rv = parse_root(&x, yaml_document_get_root_node(&doc));
    if (rv == EDGE_ENOMEM) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", name);
    }
    if (rv != EDGE_OK) {
        goto out;
    }
    /* A second document would be ignored by the loader; refuse rather than guess. */
    if (!yaml_parser_load(&parser, &extra)) {
        rv = EDGE_ECONFIG;
        edge__errmsg_set(errmsg, errmsg_len, "%s:%lu: YAML syntax error: %s", name,
               (unsigned long)parser.problem_mark.line + 1ul,
               parser.problem != NULL ? parser.problem : "unknown");
        goto out;
    }
    yaml_node_t *extra_root = yaml_document_get_root_node(&extra);
    unsigned long extra_line = (unsigned long)extra.start_mark.line + 1ul;
    yaml_document_delete(&extra);
    if (extra_root != NULL) {
        rv = EDGE_ECONFIG;
        edge__errmsg_set(errmsg, errmsg_len, "%s:%lu: only one YAML document is allowed", name, extra_line);
        goto out;
    }
    *out = x.c;
    x.c = NULL;
    rv = EDGE_OK;
out:
    if (have_doc) {
        yaml_document_delete(&doc);
    }
    yaml_parser_delete(&parser);
    edge_conf_free(x.c);
    return rv;
}

int edge_conf_load(const char *path, struct edge_conf **out, char *errmsg, size_t errmsg_len)
{
    char *text = NULL;
    size_t len = 0;
    int rv;

    *out = NULL;
    rv = edge__read_file(path, CONF_FILE_MAX, &text, &len, errmsg, errmsg_len);
    if (rv != EDGE_OK) {
        return rv;
    }
    rv = edge_conf_parse(path, text, len, out, errmsg, errmsg_len);
    edge_free(text);
    return rv;
}

void edge_conf_free(struct edge_conf *c)
{
    if (c == NULL) {
        return;
    }
    for (size_t i = 0; i < c->n_regions; i++) {
        edge_free(c->regions[i].id);
        edge_free(c->regions[i].listen);
        edge_free(c->regions[i].url);
        edge_free(c->regions[i].data_dir);
        edge_free(c->regions[i].tls_cert);
        edge_free(c->regions[i].tls_key);
    }
    edge_free(c->ca_file);
    for (size_t i = 0; i < c->n_tables; i++) {
        edge_free(c->tables[i].name);
    }
    edge_free(c->regions);
    edge_free(c->tables);
    edge_free(c->cluster_name);
    if (c->cluster_secret != NULL) {
        memset(c->cluster_secret, 0, strlen(c->cluster_secret));
    }
    edge_free(c->cluster_secret);
    edge_free(c->conflict_resolution);
    edge_free(c->jwt_public_key_file);
    edge__conf_router_free(c);
    edge_free(c->sessions.key_file);
    edge__conf_crdt_free(c);
    edge_free(c);
}

const struct edge_conf_region *edge_conf_region_find(const struct edge_conf *c, const char *id)
{
    for (size_t i = 0; c != NULL && id != NULL && i < c->n_regions; i++) {
        if (strcmp(c->regions[i].id, id) == 0) {
            return &c->regions[i];
        }
    }
    return NULL;
}

enum edge_consistency edge_conf_table_consistency(const struct edge_conf *c, const char *table)
{
    for (size_t i = 0; table != NULL && i < c->n_tables; i++) {
        if (strcmp(c->tables[i].name, table) == 0) {
            return c->tables[i].level;
        }
    }
    return c->consistency;
}
