# Front end for the Meson build. `make demo` and `make check` work on a fresh
# Debian 12 machine: they install missing packages first (as root).

BUILD      ?= build
ASAN_BUILD ?= build-asan
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian packages the build and the tests need (qemu-utils is the oracle).
BUILD_DEPS = meson ninja-build gcc pkg-config zlib1g-dev libzstd-dev libdeflate-dev libjansson-dev \
             libssl-dev libnbd-dev libcurl4-openssl-dev
TEST_DEPS  = qemu-utils qemu-block-extra nbdkit lighttpd

.PHONY: all deps test-deps demo check install clean fuzz

all: $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@scripts/install-deps.sh $(BUILD_DEPS)

test-deps:
	@scripts/install-deps.sh $(BUILD_DEPS) $(TEST_DEPS)

$(BUILD)/build.ninja:
	@scripts/install-deps.sh $(BUILD_DEPS)
	meson setup $(BUILD) --buildtype=release -Dwerror=true

$(ASAN_BUILD)/build.ninja:
	meson setup $(ASAN_BUILD) --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true

demo: all
	@scripts/install-deps.sh $(TEST_DEPS) >/dev/null 2>&1 || true
	scripts/demo.sh $(BUILD)

check: test-deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		tests/run-tests.sh $(ASAN_BUILD)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/qimg $(DESTDIR)$(PREFIX)/bin/qimg

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
