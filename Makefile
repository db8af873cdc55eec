# snapd: one non-recursive Makefile for the whole tree.
#
# Every module directory (common, format, catalog, snapd, restore) becomes a
# static library build/lib<module>.a made of all its .c files except main.c.
# Programs and tests link against those libraries; nothing descends into
# subdirectories with another make.
#
#   make            build the programs and the test guest
#   make check      install what is missing, build, run unit and integration tests
#   make check-asan the same tests, built with ASan and UBSan
#   make demo       install what is missing, build, run the demonstration
#   make bench      install what is missing, build, run bench/bench.sh
#   make lint       mandoc -Tlint over man/, cppcheck over the sources
#   make fuzz       build the libFuzzer targets (clang)
#   make clean

CC       ?= cc
BUILD    ?= build
O        := $(BUILD)

WARN     := -Wall -Wextra -Wpedantic -Wshadow -Wformat=2 \
            -Wstrict-prototypes -Wmissing-prototypes -Wold-style-definition \
            -Wpointer-arith -Wwrite-strings -Wvla -Wundef \
            -Wimplicit-fallthrough -Wcast-qual -Wswitch-enum -Wno-switch-enum
ifneq ($(CI),)
WERROR   ?= 1
endif
ifeq ($(WERROR),1)
WARN     += -Werror
endif

OPT      ?= -O2 -g
CPPFLAGS += -I. -D_GNU_SOURCE
CFLAGS   += -std=c11 $(OPT) $(WARN) -MMD -MP -fno-strict-aliasing
LDLIBS   += -lzstd -laio -lxxhash -lsqlite3 -ljansson -lpthread -lm -lnettle

MODULES  := snapd restore catalog format common
# Link order: dependants first.
LIBS     := $(foreach m,$(MODULES),$(O)/lib$(m).a)

