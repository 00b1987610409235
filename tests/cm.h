/* The includes cmocka 1.x needs before <cmocka.h>, in the order it needs them. */
#ifndef TVSA_CM_H
#define TVSA_CM_H
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#endif
