/* The scenario table of bin/loadgen. Registering a scenario is one line in LG_SCENARIO_LIST
 * (`X(scn_NAME) \`, before the end marker); see SCENARIOS.md. Order = order in --help. */
#include <stddef.h>
#include <string.h>

#include "scenario.h"

#define LG_SCENARIO_LIST \
    X(scn_echo)          \
    X(scn_hold)          \
    X(scn_churn)         \
    X(scn_udp)           \
    X(scn_dns)           \
    X(scn_dns_tcp)       \
    X(scn_abuse)         \
    X(scn_chat)          \
    /* end of list */

#define X(s) extern const struct lg_scenario s;
LG_SCENARIO_LIST
#undef X

#define X(s) &s,
const struct lg_scenario *const lg_scenarios[] = {LG_SCENARIO_LIST NULL};
#undef X

const struct lg_scenario *lg_scenario_find(const char *name)
{
    for (int i = 0; lg_scenarios[i]; i++)
        if (strcmp(lg_scenarios[i]->name, name) == 0)
            return lg_scenarios[i];
    return NULL;
}
