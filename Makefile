# nginx-traffic-shift
#
#   make / make module   build $(BUILD_DIR)/ngx_http_traffic_shift_module.so
#   make deps            install the Debian packages needed (root)
#   make test            style check, then the test suite (prove)
#   make stress          reliability tests under load (t/stress/), about
#                        2 minutes; STRESS_SHORT=1: the short pass of CI
#   make demo            start nginx with the module on loopback, show it
#   make demo-fleet      the same for two nginx nodes and etcd (fleet mode)
#   make bench           benchmark against stock nginx (scripts/bench)
#   make asan            build with AddressSanitizer and UBSan in
#                        $(ASAN_BUILD_DIR), run the test suite with them
#   make test-nginx      build nginx and the module from NGINX_SRC or
#                        NGINX_VERSION in build-nginx-VERSION
#                        (scripts/build-nginx), run make test's suite with
#                        them (docs/nginx-versions.md)
#   make fuzz            build the libFuzzer targets (clang), run each for
#                        FUZZ_SECONDS (fuzz/run)
#   make install         copy the module to $(NGINX_MODULES_DIR)
#   make dist            $(DIST_DIR)/nginx-traffic-shift-VERSION.tar.gz, the
#                        release tarball: the files git tracks, as they are
#                        in the work tree, but .ci/ (docs/install.md)
#   make dist-check      build the module from that tarball, unpacked in a
#                        temporary directory; check the version it reports
#   make deb             the Debian packages libnginx-mod-http-traffic-shift
#                        and traffic-shift, built from that tarball with
#                        dpkg-buildpackage in $(DEB_DIR), then lintian
#   make version         print the version (src/ngx_http_traffic_shift.h)
#   make clean           remove $(BUILD_DIR)
#
# Variables:
#   BUILD_DIR              build directory (default: build)
#   NGINX_SRC              build against this full nginx source tree instead
#                          of Debian's nginx-dev tree
#   NGINX_CONFIGURE_FLAGS  extra nginx configure arguments
#   NGINX_CC_OPT           --with-cc-opt (default: Debian's hardening flags)
#   NGINX_LD_OPT           --with-ld-opt
#   NGINX_VERSION          make test-nginx: Debian 13's nginx source package
#                          of this version (1.26.3) instead of NGINX_SRC,
#                          which may also be a .tar.gz there
#   NGINX_STATIC=1         make test-nginx: the module compiled into nginx
#   NGINX_BUILD            a build directory of make test-nginx: make test,
#                          stress, asan and demo use its nginx and module
#   SKIP_DEPS=1            do not check the Debian packages
#   TS_MODULE              module the tests load (default: the build output)
#   TS_NGINX, TS_STATIC    the nginx the tests run, and TS_STATIC=1 if the
#                          module is compiled into it (t/README)
#   TESTS, PROVE_FLAGS     which tests prove runs, and how
#   ASAN_BUILD_DIR         build directory of make asan (default: build-asan)
#   ASAN_CC_OPT, ASAN_LD_OPT   its compiler and linker flags
#   FUZZ_SECONDS, FUZZ_TARGETS   seconds per fuzz target (default 30),
#                          which targets (default: all)
#   DIST_DIR, DEB_DIR      where make dist and make deb write (default:
#                          $(BUILD_DIR)/dist, $(BUILD_DIR)/deb)
#   LINTIAN=0              make deb: do not run lintian
#   BENCH                  parts of the benchmark to run (default: all;
#                          proxy instr api zone); BENCH_* in scripts/bench

MODULE_NAME := ngx_http_traffic_shift_module
BUILD_DIR ?= build
BUILD_ABS := $(abspath $(BUILD_DIR))
MODULE := $(BUILD_ABS)/$(MODULE_NAME).so
NGINX_TREE := $(BUILD_ABS)/nginx

# NGINX_BUILD: TS_NGINX, TS_MODULE, TS_STATIC, NGINX_SRC and
# NGINX_CONFIGURE_FLAGS of a build of scripts/build-nginx; the suites then
# need nothing built here (make test-nginx writes it, and reads it anew)
NGINX_BUILD ?=
ifneq ($(NGINX_BUILD),)
ifeq ($(filter test-nginx,$(MAKECMDGOALS)),)
include $(wildcard $(abspath $(NGINX_BUILD))/build.mk)
endif
SUITE_DEPS := nginx-build-check
else
SUITE_DEPS := module
endif

