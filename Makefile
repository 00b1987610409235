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
#   tests/servers/NAME.c  -> bin/tests/NAME (helper servers for tests)
CC      ?= cc
CFLAGS  ?= -O2 -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -pthread -MMD -MP -Icommon
LDFLAGS += -pthread

PKGS_BASE  := jansson
PKGS_EVENT := libevent_core libevent_pthreads
pkgcflags   = $(shell pkg-config --cflags $(1) 2>/dev/null)
pkglibs     = $(shell pkg-config --libs $(1) 2>/dev/null)
LIBS_BASE  = $(call pkglibs,$(PKGS_BASE)) -lm
LIBS_EVENT = $(call pkglibs,$(PKGS_EVENT)) $(LIBS_BASE)
LIBS_TEST  = $(call pkglibs,cmocka) $(LIBS_BASE)
CFLAGS    += $(call pkgcflags,$(PKGS_BASE) $(PKGS_EVENT) cmocka)

COMMON_SRC   := $(wildcard common/*.c)
THREADED_LIB := $(wildcard threaded/lib/*.c)
ASYNC_LIB    := $(wildcard async/lib/*.c)
TEST_LIB     := $(wildcard tests/lib/*.c)
THREADED_BIN := $(patsubst threaded/%.c,bin/threaded-%,$(wildcard threaded/*.c))
ASYNC_BIN    := $(patsubst async/%.c,bin/async-%,$(wildcard async/*.c))
TOOL_BIN     := $(patsubst tools/%.c,bin/%,$(wildcard tools/*.c))
BENCH_BIN    := $(patsubst bench/%.c,bin/bench/%,$(wildcard bench/*.c))
LOADGEN_BIN  := $(if $(wildcard loadgen/*.c),bin/loadgen)
TEST_BIN     := $(patsubst tests/%.c,bin/tests/%,$(wildcard tests/test_*.c)) \
                $(patsubst tests/servers/%.c,bin/tests/%,$(wildcard tests/servers/*.c))

obj = $(patsubst %.c,build/%.o,$(1))
LIBTVSA := build/libtvsa.a
ALL_BIN := $(THREADED_BIN) $(ASYNC_BIN) $(TOOL_BIN) $(BENCH_BIN) $(LOADGEN_BIN) $(TEST_BIN)

.PHONY: all deps test check bench fuzz clean
all: deps
	@$(MAKE) --no-print-directory binaries

.PHONY: binaries
binaries: $(ALL_BIN)

# Installs missing Debian packages (quiet when nothing is missing).
deps:
	@scripts/install-deps.sh

build/tests/%.o: CFLAGS += -Itests/lib -Itests

build/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c -o $@ $<

$(LIBTVSA): $(call obj,$(COMMON_SRC))
	@mkdir -p $(dir $@)
	rm -f $@ && $(AR) rcs $@ $^

bin/threaded-%: build/threaded/%.o $(call obj,$(THREADED_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_BASE)

bin/async-%: build/async/%.o $(call obj,$(ASYNC_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

bin/loadgen: $(call obj,$(wildcard loadgen/*.c)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

bin/bench/%: build/bench/%.o
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^

bin/tests/test_%: build/tests/test_%.o $(call obj,$(TEST_LIB)) $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST)

bin/tests/%: build/tests/servers/%.o $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_BASE)

bin/%: build/tools/%.o $(LIBTVSA)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_EVENT)

# Every test binary and every tests/*.sh; a summary at the end, non-zero exit if any failed.
test: all
	@tests/run.sh

bench: all
	@scripts/bench.sh

# Sanitizer builds of the suite (scripts/check.sh), fuzzers (scripts/fuzz.sh, FUZZ_SECONDS).
check: deps
	@scripts/check.sh

fuzz: deps
	@scripts/fuzz.sh

clean:
	rm -rf build bin

-include $(shell find build -name '*.d' 2>/dev/null)
