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
           -Wpointer-arith -Wno-unused-parameter
CFLAGS  ?= -O2 -g
ALL_CFLAGS := $(CFLAGS) $(WARN) -std=gnu99 -I$(LUA_INC) -Isrc -Ibuild \
              -DORCH_VERSION='"$(VERSION)"'
# Lua, cjson and libuv are linked statically; -E exports the Lua C API so
# that C modules (events/*.so, rocks) load into the binary.
STATIC_LIBS := $(LIBDIR)/liblua5.4-cjson.a $(LIBDIR)/liblua5.4.a $(LIBDIR)/libuv_a.a
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

all: orchlua $(EVENT_SO)

orchlua: $(OBJ)
	@echo "  LD      $@"
	$(Q)$(CC) $(ALL_LDFLAGS) -o $@ $(OBJ) $(LDLIBS)

build:
	$(Q)mkdir -p build

build/%.o: src/%.c $(wildcard src/*.h) | build
	@echo "  CC      $<"
	$(Q)$(CC) $(ALL_CFLAGS) -c -o $@ $<

build/embed: tools/embed.c | build
	$(Q)$(CC) -O1 -o $@ $<

build/embedded.c: build/embed $(LUA_SRC)
	@echo "  EMBED   lua/"
	$(Q)build/embed lua $@ $(LUA_SRC)

build/embedded.o: build/embedded.c
	$(Q)$(CC) -O0 -c -o $@ $<

# C modules loaded into orchlua: built against the lua5.4 headers only.
events/%.so: events/%.c src/orch.h
	@echo "  CC      $@"
	$(Q)$(CC) $(CFLAGS) $(WARN) -std=gnu99 -fPIC -shared -I$(LUA_INC) -Isrc -o $@ $<

# ---- dependencies ----------------------------------------------------------
DEB_PKGS := build-essential liblua5.4-dev lua5.4 lua-cjson-dev lua-cjson libuv1-dev \
            luarocks lua-busted lua-check lua-luv lua-expat
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

# ---- install ---------------------------------------------------------------
install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/orchlua/events
	install -m 755 orchlua $(DESTDIR)$(PREFIX)/bin/orchlua
	install -m 644 src/orch.h $(DESTDIR)$(PREFIX)/share/orchlua/orch.h
	cp -r events/*.lua $(EVENT_SO) $(DESTDIR)$(PREFIX)/share/orchlua/events/

clean:
	rm -rf build orchlua events/*.so

.PHONY: all deps test bench install clean
