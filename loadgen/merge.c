/* `loadgen merge`: see merge.h and docs/metrics.md "Merging runs". */
#include "merge.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lgjson.h"
#include "result.h"
#include "scenario.h"

#define MERGE_MAX_INPUTS 256
#define MERGE_COUNT_MAX 100000000 /* an input's threads or connections: far above any real run */

static const char *get_str(const json_t *o, const char *key)
{
    const char *s = json_string_value(json_object_get(o, key));
    return s ? s : "";
}

/* The merged run's configuration, from the first input's and the sums over all. Strings
 * point into docs[0]. 0, or -1 with err filled. */
static int merged_config(json_t *const *docs, int n, struct lg_config *cfg, char *err,
                         size_t errlen)
{
    json_t *c0 = json_object_get(docs[0], "config");
    memset(cfg, 0, sizeof *cfg);
    const char *scenario = get_str(docs[0], "scenario");
    cfg->scn = lg_scenario_find(scenario);
    if (cfg->scn == NULL) {
        snprintf(err, errlen, "unknown scenario '%s'", scenario);
        return -1;
    }
    /* chat: one room whose deliveries are counted against the senders of one process;
     * abuse: populations fixed per process. Their figures do not add up across inputs. */
    if (cfg->scn->single_process) {
        snprintf(err, errlen, "the %s scenario's figures cannot be merged exactly", scenario);
        return -1;
    }
    snprintf(cfg->target, sizeof cfg->target, "%s", get_str(docs[0], "target"));
    cfg->nsteps = (int)json_array_size(json_object_get(docs[0], "steps"));
    if (cfg->nsteps > LG_MAX_STEPS || cfg->nsteps < 1) {
        snprintf(err, errlen, "%d steps: want 1..%d", cfg->nsteps, LG_MAX_STEPS);
        return -1;
    }
    cfg->duration_s = json_number_value(json_object_get(c0, "duration_s"));
    cfg->size = (long)json_integer_value(json_object_get(c0, "size"));
    cfg->think_ms = (long)json_integer_value(json_object_get(c0, "think_ms"));
    cfg->connect_rate = (long)json_integer_value(json_object_get(c0, "connect_rate"));
    cfg->max_connecting = (long)json_integer_value(json_object_get(c0, "max_connecting"));
    cfg->connect_timeout_ms = (long)json_integer_value(json_object_get(c0, "connect_timeout_ms"));
    cfg->timeout_ms = (long)json_integer_value(json_object_get(c0, "timeout_ms"));
    cfg->quiet = 1;
    const char *key;
    json_t *v;
    json_object_foreach(json_object_get(c0, "opts"), key, v) {
        if (cfg->nopts == LG_MAX_OPTS || !json_is_string(v))
            break;
        cfg->opt_key[cfg->nopts] = key;
        cfg->opt_val[cfg->nopts++] = json_string_value(v);
    }
    const char *mode = get_str(c0, "mode");
    for (int k = 0; k < n; k++) {
        json_t *c = json_object_get(docs[k], "config");
        if (strcmp(get_str(docs[k], "schema"), "tvsa-loadgen/1") != 0 ||
            strcmp(get_str(docs[k], "scenario"), scenario) != 0 ||
            strcmp(get_str(c, "mode"), mode) != 0) {
            snprintf(err, errlen, "input %d: not a tvsa-loadgen/1 %s run in %s loop like the first",
                     k + 1, scenario, mode);
            return -1;
        }
        if ((int)json_array_size(json_object_get(docs[k], "steps")) != cfg->nsteps) {
            snprintf(err, errlen, "input %d has %zu steps, the first %d", k + 1,
                     json_array_size(json_object_get(docs[k], "steps")), cfg->nsteps);
            return -1;
        }
        /* Sums of counts that loadgen itself bounds (MERGE_COUNT_MAX): a crafted input cannot
         * make them overflow. */
        json_int_t threads = json_integer_value(json_object_get(c, "threads"));
        if (threads < 0 || threads > MERGE_COUNT_MAX) {
            snprintf(err, errlen, "input %d: threads %lld out of range", k + 1, (long long)threads);
            return -1;
        }
        cfg->threads += (long)threads;
        cfg->rate += json_number_value(json_object_get(c, "rate"));
        for (int i = 0; i < cfg->nsteps; i++) {
            json_t *t = json_object_get(json_object_get(json_array_get(
                                            json_object_get(docs[k], "steps"), (size_t)i),
                                        "connections"), "target");
            json_int_t target = json_integer_value(t);
            if (target < 0 || target > MERGE_COUNT_MAX) {
                snprintf(err, errlen, "input %d, step %d: connections %lld out of range", k + 1,
                         i + 1, (long long)target);
                return -1;
            }
            cfg->connections[i] += (long)target;
        }
    }
    /* The scenario's own settings (dns: the names and zone files) as the run had them. */
    if (cfg->scn->check && cfg->scn->check(cfg, err, errlen) < 0)
        return -1;
    return 0;
}

/* The `merged` object: which inputs, from which hosts, started when. Each input's
 * `start_offset_us` is how much later its first step began than the earliest input's, by the
 * inputs' own clocks: clock offsets and wake-up delays together (with one --start-at for all,
 * mostly the offsets). */
