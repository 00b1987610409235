/* `loadgen merge`: several tvsa-loadgen/1 documents (separate loadgen processes, hosts, or
 * the --procs workers) as one, exactly: counters summed, histograms merged bucket by bucket,
 * percentiles recomputed from the merged histograms. */
#ifndef TVSA_LG_MERGE_H
#define TVSA_LG_MERGE_H
#include <jansson.h>
#include <stddef.h>

/* Merges docs[0..n) (names[i] says where each came from) into a new document with a
 * `merged` object listing its inputs. NULL with err filled when they do not go together
 * (schema, scenario, mode, steps) or a scenario cannot be merged. */
json_t *lg_merge_docs(json_t *const *docs, const char *const *names, int n, char *err,
                      size_t errlen);

/* The subcommand: `loadgen merge [--json OUT] A.json B.json ...`. Returns the exit status:
 * 0, 2 on bad input, 1 when the result cannot be written. */
int lg_merge_main(int argc, char **argv);

#endif
