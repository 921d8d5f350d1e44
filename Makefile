# Front end for the Meson build. `make demo` and `make check` work on a fresh
# Debian 12 machine: they install missing packages first (as root).

BUILD      ?= build
ASAN_BUILD ?= build-asan
FUZZ_BUILD ?= build-fuzz
FUZZ_TIME  ?= 120
PREFIX     ?= /usr/local
DESTDIR    ?=

# Debian packages the build and the tests need (qemu-utils is the oracle).
BUILD_DEPS = meson ninja-build gcc pkg-config zlib1g-dev libzstd-dev libdeflate-dev libjansson-dev \
             libssl-dev nettle-dev libnbd-dev libcurl4-openssl-dev libbz2-dev
TEST_DEPS  = qemu-utils qemu-block-extra nbdkit lighttpd lighttpd-mod-openssl openssl

.PHONY: all deps test-deps demo check install clean fuzz fuzz-run

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

# libFuzzer targets (fuzz/README.md): clang with ASan+UBSan and coverage
# instrumentation of the whole library; warnings are not errors here because
# clang warns where gcc does not. The network protocols stay out: hostile
# inputs must not reach hosts.
fuzz: $(FUZZ_BUILD)/build.ninja
	ninja -C $(FUZZ_BUILD) fuzzers

$(FUZZ_BUILD)/build.ninja:
	CC=clang meson setup $(FUZZ_BUILD) -Dfuzzing=true --buildtype=debugoptimized \
		-Db_sanitize=address,undefined -Db_lundef=false -Dwerror=false \
		-Dc_args='-fsanitize=fuzzer-no-link -Wno-format-nonliteral' -Dnbd=disabled -Dcurl=disabled

# Seed corpora (fuzz/make-corpus.sh) and FUZZ_TIME seconds per target.
fuzz-run: fuzz
	fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_TIME)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 755 $(BUILD)/qimg $(DESTDIR)$(PREFIX)/bin/qimg
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/bash-completion/completions
	install -m 644 $(BUILD)/src/tools/qimg.1 $(DESTDIR)$(PREFIX)/share/man/man1/qimg.1
	install -m 644 $(BUILD)/src/tools/qimg-completion.bash $(DESTDIR)$(PREFIX)/share/bash-completion/completions/qimg

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
