# make build | install-module | run | reload | stop | test | unit | integration | soak | bench | quality | fuzz | docker-check | clean
# Builds the module against Debian's nginx (nginx-dev) unless NGINX_SRC points
# at another configured-for-compat nginx source tree.

SHELL := /bin/bash
NGINX_SRC ?= /usr/share/nginx/src
NGINX_BIN ?= /usr/sbin/nginx
BUILD     := $(CURDIR)/build
MODULE    := $(BUILD)/ngx_http_anomaly_module.so
NGX_TREE  := $(BUILD)/nginx
SOURCES   := config $(wildcard src/*/*.cpp src/*/*.hpp src/*/*/*.cpp src/*/*/*.hpp)

# Debian packages the build and `make run` need, and those only the tests need.
PACKAGES  := nginx nginx-dev libleveldb-dev libsimdjson-dev g++ make gettext-base procps util-linux curl
TEST_PACKAGES := cmake libgtest-dev perl libjson-pp-perl chromium python3
BENCH_PACKAGES := wrk util-linux

.PHONY: all deps test-deps install-missing install-module build run reload stop test unit quality-unit integration soak bench quality fuzz docker-check clean

all: build

deps:
	@$(MAKE) --no-print-directory install-missing WANT="$(PACKAGES)"

test-deps:
	@$(MAKE) --no-print-directory install-missing WANT="$(TEST_PACKAGES)"

install-missing:
	@missing=""; for p in $(WANT); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    echo "installing:$$missing"; \
	    if [ "$$(id -u)" != 0 ]; then echo "run as root, or install:$$missing" >&2; exit 1; fi; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

build: deps $(MODULE)

# nginx's configure writes into its tree, so it runs on a copy under build/.
$(NGX_TREE)/objs/Makefile: config
	rm -rf $(NGX_TREE) && mkdir -p $(BUILD) && cp -a $(NGINX_SRC) $(NGX_TREE)
	cd $(NGX_TREE) && \
	  if [ -f conf_flags ]; then source ./conf_flags; else NGX_CONF_FLAGS=(--with-compat --with-threads); fi && \
	  ./configure "$${NGX_CONF_FLAGS[@]}" \
	    --with-cc-opt="-g -O2 -fPIC -fstack-protector-strong -D_FORTIFY_SOURCE=2" \
	    --with-ld-opt="-Wl,-z,relro -Wl,-z,now" \
	    --add-dynamic-module=$(CURDIR) > $(BUILD)/configure.log 2>&1 \
	  || { tail -20 $(BUILD)/configure.log; exit 1; }

# nginx maps the installed module. Writing into that file (cp) changes the
# code under every running worker; a new file renamed over it leaves them on
# the one they mapped.
MODULE_OBJ := $(NGX_TREE)/objs/ngx_http_anomaly_module.so
install_module = install -D -m 0644 $(MODULE_OBJ) $(1).tmp && mv -f $(1).tmp $(1)

$(MODULE): $(NGX_TREE)/objs/Makefile $(SOURCES)
	$(MAKE) -C $(NGX_TREE) -f objs/Makefile modules
	$(call install_module,$(MODULE))

# Installs the module built last, as the build does, to $(MODULE) (make
# install-module MODULE=/usr/lib/nginx/modules/ngx_http_anomaly_module.so).
install-module:
	@[ -f $(MODULE_OBJ) ] || { echo "install-module: $(MODULE_OBJ) is not built; run make build" >&2; exit 1; }
	$(call install_module,$(MODULE))

# conf/run.sh checks that nginx's workers can reach the run directory and
# the store before it builds (make build), then serves in the foreground.
run:
	@conf/run.sh

# The server of `make run`: render and check the configuration again and
# reload it (HUP to the master in the run directory), or stop it (QUIT).
reload:
	@conf/run.sh reload

stop:
	@conf/run.sh stop

# The core and the store without nginx, then again under ASan and UBSan.
unit: deps test-deps
	cmake -S t/unit -B $(BUILD)/unit > /dev/null
	cmake --build $(BUILD)/unit -j2
	ctest --test-dir $(BUILD)/unit --output-on-failure
	cmake -S t/unit -B $(BUILD)/unit-sanitize -DSANITIZE=ON > /dev/null
	cmake --build $(BUILD)/unit-sanitize -j2
	ctest --test-dir $(BUILD)/unit-sanitize --output-on-failure

# The NAB scorer of `make quality` against known answers (Python, standard library).
quality-unit: test-deps
	python3 -m unittest discover -s bench/quality

integration: build test-deps
	prove -I t/lib -j1 t/

test: build unit quality-unit integration

# The long variant of the worker-crash test: 30 s of SIGKILLs under 8 fitting
# clients and 100 predicting connections.
soak: build test-deps
	ANOMALY_SOAK=1 prove -v -I t/lib t/07-worker-crash.t

bench: build
	@for p in $(BENCH_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "install ok installed" \
	    || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(BENCH_PACKAGES); break; }; done
	bench/run.sh

# Detection quality: fits each batch detector (QUALITY_DETECTORS) on the
# probationary period of every labelled NAB series under NAB_DIR (default
# ../shared/nab-dev), predicts every row over HTTP against its own nginx, and
# writes the NAB scores and event precision and recall to bench/QUALITY.md.
quality: build
	@$(MAKE) --no-print-directory install-missing WANT="python3"
	python3 bench/quality/run_quality.py

# libFuzzer over the request parsers and the record decoders (FUZZ_SECONDS each).
fuzz: deps
	@command -v clang++ >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang; }
	t/fuzz/run.sh

# Builds docker/Dockerfile with podman from a debootstrapped bookworm and runs
# the image's entrypoint in a chroot: no registry or container engine needed.
docker-check:
	docker/check.sh

clean:
	rm -rf $(BUILD)
