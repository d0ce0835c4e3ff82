# orchlua - a plain, strict Makefile.  `make V=1` shows full commands.

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= cc
LUA     ?= lua5.4
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0)

MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
LIBDIR    := /usr/lib/$(MULTIARCH)
LUA_INC   := /usr/include/lua5.4

WARN    := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wpointer-arith -Wformat=2 -Wcast-qual -Wno-unused-parameter
# each object's header dependencies, written beside it (build/*.d)
DEPFLAGS := -MMD -MP
CFLAGS  ?= -O2 -g
ALL_CFLAGS := $(CFLAGS) $(WARN) -std=gnu99 -I$(LUA_INC) -Isrc -Ibuild \
              -DORCH_VERSION='"$(VERSION)"'
# Lua, cjson and libuv are linked statically; -E exports the Lua C API so
# that C modules (events/*.so, rocks) load into the binary.
STATIC_LIBS := $(LIBDIR)/liblua5.4-cjson.a $(LIBDIR)/liblua5.4.a $(LIBDIR)/libuv_a.a \
               $(LIBDIR)/libhttp_parser.a
LDLIBS  := $(STATIC_LIBS) -lm -ldl -lpthread -lrt
LDFLAGS ?=
ALL_LDFLAGS := $(LDFLAGS) -Wl,-E

