/* libFuzzer harness for the zone-file parser (scripts/fuzz.sh): no crash, and every name a zone
 * lists can be looked up again with its records. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "zone.h"

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_zone: invariant broken: %s\n", what);
        abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    struct zone *z = zone_parse((const char *)data, size, err, sizeof err);
    if (z == NULL) {
        check(err[0] != '\0', "an error has a message");
        return 0;
    }
    size_t total = 0;
    for (size_t i = 0; i < zone_names(z); i++) {
        size_t n;
        const struct dnswire_name *name = zone_name_at(z, i);
        check(name != NULL, "name_at in range");
        check(zone_lookup(z, name, &n) != NULL && n > 0, "a listed name is found");
        total += n;
    }
    check(total == zone_records(z), "records add up");
    zone_free(z);
    return 0;
}