NGINX_MODULES_DIR ?= /usr/lib/nginx/modules
PROVE ?= prove
PROVE_FLAGS ?=
TESTS ?= $(sort $(wildcard t/*.t))
STRESS_TESTS ?= $(sort $(wildcard t/stress/*.t))
STRESS_SHORT ?=
TS_MODULE ?= $(MODULE)
TS_NGINX ?=
TS_STATIC ?=
SUITE_ENV = TS_MODULE='$(TS_MODULE)' TS_NGINX='$(TS_NGINX)' \
            TS_STATIC='$(TS_STATIC)'

ASAN_BUILD_DIR ?= $(if $(NGINX_BUILD),$(NGINX_BUILD)/asan,build-asan)
ASAN_CC_OPT ?= -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined \
               -fsanitize-recover=address -fPIC
ASAN_LD_OPT ?= -fsanitize=address,undefined -Wl,-z,relro -Wl,-z,now -fPIC
ASAN_PRELOAD ?= $(shell gcc -print-file-name=libasan.so) \
                $(shell gcc -print-file-name=libubsan.so)
ASAN_NGINX_BINARY ?= $(or $(TS_NGINX),/usr/sbin/nginx)

# the release: one #define, read by make dist and make deb; the CLI and
# debian/changelog carry the same (scripts/check-version, in make test)
VERSION := $(shell sed -n 's/^\#define NGX_HTTP_TS_VERSION *"\(.*\)"/\1/p' \
             src/ngx_http_traffic_shift.h)
DIST_NAME := nginx-traffic-shift-$(VERSION)
DIST_DIR ?= $(BUILD_ABS)/dist
DEB_DIR ?= $(BUILD_ABS)/deb
DIST_TARBALL = $(abspath $(DIST_DIR))/$(DIST_NAME).tar.gz
LINTIAN ?= 1

export NGINX_SRC NGINX_CONFIGURE_FLAGS NGINX_CC_OPT NGINX_LD_OPT

.PHONY: all module deps deps-check test check-style demo demo-fleet install \
        clean bench asan fuzz test-nginx nginx-build-check dist dist-check \
        deb version

all: module

module: deps-check
	@BUILD_DIR='$(BUILD_ABS)' scripts/configure-nginx
	$(MAKE) --no-print-directory -C '$(NGINX_TREE)' -f objs/Makefile modules
	@# a new file, not written over the old one: an nginx running with
	@# the old module keeps its mapping intact
	@cmp -s '$(NGINX_TREE)/objs/$(MODULE_NAME).so' '$(MODULE)' \
	    || { cp '$(NGINX_TREE)/objs/$(MODULE_NAME).so' '$(MODULE).tmp' \
	         && mv -f '$(MODULE).tmp' '$(MODULE)'; }
	@echo "built $(MODULE)"

deps:
	scripts/install-deps

# Cheap when everything is installed (one dpkg-query); installs otherwise.
deps-check:
ifeq ($(SKIP_DEPS),)
	@scripts/install-deps --check >/dev/null 2>&1 || scripts/install-deps
endif

check-style:
	scripts/check-style
	scripts/check-layers
	scripts/check-version

test: $(SUITE_DEPS) check-style
	$(SUITE_ENV) $(PROVE) -I t/lib $(PROVE_FLAGS) $(TESTS)

# nginx from another source (scripts/build-nginx), then the suite above
# against it: NGINX_SRC=tree-or-tarball or NGINX_VERSION=1.26.3 (Debian
# 13's source package), NGINX_STATIC=1 for the module compiled in
test-nginx: deps-check
	@scripts/build-nginx
	@$(MAKE) --no-print-directory test SKIP_DEPS=1 \
	    NGINX_BUILD="$$(scripts/build-nginx --dir)"

nginx-build-check:
	@test -f '$(abspath $(NGINX_BUILD))/build.mk' || { echo \
	    "NGINX_BUILD=$(NGINX_BUILD): no build.mk; make test-nginx first" \
	    >&2; exit 1; }

# The reliability tests (docs/stress.md): STRESS_SHORT=1 runs the short
# pass of CI; STRESS_TESTS chooses the files.
.PHONY: stress
stress: $(SUITE_DEPS)
	$(SUITE_ENV) STRESS_SHORT='$(STRESS_SHORT)' \
	    $(PROVE) -I t/lib $(PROVE_FLAGS) $(STRESS_TESTS)

demo: $(SUITE_DEPS)
	$(SUITE_ENV) scripts/demo

demo-fleet: $(SUITE_DEPS)
	$(SUITE_ENV) scripts/demo-fleet

# The module built with the sanitizers, loaded into the stock nginx run
# with their runtimes preloaded (scripts/asan-nginx); the harness fails a
# test whose logs hold a report.  With NGINX_BUILD: built against that
# build's source and flags, loaded into its nginx.
asan: deps-check $(if $(NGINX_BUILD),nginx-build-check)
	@if [ -n '$(TS_STATIC)' ]; then echo "make asan: the module is" \
	    "compiled into $(TS_NGINX); use a dynamic build" >&2; exit 1; fi
	@$(MAKE) --no-print-directory module SKIP_DEPS=1 \
	    BUILD_DIR='$(ASAN_BUILD_DIR)' \
	    NGINX_CC_OPT='$(ASAN_CC_OPT)' NGINX_LD_OPT='$(ASAN_LD_OPT)'
	TS_SANITIZE=1 TS_NGINX='$(CURDIR)/scripts/asan-nginx' TS_STATIC= \
	ASAN_NGINX_BINARY='$(ASAN_NGINX_BINARY)' ASAN_PRELOAD='$(ASAN_PRELOAD)' \
	TS_MODULE='$(abspath $(ASAN_BUILD_DIR))/$(MODULE_NAME).so' \
	    $(PROVE) -I t/lib $(PROVE_FLAGS) $(TESTS)

FUZZ_SECONDS ?= 30
FUZZ_TARGETS ?=

# the configured tree of "make" gives the targets nginx's headers
fuzz: module
	BUILD_DIR='$(BUILD_ABS)' FUZZ_SECONDS='$(FUZZ_SECONDS)' \
	    fuzz/run $(FUZZ_TARGETS)

bench: module
	TS_MODULE='$(TS_MODULE)' scripts/bench $(BENCH)

install: module
	install -d '$(DESTDIR)$(NGINX_MODULES_DIR)'
	install -m 0644 '$(MODULE)' '$(DESTDIR)$(NGINX_MODULES_DIR)/'
	@echo "installed; load it with (in nginx.conf, main context):"
	@echo "    load_module $(NGINX_MODULES_DIR)/$(MODULE_NAME).so;"

version:
	@echo '$(VERSION)'

# The release tarball: every file git tracks (git ls-files), with its
# content in the work tree (a change not yet committed is in it, a file
# not yet added is not), but CI's; one top directory, the owner root, the
# dates of the last commit, sorted: the same files give the same tarball.
dist:
	@test -n '$(VERSION)' || { echo "make dist: no NGX_HTTP_TS_VERSION" \
	    "in src/ngx_http_traffic_shift.h" >&2; exit 1; }
	@scripts/check-version
	@mkdir -p '$(abspath $(DIST_DIR))'
	git ls-files -z -- . ':!:.ci' ':!:.gitignore' \
	| tar --null --files-from=- --sort=name \
	    --transform='s,^,$(DIST_NAME)/,' \
	    --owner=0 --group=0 --numeric-owner \
	    --mtime="@$$(git log -1 --format=%ct)" --mode='u+w,go-w' \
	    -cf - | gzip -n9 > '$(DIST_TARBALL).tmp'
	@mv -f '$(DIST_TARBALL).tmp' '$(DIST_TARBALL)'
	@echo "built $(DIST_TARBALL)"

dist-check:
	scripts/dist-check

# The Debian packages, from the release tarball unpacked in $(DEB_DIR)
# (dpkg-buildpackage writes the .deb files next to the source directory):
# nothing of the work tree but what make dist takes.
deb: dist
	@case '$(abspath $(DEB_DIR))' in /|'$(CURDIR)') \
	    echo "refusing to use $(DEB_DIR)" >&2; exit 1;; esac
	rm -rf '$(abspath $(DEB_DIR))'
	mkdir -p '$(abspath $(DEB_DIR))'
	tar -xzf '$(DIST_TARBALL)' -C '$(abspath $(DEB_DIR))'
	cd '$(abspath $(DEB_DIR))/$(DIST_NAME)' && dpkg-buildpackage -us -uc -b
	@ls -1 '$(abspath $(DEB_DIR))'/*.deb
ifneq ($(LINTIAN),0)
	lintian --fail-on error,warning --info \
	    '$(abspath $(DEB_DIR))'/nginx-traffic-shift_$(VERSION)_*.changes
endif

clean:
	@case '$(BUILD_ABS)' in /|'$(CURDIR)') \
	    echo "refusing to remove $(BUILD_ABS)" >&2; exit 1;; esac
	rm -rf '$(BUILD_ABS)'