SRC  := $(wildcard src/*.c)
OBJ  := $(patsubst src/%.c,build/%.o,$(SRC)) build/embedded.o
LUA_SRC := $(shell find lua -name '*.lua' | sort)
EVENT_SO := $(patsubst %.c,%.so,$(wildcard events/*.c))

ifeq ($(V),1)
Q :=
else
Q := @
endif

all: orchlua $(EVENT_SO) build/lua/orch/scan.so build/lua/orch/fs.so build/lua/orch/columns.so

orchlua: $(OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

build:
	$(Q)mkdir -p build

build/%.o: src/%.c | build
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) $(DEPFLAGS) -c -o $@ $<

# main.o bakes VERSION in: it is rebuilt whenever `git describe` says
# something new (a commit, a dirty tree), not only when main.c changes
build/version.stamp: FORCE | build
	$(Q)echo '$(VERSION)' | cmp -s - $@ || echo '$(VERSION)' > $@
build/main.o: build/version.stamp
FORCE:

build/embed: tools/embed.c | build
	$(Q)$(CC) -O1 -I$(LUA_INC) -o $@ $< $(LIBDIR)/liblua5.4.a -lm -ldl

# The HTML report's charting library, Debian's libjs-dygraphs, is compiled
# in as the modules orch.assets.dygraph_js/_css, so a report opens offline.
DYGRAPHS_DIR ?= /usr/share/javascript/dygraphs
ASSETS := orch.assets.dygraph_js=$(DYGRAPHS_DIR)/dygraph.min.js \
          orch.assets.dygraph_css=$(DYGRAPHS_DIR)/dygraph.min.css \
          orch.assets.report_js=lua/orch/assets/report.js \
          orch.assets.report_css=lua/orch/assets/report.css
# The manual pages, rendered to plain text here (groff, Debian's groff-base)
# and compiled in as orch.assets.man.<page>, so `orchlua help TOPIC` needs
# no man(1) on the machine under test.
MAN_PAGES := man/orchlua.1 man/orchlua-description.5 man/orch.3
MAN_TXT := $(patsubst man/%,build/man/%.txt,$(MAN_PAGES))
ASSETS += $(foreach p,$(MAN_PAGES),orch.assets.man.$(subst -,_,$(subst .,_,$(notdir $(p))))=build/man/$(notdir $(p)).txt)
ASSET_FILES := $(foreach a,$(ASSETS),$(word 2,$(subst =, ,$(a))))

build/embedded.c: build/embed $(LUA_SRC) $(ASSET_FILES)
	@echo "  EMBED   lua/ assets man/"
	$(Q)build/embed lua $@ $(LUA_SRC) $(ASSETS)

# -P-cbou: plain text, no bold or underline; -rHY=0: no word cut at a line's end
# (a name such as unref_setup_fixtures must stay searchable)
build/man/%.txt: man/% | build
	@command -v groff >/dev/null || { echo "orchlua: groff is missing: the manual is rendered at build time (Debian's groff-base); run make deps" >&2; exit 1; }
	@mkdir -p build/man
	@echo "  MAN     $<"
	$(Q)groff -man -rHY=0 -Tascii -P-cbou -ww $< >$@.tmp && mv $@.tmp $@

$(DYGRAPHS_DIR)/%:
	@echo "orchlua: $@ is missing: the HTML report embeds dygraphs (Debian's libjs-dygraphs); run make deps" >&2
	@exit 1

build/embedded.o: build/embedded.c
	$(Q)$(CC) -O0 -c -o $@ $<

# orch.scan, orch.fs and orch.columns for plain lua5.4 too (the unit specs
# read reports, find descriptions and print tables without the host), the
# same sources orchlua embeds
build/lua/orch/%.so: src/%.c | build
	@echo "  CC      $@"
	$(Q)mkdir -p build/lua/orch
	$(Q)$(CC) $(CFLAGS) $(WARN) -std=gnu99 -fPIC -shared -I$(LUA_INC) -o $@ $<

# C modules loaded into orchlua: built against the lua5.4 headers only.
events/%.so: events/%.c src/orch.h
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(WARN) -std=gnu99 -fPIC -shared -I$(LUA_INC) -Isrc -o $@ $<

# ---- dependencies ----------------------------------------------------------
DEB_PKGS := build-essential liblua5.4-dev lua5.4 lua-cjson-dev lua-cjson libuv1-dev \
            luarocks lua-busted lua-check lua-luv lua-expat libjs-dygraphs tmux chromium \
            clang libclang-rt-14-dev valgrind prometheus postgresql libpq-dev \
            libhttp-parser-dev redis-server redis-tools nginx-light curl faketime \
            yamllint wrk groff-base man-db systemd nodejs
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

deps:
	@missing=$$(for p in $(DEB_PKGS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	else echo "all build and test dependencies are installed"; fi

# ---- tests -----------------------------------------------------------------
test: all
	$(Q)sh spec/run.sh

bench: all
	$(Q)sh bench/run.sh
	$(Q)sh bench/report/run.sh

# the HTML report's own script and style (embedded as orch.assets.report_*)
lint-assets:
	$(Q)node --check lua/orch/assets/report.js
	$(Q)grep -q '"use strict"' lua/orch/assets/report.js
	$(Q)! grep -n 'innerHTML' lua/orch/assets/report.js

# the benchmark floor: the same workloads on libuv alone (bench/run.sh builds it)
bench/floor: bench/floor.c
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(WARN) -std=gnu99 -o $@ $< $(LIBDIR)/libuv_a.a -lm -ldl -lpthread -lrt

# ---- install ---------------------------------------------------------------
# `make install PREFIX=/usr DESTDIR=/tmp/pkg`; `make uninstall` with the same
# PREFIX and DESTDIR removes exactly the files listed here
# (spec/e2e/install_spec.lua checks both).
BINDIR  := $(PREFIX)/bin
MANDIR  := $(PREFIX)/share/man
INCDIR  := $(PREFIX)/include
DATADIR := $(PREFIX)/share/orchlua
EXAMPLE_EVENTS := $(sort $(wildcard events/*.lua) $(EVENT_SO))
EXAMPLE_DESCS  := $(sort $(wildcard descriptions/*.json))
INSTALLED := $(BINDIR)/orchlua $(INCDIR)/orch.h \
             $(foreach p,$(MAN_PAGES),$(MANDIR)/man$(subst .,,$(suffix $(p)))/$(notdir $(p))) \
             $(addprefix $(DATADIR)/,.orchlua $(EXAMPLE_EVENTS) $(EXAMPLE_DESCS))

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(INCDIR) $(DESTDIR)$(MANDIR)/man1 \
	  $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man5 \
	  $(DESTDIR)$(DATADIR)/events $(DESTDIR)$(DATADIR)/descriptions
	install -m 755 orchlua $(DESTDIR)$(BINDIR)/orchlua
	install -m 644 src/orch.h $(DESTDIR)$(INCDIR)/orch.h
	for p in $(MAN_PAGES); do install -m 644 $$p $(DESTDIR)$(MANDIR)/man$${p##*.}/ || exit 1; done
	install -m 644 $(EXAMPLE_EVENTS) $(DESTDIR)$(DATADIR)/events/
	install -m 644 $(EXAMPLE_DESCS) $(DESTDIR)$(DATADIR)/descriptions/
	install -m 644 .orchlua $(DESTDIR)$(DATADIR)/.orchlua

# the folders of orchlua's own are removed when empty; the shared ones
# (bin, include, share/man/manN) are left
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(DATADIR)/events $(DESTDIR)$(DATADIR)/descriptions $(DESTDIR)$(DATADIR) 2>/dev/null

clean:
	rm -rf build orchlua events/*.so

.PHONY: all deps test bench lint-assets install uninstall clean FORCE

# ---- hardening: sanitizers, fuzzing, valgrind, soak ------------------------
# clang with Debian's compiler-rt (libclang-rt-14-dev): ASan, UBSan, LSan and
# libFuzzer.  Everything lands in build/asan/ and build/fuzz/; nothing here
# changes how ./orchlua is built.
CLANG ?= clang
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize=function
SAN_CFLAGS := -O1 -g $(SAN_FLAGS) $(WARN) -std=gnu99 -I$(LUA_INC) -Isrc -Ibuild \
              -DORCH_VERSION='"$(VERSION)"'
ASAN_OBJ := $(patsubst src/%.c,build/asan/%.o,$(SRC)) build/embedded.o
# Every report goes to a file under build/asan/log/: the suite compares
# stderr word for word, and an empty folder after the run is the verdict.
# handle_segv/sigbus/sigfpe=0: orchlua's own crash handler (kill every
# process group, then die of the signal) is what the specs check; a memory
# error is still caught by the instrumentation, and a crash fails its spec.
SAN_LOG := $(CURDIR)/build/asan/log
SAN_ENV := ASAN_OPTIONS=log_path=$(SAN_LOG)/asan:detect_leaks=1:handle_segv=0:handle_sigbus=0:handle_sigfpe=0:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1:abort_on_error=0 \
           UBSAN_OPTIONS=log_path=$(SAN_LOG)/ubsan:print_stacktrace=1:halt_on_error=0 \
           LSAN_OPTIONS=suppressions=$(CURDIR)/spec/fuzz/lsan.supp:print_suppressions=0

build/asan build/fuzz:
	$(Q)mkdir -p $@

build/asan/%.o: src/%.c | build/asan
	@echo "  CC/SAN  $<"
	$(Q)$(CLANG) $(SAN_CFLAGS) $(DEPFLAGS) -c -o $@ $<

build/asan/orchlua: $(ASAN_OBJ)
	@echo "  LD/SAN  $@"
	$(Q)$(CLANG) $(SAN_FLAGS) -Wl,-E -o $@ $(ASAN_OBJ) $(LDLIBS)

# The whole suite against the sanitized binary (spec/helper.lua reads
# ORCHLUA_BIN; the C specs are built with the sanitizers too), then the
# verdict: no ASan, UBSan or LeakSanitizer report from any process.
check-asan: all build/asan/orchlua
	$(Q)rm -rf $(SAN_LOG) && mkdir -p $(SAN_LOG)
	$(Q)st=0; $(SAN_ENV) ORCHLUA_BIN=build/asan/orchlua CC=$(CLANG) \
	  SPEC_CFLAGS="$(SAN_FLAGS) -g" sh spec/run.sh || st=$$?; \
	if [ -n "$$(ls -A $(SAN_LOG))" ]; then \
	  echo "check-asan: sanitizer reports in build/asan/log:"; \
	  for f in $(SAN_LOG)/*; do echo "== $$f"; head -60 "$$f"; done; exit 1; \
	fi; \
	echo "check-asan: no sanitizer report"; exit $$st

.PHONY: check-asan

# libFuzzer harnesses (spec/fuzz/harness.c running spec/fuzz/<target>.lua in
# the real host).  `make fuzz FUZZ_SECONDS=N` runs each for N seconds on a
# corpus seeded from descriptions/ and spec/ (spec/fuzz/seed.sh) plus the
# kept inputs in spec/fuzz/regress/; a finding leaves its input in
# build/fuzz/crash-<target>-* and fails the target.
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := description writer
FUZZ_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=all \
              -fno-omit-frame-pointer -fno-sanitize=function
# JSONW_MAX_BYTES: the report encoder's per-record cap, 1 MiB instead of
# 16 so that a fuzz input reaches it in milliseconds (same code path)
FUZZ_CFLAGS := -O1 -g $(FUZZ_FLAGS) $(WARN) -std=gnu99 -I$(LUA_INC) -Isrc -Ibuild \
               -DORCH_VERSION='"$(VERSION)"' -DJSONW_MAX_BYTES='((size_t)1 << 20)'
FUZZ_OBJ := $(patsubst src/%.c,build/fuzz/%.o,$(filter-out src/main.c,$(SRC))) build/embedded.o
FUZZ_BINS := $(patsubst %,build/fuzz/fuzz_%,$(FUZZ_TARGETS))

build/fuzz/%.o: src/%.c | build/fuzz
	@echo "  CC/FUZZ $<"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(DEPFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/harness_%.o: spec/fuzz/harness.c | build/fuzz
	@echo "  CC/FUZZ $< ($*)"
	$(Q)$(CLANG) $(FUZZ_CFLAGS) $(DEPFLAGS) -fsanitize=fuzzer-no-link -DFUZZ_TARGET='"$*"' \
	  -DFUZZ_ROOT='"$(CURDIR)"' -c -o $@ $<

build/fuzz/fuzz_%: build/fuzz/harness_%.o $(FUZZ_OBJ)
	@echo "  LD/FUZZ $@"
	$(Q)$(CLANG) $(FUZZ_FLAGS) -fsanitize=fuzzer -Wl,-E -o $@ $< $(FUZZ_OBJ) $(LDLIBS)

# The writer harness with clang's source-based coverage (no sanitizer): its
# corpus replayed through it gives the encoder's C line coverage (llvm-cov).
# (The description fuzzer's code under test is all Lua: spec/fuzz/luacov.lua.)
COV_FLAGS := -O0 -g -fprofile-instr-generate -fcoverage-mapping
COV_OBJ := $(patsubst src/%.c,build/fuzz/cov/%.o,$(filter-out src/main.c,$(SRC))) build/embedded.o
COV_BINS := build/fuzz/cov_writer

build/fuzz/cov:
	$(Q)mkdir -p $@

build/fuzz/cov/%.o: src/%.c | build/fuzz/cov
	@echo "  CC/COV  $<"
	$(Q)$(CLANG) $(COV_FLAGS) $(WARN) $(DEPFLAGS) -std=gnu99 -I$(LUA_INC) -Isrc -Ibuild \
	  -DORCH_VERSION='"$(VERSION)"' -DJSONW_MAX_BYTES='((size_t)1 << 20)' -c -o $@ $<

build/fuzz/cov/harness_%.o: spec/fuzz/harness.c | build/fuzz/cov
	$(Q)$(CLANG) $(COV_FLAGS) $(WARN) $(DEPFLAGS) -std=gnu99 -I$(LUA_INC) -Isrc -DFUZZ_TARGET='"$*"' \
	  -DFUZZ_ROOT='"$(CURDIR)"' -c -o $@ $<

build/fuzz/cov_%: build/fuzz/cov/harness_%.o $(COV_OBJ)
	@echo "  LD/COV  $@"
	$(Q)$(CLANG) -fsanitize=fuzzer -fprofile-instr-generate -Wl,-E -o $@ $< $(COV_OBJ) $(LDLIBS)

fuzz-build: $(FUZZ_BINS) $(COV_BINS)

# Runs every target for FUZZ_SECONDS; prints executions and coverage (the
# fuzzer's own "cov:" for C edges and Lua line edges, the C line coverage of
# the code under test (llvm-cov), and the Lua line coverage of the modules
# under test (spec/fuzz/luacov.lua)).
fuzz: $(FUZZ_BINS) $(COV_BINS)
	$(Q)sh spec/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

.PRECIOUS: build/fuzz/%.o build/fuzz/harness_%.o build/fuzz/cov/%.o build/fuzz/cov/harness_%.o
.PHONY: fuzz fuzz-build

# the header dependencies the compiler wrote (-MMD -MP), for every build
-include $(wildcard build/*.d build/asan/*.d build/fuzz/*.d build/fuzz/cov/*.d)

# valgrind's memcheck on the seed's example and on a description using every
# feature (spec/e2e/valgrind_spec.lua, also part of make test): no error,
# nothing definitely or indirectly lost.
valgrind: all
	$(Q)busted --lua=$(LUA) spec/e2e/valgrind_spec.lua

# The bundled 72-hour soak rehearsed in 26 s (spec/e2e/soak_spec.lua, also
# part of make test): the plan's exact counts, RSS flat, no descriptor or
# process growth.
soak: all
	$(Q)busted --lua=$(LUA) spec/e2e/soak_spec.lua

.PHONY: valgrind soak