static json_t *inputs_json(json_t *const *docs, const char *const *names, int n)
{
    json_t *inputs = json_array(), *hosts = json_array();
    json_int_t first = 0, last = 0;
    for (int k = 0; k < n; k++) {
        json_int_t w = json_integer_value(
            json_object_get(json_object_get(docs[k], "start"), "wall_us"));
        if (w > 0 && (first == 0 || w < first))
            first = w;
        if (w > last)
            last = w;
    }
    for (int k = 0; k < n; k++) {
        json_t *start = json_object_get(docs[k], "start");
        json_t *host = json_object_get(docs[k], "host");
        json_int_t w = json_integer_value(json_object_get(start, "wall_us"));
        json_array_append_new(inputs, json_pack("{s:s, s:O, s:O, s:o}", "file", names[k],
                                                "host", host ? host : json_null(),
                                                "start", start ? start : json_null(),
                                                "start_offset_us", w > 0 && first > 0 ?
                                                json_integer(w - first) : json_null()));
        /* An input that is itself a merge brings its own hosts. */
        json_t *inner = json_object_get(json_object_get(docs[k], "merged"), "hosts");
        if (inner)
            json_array_extend(hosts, inner);
        else
            json_array_append_new(hosts, host ? json_incref(host) : json_null());
    }
    return json_pack("{s:i, s:o, s:o, s:I}", "count", n, "inputs", inputs, "hosts", hosts,
                     "start_spread_us", first > 0 ? last - first : (json_int_t)0);
}

json_t *lg_merge_docs(json_t *const *docs, const char *const *names, int n, char *err,
                      size_t errlen)
{
    struct lg_config cfg;
    if (n < 1) {
        snprintf(err, errlen, "nothing to merge");
        return NULL;
    }
    if (merged_config(docs, n, &cfg, err, errlen) < 0)
        return NULL;
    struct lg_step_result *sum = malloc(sizeof *sum), *one = malloc(sizeof *one);
    json_t *steps = json_array();
    int interrupted = 0, ok = sum && one;
    for (int i = 0; ok && i < cfg.nsteps; i++) {
        memset(sum, 0, sizeof *sum);
        const json_t *server = NULL;
        long server_est = 0;
        for (int k = 0; ok && k < n; k++) {
            json_t *st = json_array_get(json_object_get(docs[k], "steps"), (size_t)i);
            char e2[200];
            if (lg_step_read(st, one, e2, sizeof e2) < 0) {
                snprintf(err, errlen, "%s step %d: %s", names[k], i + 1, e2);
                ok = 0;
                break;
            }
            lg_step_add(sum, one);
            /* The server serves every input: its figures once, from the first that has it. */
            if (server == NULL && json_object_get(st, "server")) {
                server = json_object_get(st, "server");
                server_est = one->established;
            }
        }
        if (!ok)
            break;
        json_t *step = lg_step_json(&cfg, sum, NULL);
        if (server)
            json_object_set_new(step, "server", lg_server_rescale(server, server_est,
                                                                  sum->st.completed,
                                                                  sum->established));
        json_array_append_new(steps, step);
    }
    free(sum);
    free(one);
    if (!ok) {
        json_decref(steps);
        return NULL;
    }
    for (int k = 0; k < n; k++)
        interrupted |= json_is_true(json_object_get(docs[k], "interrupted"));
    return json_pack("{s:s, s:s, s:s, s:o, s:o, s:b, s:o}", "schema", "tvsa-loadgen/1",
                     "scenario", cfg.scn->name, "target", cfg.target,
                     "config", lg_config_json(&cfg), "steps", steps,
                     "interrupted", interrupted, "merged", inputs_json(docs, names, n));
}

static void merge_usage(FILE *out)
{
    fprintf(out, "usage: loadgen merge [--json OUT] A.json B.json ...\n"
                 "  merges tvsa-loadgen/1 runs made at the same time by separate loadgen\n"
                 "  processes or hosts: counters summed, histograms merged bucket by bucket,\n"
                 "  percentiles recomputed (docs/metrics.md). Output on stdout or --json OUT.\n");
}

int lg_merge_main(int argc, char **argv)
{
    static const struct option mopts[] = {
        {"json", required_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *out = NULL;
    int opt;
    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, "", mopts, NULL)) != -1) {
        if (opt == 'j') {
            out = optarg;
        } else if (opt == 'h') {
            merge_usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "loadgen merge: unknown option or missing value\n");
            merge_usage(stderr);
            return 2;
        }
    }
    int n = argc - optind;
    if (n < 1 || n > MERGE_MAX_INPUTS) {
        fprintf(stderr, "loadgen merge: want 1..%d input files\n", MERGE_MAX_INPUTS);
        merge_usage(stderr);
        return 2;
    }
    json_t **docs = calloc((size_t)n, sizeof *docs);
    int rc = docs ? 0 : 1;
    for (int k = 0; rc == 0 && k < n; k++) {
        json_error_t je;
        docs[k] = json_load_file(argv[optind + k], 0, &je);
        if (docs[k] == NULL) {
            fprintf(stderr, "loadgen merge: %s: %s\n", argv[optind + k], je.text);
            rc = 2;
        }
    }
    char err[256];
    json_t *doc = rc ? NULL : lg_merge_docs(docs, (const char *const *)argv + optind, n, err,
                                            sizeof err);
    if (rc == 0 && doc == NULL) {
        fprintf(stderr, "loadgen merge: %s\n", err);
        rc = 2;
    }
    if (doc && lg_json_write(doc, out) < 0) {
        fprintf(stderr, "loadgen merge: cannot write the JSON to %s: %s\n",
                out ? out : "stdout", strerror(errno));
        rc = 1;
    }
    json_decref(doc);
    for (int k = 0; docs && k < n; k++)
        json_decref(docs[k]);
    free(docs);
    return rc;
}
