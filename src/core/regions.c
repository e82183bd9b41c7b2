/* SPDX-License-Identifier: MIT */
/* Strict loader for deployment/regions.json (jansson): the region catalogue with
 * coordinates and the round-trip latency matrix that --emulate-wan uses. Split from
 * conf.c, which loads the YAML cluster configuration; both report errors the same way. */
#include "core/conf.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/alloc.h"
#include "core/conf_int.h"
#include "core/err.h"

/* ------------------------------------------------------------------------------------
 * Region catalogue (regions.json)
 * ---------------------------------------------------------------------------------- */

static int region_index(const struct edge_regions *r, const char *id, size_t *out)
{
    for (size_t i = 0; r != NULL && id != NULL && i < r->n_regions; i++) {
        if (strcmp(r->regions[i].id, id) == 0) {
            *out = i;
            return 1;
        }
    }
    return 0;
}

static int json_num(json_t *o, const char *key, double lo, double hi, double *out)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v)) {
        return 0;
    }
    *out = json_number_value(v);
    return *out >= lo && *out <= hi;
}

static int parse_region_info(const char *path, json_t *o, size_t i, struct edge_regions *r,
                             char *errmsg, size_t errmsg_len)
{
    static const char *const keys[] = {"id", "name", "lat", "lon", "cost_per_gb", NULL};
    struct edge_region_info *ri = &r->regions[i];
    const char *key;
    json_t *val;

    if (!json_is_object(o)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu]: expected an object", path, i);
        return EDGE_ECONFIG;
    }
    json_object_foreach(o, key, val)
    {
        int ok = 0;
        for (const char *const *k = keys; *k != NULL; k++) {
            ok |= strcmp(*k, key) == 0;
        }
        if (!ok) {
            edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].%s: unknown key", path, i, key);
            return EDGE_ECONFIG;
        }
    }
    const char *id = json_string_value(json_object_get(o, "id"));
    const char *name = json_string_value(json_object_get(o, "name"));
    if (!edge__conf_valid_region_id(id)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].id: expected a region id of [a-z0-9-]+",
               path, i);
        return EDGE_ECONFIG;
    }
    size_t dup;
    if (region_index(r, id, &dup)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].id: duplicate region id '%s'", path, i, id);
        return EDGE_ECONFIG;
    }
    if (name == NULL || name[0] == '\0') {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].name: expected a non-empty string", path, i);
        return EDGE_ECONFIG;
    }
    if (!json_num(o, "lat", -90, 90, &ri->lat)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].lat: expected a number in -90..90", path, i);
        return EDGE_ECONFIG;
    }
    if (!json_num(o, "lon", -180, 180, &ri->lon)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].lon: expected a number in -180..180", path,
               i);
        return EDGE_ECONFIG;
    }
    if (!json_num(o, "cost_per_gb", 0, 1e6, &ri->cost_per_gb)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions[%zu].cost_per_gb: expected a number >= 0", path,
               i);
        return EDGE_ECONFIG;
    }
    ri->id = edge_strdup(id);
    ri->name = edge_strdup(name);
    r->n_regions = i + 1;
    return ri->id != NULL && ri->name != NULL ? EDGE_OK : EDGE_ENOMEM;
}

/* latency_ms: {"a": {"b": 140, ...}, ...}; each unordered pair once, or twice with
 * the same value (a matrix written out in full is fine, a contradictory one is not). */