define module_rules
$(1)_SRC := $$(filter-out $(1)/main.c,$$(wildcard $(1)/*.c))
$(1)_OBJ := $$(patsubst %.c,$(O)/%.o,$$($(1)_SRC))
$(O)/lib$(1).a: $$($(1)_OBJ)
	@mkdir -p $$(@D)
	$$(AR) rcs $$@ $$^
endef
$(foreach m,$(MODULES),$(eval $(call module_rules,$(m))))

# An empty module still yields a valid (empty) archive.
$(O)/lib%.a:
	@mkdir -p $(@D)
	$(AR) rcs $@

$(O)/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

# --- programs ---------------------------------------------------------------

PROGRAMS :=
ifneq ($(wildcard snapd/main.c),)
PROGRAMS += $(O)/bin/snapd
$(O)/bin/snapd: $(O)/snapd/main.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif

SNAPCTL_SRC := $(wildcard tools/*.c)
ifneq ($(SNAPCTL_SRC),)
PROGRAMS += $(O)/bin/snapctl
$(O)/bin/snapctl: $(patsubst %.c,$(O)/%.o,$(SNAPCTL_SRC)) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)
endif

# --- test guest ---------------------------------------------------------------
# A freestanding multiboot kernel; see tests/guest/README.md.
GUEST    := $(O)/guest/snapguest.elf
-include tests/guest/guest.mk

# --- tests --------------------------------------------------------------------

# Unit tests: tests/unit/test_<name>.c, one cmocka program each.
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(patsubst tests/unit/%.c,$(O)/tests/%,$(UNIT_SRC))

# Shared test code (the QEMU harness and helpers) in tests/harness/.
HARNESS_SRC := $(wildcard tests/harness/*.c)
HARNESS_LIB := $(O)/libharness.a
$(HARNESS_LIB): $(patsubst %.c,$(O)/%.o,$(HARNESS_SRC))
	@mkdir -p $(@D)
	$(AR) rcs $@ $^

# Integration tests: tests/integration/itest_<name>.c, cmocka programs that
# start real QEMU with the test guest.
ITEST_SRC  := $(wildcard tests/integration/itest_*.c)
ITEST_BIN  := $(patsubst tests/integration/%.c,$(O)/tests/%,$(ITEST_SRC))

$(O)/tests/%: $(O)/tests/unit/%.o $(HARNESS_LIB) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(O)/tests/itest_%: $(O)/tests/integration/itest_%.o $(HARNESS_LIB) $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# --- fuzz targets ---------------------------------------------------------------
# tests/fuzz/fuzz_<name>.c is a libFuzzer target; its seed corpus lives in
# tests/fuzz/corpus/<name>/. "make fuzz" builds them with clang into
# build-fuzz/; "make fuzz-smoke" runs each briefly over its corpus (part of
# "make check"); "make fuzz-run NAME=x SECONDS=600" fuzzes one for longer.
FUZZ_SRC   := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(FUZZ_SRC))
FUZZ_FLAGS := -O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer
FUZZ_BIN   := $(patsubst %,$(O)/fuzz/fuzz_%,$(FUZZ_NAMES))

$(O)/fuzz/fuzz_%: $(O)/tests/fuzz/fuzz_%.o $(LIBS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)

fuzz-bins: $(FUZZ_BIN)

fuzz: deps
	@$(MAKE) --no-print-directory BUILD=build-fuzz CC=clang OPT="$(FUZZ_FLAGS)" \
		WERROR=0 fuzz-bins

fuzz-smoke: fuzz
	@scripts/fuzz.sh smoke build-fuzz $(FUZZ_NAMES)

fuzz-run: fuzz
	@scripts/fuzz.sh run build-fuzz $(NAME) $(or $(SECONDS),600)

ifneq ($(FUZZ_SRC),)
ifeq ($(BUILD),build)
EXTRA_CHECKS += scripts/fuzz-check.sh
endif
endif

# --- top-level targets --------------------------------------------------------

.SECONDARY:
.PHONY: fuzz fuzz-bins fuzz-smoke fuzz-run check-nodeps tests all deps check check-unit check-integration check-asan demo lint fuzz clean
.DEFAULT_GOAL := all

all: $(PROGRAMS) $(GUEST_TARGET)

deps:
	@scripts/deps.sh

tests: all $(UNIT_BIN) $(ITEST_BIN)

check: deps
	@$(MAKE) --no-print-directory tests
	@SNAP_BUILD=$(O) scripts/run-tests.sh $(UNIT_BIN) $(ITEST_BIN) $(EXTRA_CHECKS)

check-unit: deps
	@$(MAKE) --no-print-directory all $(UNIT_BIN)
	@SNAP_BUILD=$(O) scripts/run-tests.sh $(UNIT_BIN)

ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
              -fno-sanitize-recover=undefined
check-asan: deps
	@$(MAKE) --no-print-directory BUILD=build-asan OPT="$(ASAN_FLAGS)" \
		LDFLAGS="$(LDFLAGS) -fsanitize=address,undefined" check-nodeps

check-nodeps:
	@$(MAKE) --no-print-directory tests
	@SNAP_BUILD=$(O) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		scripts/run-tests.sh $(UNIT_BIN) $(ITEST_BIN) $(EXTRA_CHECKS)

demo: deps
	@$(MAKE) --no-print-directory all
	@SNAP_BUILD=$(O) scripts/demo.sh

# The benchmarks against QEMU, libvirt and the machine's limits; never part
# of "make check". bench/bench.sh installs fio and libvirt itself.
.PHONY: bench
bench: deps
	@$(MAKE) --no-print-directory all
	@SNAP_BUILD=$(O) nice -n 10 bench/bench.sh

MAN_PAGES := $(wildcard man/*.[1-9])
CPPCHECK_SRC := $(wildcard common/*.c format/*.c catalog/*.c snapd/*.c restore/*.c tools/*.c)
lint: deps
	@set -e; for m in $(MAN_PAGES); do mandoc -Tlint -Wwarning $$m; done; \
		echo "mandoc: $(words $(MAN_PAGES)) pages clean"
	@cppcheck --quiet --error-exitcode=1 --std=c11 --enable=warning,portability,performance \
		--inline-suppr -I. -D_GNU_SOURCE --suppress=missingIncludeSystem $(CPPCHECK_SRC)
	@echo "cppcheck: $(words $(CPPCHECK_SRC)) files clean"

clean:
	rm -rf build build-asan build-fuzz

-include $(shell find $(O) -name '*.d' 2>/dev/null)
