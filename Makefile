# tvsa build. Conventions (no need to edit this file to add a module or a binary):
#   common/*.c            -> build/libtvsa.a, linked into everything
#   threaded/lib/*.c      -> linked into every threaded binary
#   threaded/NAME.c       -> bin/threaded-NAME
#   async/lib/*.c         -> linked into every async binary (libevent)
#   async/NAME.c          -> bin/async-NAME
#   loadgen/*.c           -> bin/loadgen (libevent)
#   tools/NAME.c          -> bin/NAME (libevent)
#   bench/NAME.c          -> bin/bench/NAME (bare baselines, no libraries)
#   tests/lib/*.c         -> linked into every test binary
#   tests/test_NAME.c     -> bin/tests/test_NAME (cmocka; never libevent)
#   tests/servers/NAME.c  -> bin/tests/NAME (helper servers for tests; + threaded/lib/*.c)
# Output directories; scripts/check.sh builds sanitizer variants with other ones.
BIN     ?= bin
BUILD   ?= build
CC      ?= cc
# CFLAGS/LDFLAGS are the user's (optimisation, sanitizers); the project's own flags are
# separate so that `make CFLAGS=...` cannot drop them.
CFLAGS  ?= -O2 -g
LDFLAGS ?=
TVSA_CFLAGS = -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP -Icommon

PKGS_BASE  := jansson
PKGS_EVENT := libevent_core libevent_pthreads
pkgcflags   = $(shell pkg-config --cflags $(1) 2>/dev/null)
pkglibs     = $(shell pkg-config --libs $(1) 2>/dev/null)
LIBS_BASE  = $(call pkglibs,$(PKGS_BASE)) -lm
# async/lib/coro.c switches stacks with Boost.Context's fcontext (libboost-context-dev; no
# pkg-config file).
LIBS_CORO  = -lboost_context
LIBS_EVENT = $(call pkglibs,$(PKGS_EVENT)) $(LIBS_BASE)
LIBS_TEST  = $(call pkglibs,cmocka) $(LIBS_BASE)
TVSA_CFLAGS += $(call pkgcflags,$(PKGS_BASE) $(PKGS_EVENT) cmocka)

COMMON_SRC   := $(wildcard common/*.c)
THREADED_LIB := $(wildcard threaded/lib/*.c)
ASYNC_LIB    := $(wildcard async/lib/*.c)
TEST_LIB     := $(wildcard tests/lib/*.c)
THREADED_BIN := $(patsubst threaded/%.c,$(BIN)/threaded-%,$(wildcard threaded/*.c))
ASYNC_BIN    := $(patsubst async/%.c,$(BIN)/async-%,$(wildcard async/*.c))
TOOL_BIN     := $(patsubst tools/%.c,$(BIN)/%,$(wildcard tools/*.c))
BENCH_BIN    := $(patsubst bench/%.c,$(BIN)/bench/%,$(wildcard bench/*.c))
LOADGEN_BIN  := $(if $(wildcard loadgen/*.c),$(BIN)/loadgen)
TEST_BIN     := $(patsubst tests/%.c,$(BIN)/tests/%,$(wildcard tests/test_*.c)) \
                $(patsubst tests/servers/%.c,$(BIN)/tests/%,$(wildcard tests/servers/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
# Keep every object: a binary's own object (build/async/echo.o) comes from a pattern chain,
# so make deleted it as intermediate after a clean build, and the next make (whose -include
# of the .d files names it) compiled and linked 36 targets again with nothing changed.
.SECONDARY:
LIBTVSA := $(BUILD)/libtvsa.a
ALL_BIN := $(THREADED_BIN) $(ASYNC_BIN) $(TOOL_BIN) $(BENCH_BIN) $(LOADGEN_BIN) $(TEST_BIN)

.PHONY: all deps test check bench fuzz clean
all: deps
	@$(MAKE) --no-print-directory binaries

.PHONY: binaries
binaries: $(ALL_BIN)

# Installs missing Debian packages (quiet when nothing is missing).
deps:
	@scripts/install-deps.sh

$(BUILD)/tests/%.o: TVSA_CFLAGS += -Itests/lib -Itests -Ithreaded/lib

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(TVSA_CFLAGS) $(CFLAGS) -c -o $@ $<

$(LIBTVSA): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

$(BIN)/threaded-%: $(BUILD)/threaded/%.o $(call obj,$(THREADED_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_BASE)

$(BIN)/async-%: $(BUILD)/async/%.o $(call obj,$(ASYNC_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

$(BIN)/loadgen: $(call obj,$(wildcard loadgen/*.c)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

$(BIN)/bench/%: $(BUILD)/bench/%.o
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^

$(BIN)/tests/test_%: $(BUILD)/tests/test_%.o $(call obj,$(TEST_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_TEST)

$(BIN)/tests/%: $(BUILD)/tests/servers/%.o $(call obj,$(THREADED_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_BASE)

# The coroutine runtime needs no libevent, so its unit test links it alone (the one test that
# links an async/lib module); bin/switch-cost measures it.
# Every async binary links it too, since async/lib/*.c goes into each of them.
CORO_OBJ := $(call obj,async/lib/coro.c)
$(BIN)/tests/test_coro: $(CORO_OBJ)
$(BIN)/tests/test_coro: LIBS_TEST += $(LIBS_CORO)
$(BIN)/switch-cost: $(CORO_OBJ)
$(ASYNC_BIN) $(BIN)/switch-cost: LIBS_EVENT += $(LIBS_CORO)

$(BIN)/%: $(BUILD)/tools/%.o $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) -pthread $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

# Every test binary and every tests/*.sh; a summary at the end, non-zero exit if any failed.
test: all
	@TVSA_BIN=$(abspath $(BIN)) tests/run.sh

bench: all
	@scripts/bench.sh

# Sanitizer builds of the suite (scripts/check.sh), fuzzers (scripts/fuzz.sh, FUZZ_SECONDS).
check: deps
	@scripts/check.sh

fuzz:
	@scripts/install-deps.sh --fuzz
	@scripts/fuzz.sh

clean:
	rm -rf build bin

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