static int parse_latency(const char *path, json_t *lat, struct edge_regions *r, char *errmsg,
                         size_t errmsg_len)
{
    const char *a, *b;
    json_t *row, *v;
    size_t n = r->n_regions;

    if (!json_is_object(lat)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms: expected an object of objects", path);
        return EDGE_ECONFIG;
    }
    json_object_foreach(lat, a, row)
    {
        size_t ia, ib;
        if (!region_index(r, a, &ia)) {
            edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms.%s: unknown region id", path, a);
            return EDGE_ECONFIG;
        }
        if (!json_is_object(row)) {
            edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms.%s: expected an object", path, a);
            return EDGE_ECONFIG;
        }
        json_object_foreach(row, b, v)
        {
            if (!region_index(r, b, &ib)) {
                edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms.%s.%s: unknown region id", path, a, b);
                return EDGE_ECONFIG;
            }
            double ms = json_number_value(v);
            if (!json_is_number(v) || ms < 0 || ms > 1e6) {
                edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms.%s.%s: expected a number of ms >= 0",
                       path, a, b);
                return EDGE_ECONFIG;
            }
            if (ia == ib) {
                if (ms != 0) {
                    edge__errmsg_set(errmsg, errmsg_len, "%s: latency_ms.%s.%s: must be 0", path, a, b);
                    return EDGE_ECONFIG;
                }
                continue;
            }
            double prev = r->rtt_ms[ia * n + ib];
            if (prev >= 0 && prev != ms) {
                edge__errmsg_set(errmsg, errmsg_len,
                       "%s: latency_ms.%s.%s: %g contradicts %g given for %s<->%s", path, a, b,
                       ms, prev, b, a);
                return EDGE_ECONFIG;
            }
            r->rtt_ms[ia * n + ib] = ms;
            r->rtt_ms[ib * n + ia] = ms;
        }
    }
    return EDGE_OK;
}

int edge_regions_load(const char *path, struct edge_regions **out, char *errmsg,
                      size_t errmsg_len)
{
    json_error_t jerr;
    json_t *root = NULL;
    struct edge_regions *r = NULL;
    int rv = EDGE_ECONFIG;

    *out = NULL;
    root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (root == NULL) {
        rv = json_error_code(&jerr) == json_error_cannot_open_file ? EDGE_EIO : EDGE_ECONFIG;
        edge__errmsg_set(errmsg, errmsg_len, "%s:%d: %s", path, jerr.line < 1 ? 1 : jerr.line, jerr.text);
        goto out;
    }
    if (!json_is_object(root)) {
        edge__errmsg_set(errmsg, errmsg_len, "%s:1: expected a JSON object", path);
        goto out;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        if (strcmp(key, "regions") != 0 && strcmp(key, "latency_ms") != 0 &&
            strcmp(key, "description") != 0) {
            edge__errmsg_set(errmsg, errmsg_len, "%s: %s: unknown key", path, key);
            goto out;
        }
    }
    json_t *regs = json_object_get(root, "regions");
    if (!json_is_array(regs) || json_array_size(regs) == 0) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: regions: expected a non-empty array", path);
        goto out;
    }
    size_t n = json_array_size(regs);
    rv = EDGE_ENOMEM;
    r = edge_calloc(1, sizeof(*r));
    if (r == NULL || (r->regions = edge_calloc(n, sizeof(*r->regions))) == NULL ||
        (r->rtt_ms = edge_calloc(n * n, sizeof(double))) == NULL) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < n * n; i++) {
        r->rtt_ms[i] = i % (n + 1) == 0 ? 0.0 : -1.0; /* diagonal is i = k*(n+1) */
    }
    for (size_t i = 0; i < n; i++) {
        rv = parse_region_info(path, json_array_get(regs, i), i, r, errmsg, errmsg_len);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    json_t *lat = json_object_get(root, "latency_ms");
    if (lat != NULL) {
        rv = parse_latency(path, lat, r, errmsg, errmsg_len);
        if (rv != EDGE_OK) {
            goto out;
        }
    }
    *out = r;
    r = NULL;
    rv = EDGE_OK;
out:
    if (rv == EDGE_ENOMEM) {
        edge__errmsg_set(errmsg, errmsg_len, "%s: out of memory", path);
    }
    edge_regions_free(r);
    json_decref(root);
    return rv;
}

void edge_regions_free(struct edge_regions *r)
{
    if (r == NULL) {
        return;
    }
    for (size_t i = 0; r->regions != NULL && i < r->n_regions; i++) {
        edge_free(r->regions[i].id);
        edge_free(r->regions[i].name);
    }
    edge_free(r->regions);
    edge_free(r->rtt_ms);
    edge_free(r);
}

double edge_regions_rtt_ms(const struct edge_regions *r, const char *a, const char *b)
{
    size_t ia, ib;
    if (!region_index(r, a, &ia) || !region_index(r, b, &ib)) {
        return -1;
    }
    return r->rtt_ms[ia * r->n_regions + ib];
}
