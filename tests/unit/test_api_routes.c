/* SPDX-License-Identifier: MIT */
/* The route table and tests/client/routes.json list the same rows with the same auth
 * policy, so client/auth_routes (which walks the JSON list) covers every route. */
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "api/node_int.h"

/* tests/unit/test_api_routes.c -> tests/client/routes.json */
static json_t *load_list(void)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s", __FILE__);
    char *slash = strrchr(path, '/');
    assert_non_null(slash);
    *slash = '\0';
    slash = strrchr(path, '/');
    assert_non_null(slash);
    snprintf(slash, sizeof(path) - (size_t)(slash - path), "/client/routes.json");
    json_error_t err;
    json_t *root = json_load_file(path, 0, &err);
    if (root == NULL) fail_msg("%s: %s", path, err.text);
    return root;
}

static void test_table_matches_the_list(void **state)
{
    (void)state;
    json_t *root = load_list();
    json_t *list = json_object_get(root, "routes");
    assert_true(json_is_array(list));
    struct edge__api_route_info ri;
    size_t i = 0;
    for (; edge__api_route_describe(i, &ri); i++) {
        json_t *e = json_array_get(list, i);
        if (e == NULL) fail_msg("route %zu (%s %s) is missing from routes.json", i, ri.method, ri.path);
        const char *m = json_string_value(json_object_get(e, "method"));
        const char *k = json_string_value(json_object_get(e, "match"));
        const char *p = json_string_value(json_object_get(e, "path"));
        const char *a = json_string_value(json_object_get(e, "auth"));
        assert_non_null(m);
        assert_non_null(k);
        assert_non_null(p);
        assert_non_null(a);
        if (strcmp(m, ri.method) != 0 || strcmp(k, ri.match) != 0 || strcmp(p, ri.path) != 0 ||
            strcmp(a, ri.auth) != 0) {
            fail_msg("route %zu: table has %s %s '%s' auth=%s, routes.json has %s %s '%s' auth=%s", i, ri.method,
                     ri.match, ri.path, ri.auth, m, k, p, a);
        }
        json_t *probe = json_object_get(e, "probe");
        assert_non_null(json_string_value(json_object_get(probe, "path")));
    }
    assert_true(i > 0);
    if (json_array_size(list) != i) fail_msg("routes.json has %zu rows, the table %zu", json_array_size(list), i);
    /* Only /health, /version and the GET version probes are public. */
    for (size_t j = 0; edge__api_route_describe(j, &ri); j++) {
        if (strcmp(ri.auth, "none") == 0) {
            bool probe = strcmp(ri.method, "GET") == 0 &&
                         (strcmp(ri.path, "/v2") == 0 || strcmp(ri.path, "/v3") == 0 || strcmp(ri.path, "/v3-protobuf") == 0);
            assert_true(strcmp(ri.path, "/health") == 0 || strcmp(ri.path, "/version") == 0 || probe);
        }
    }
    json_decref(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table_matches_the_list),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
