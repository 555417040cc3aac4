# callgate — build, test, demo, benchmark and install.
#
#   make demo    the whole product on its embedded default, on loopback
#   make test    every test: unit, race, interop with sipp/baresip, systemd
#   make fuzz    every Go fuzz target for a minute each (FUZZTIME=10m, FUZZ=Name)
#   make bench   Go benchmarks, the REGISTER load against callgate and Kamailio, calls, the browser phone
#   make bench-backup  callgate backup of 1,000,000 call records while calls go on
#   make install DESTDIR=... PREFIX=/usr/local   (as root: also the callgate user and ownership)

VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      := $(PREFIX)/bin
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
LDFLAGS     := -s -w -X main.version=$(VERSION)

# SIP.js, the console phone's SIP stack from npm (see the sipjs target).
SIPJS_VERSION := 0.21.2
SIPJS_SHA256  := abbf374bccf50fdd0f659e24dd70a83a0bad09553bd16fa4b6c94021053f66cb
SIPJS_DIR     := gateway/web/static/assets/vendor/sip.js
SIPJS         := $(SIPJS_DIR)/sip.min.js
ESBUILD       := github.com/evanw/esbuild/cmd/esbuild@v0.25.0

# What building needs besides Go: cgo and the Ogg Opus libraries that
# compress recordings (pkg-config goes first: it checks the others).
BUILD_TOOLS := gcc:gcc pkg-config:pkg-config pc=opus:libopus-dev pc=ogg:libogg-dev pc=opusfile:libopusfile-dev

# Debian packages the tests drive as independent peers.
TEST_TOOLS  := espeak-ng:espeak-ng curl:curl update-ca-certificates:ca-certificates kill:procps sipp:sip-tester baresip:baresip sox:sox systemd-analyze:systemd systemd-sysusers:systemd systemd-tmpfiles:systemd chromium:chromium chromedriver:chromium-driver svcrack:sipvicious fail2ban-regex:fail2ban linphonec:linphone-cli ip:iproute2 nginx:nginx promtool:prometheus
BENCH_TOOLS := sipp:sip-tester kamailio:kamailio rtpengine:rtpengine-daemon

.PHONY: all build deps-build test unit lint fuzz fuzz-short axe sipjs weed demo bench bench-go bench-register bench-calls bench-backup bench-reload install install-owners deps deps-bench bench-browser clean

all: build

# What the binary is built from (embedded files included): bin/callgate is
# rebuilt when one of them is newer, and only then, so `sudo make install`
# (no Go on root's PATH) installs an up-to-date binary built as yourself,
# and refuses to install a stale one.
SOURCES     := go.mod go.sum $(shell find cmd gateway sip media crm configs internal -type f -not -name '*_test.go' -not -path '*/testdata/*' 2>/dev/null)

build: deps-build bin/callgate

bin/callgate: $(SOURCES) $(SIPJS)
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/callgate ./cmd/callgate

# SIP.js from npm: the browser SIP stack of the console's phone, embedded
# in the binary with the console (no CDN). The tarball is checked against
# its pinned digest before anything is taken out of it; its ES modules
# (about 190 files, no dependencies) are bundled into one with esbuild
# (built from its Go module), so a page loads it in one request instead of
# a waterfall of imports. The versions are at the top, where bin/callgate's
# prerequisites need them.
sipjs: $(SIPJS)

$(SIPJS):
	@mkdir -p build
	curl -fsSL --retry 3 -o build/sipjs.tgz https://registry.npmjs.org/sip.js/-/sip.js-$(SIPJS_VERSION).tgz
	echo '$(SIPJS_SHA256)  build/sipjs.tgz' | sha256sum -c --quiet
	rm -rf build/sipjs-src $(SIPJS_DIR) && mkdir -p build/sipjs-src $(SIPJS_DIR)
	tar -xzf build/sipjs.tgz -C build/sipjs-src --strip-components=1 --wildcards 'package/lib/*.js' package/LICENSE.md
	$(GO) run $(ESBUILD) build/sipjs-src/lib/index.js --bundle --format=esm --minify --legal-comments=eof --log-level=warning --outfile=$(SIPJS)
	cp build/sipjs-src/LICENSE.md $(SIPJS_DIR)/LICENSE.md
	rm -rf build/sipjs.tgz build/sipjs-src

# axe-core from npm: the accessibility engine the console's browser tests
# inject into every page. The tarball is checked against the registry's
# published digest before anything is taken out of it.
AXE_VERSION := 4.14.1
AXE_SHA256  := e6b0ce02b84d892e2e33e403485e7f3d6c29e2be6df65daf44d89ba564139745
AXE         := build/axe-core-$(AXE_VERSION)/axe.min.js

axe: $(AXE)

$(AXE):
	@mkdir -p $(@D)
	curl -fsSL --retry 3 -o $(@D)/axe.tgz https://registry.npmjs.org/axe-core/-/axe-core-$(AXE_VERSION).tgz
	echo '$(AXE_SHA256)  $(@D)/axe.tgz' | sha256sum -c --quiet
	tar -xzf $(@D)/axe.tgz -C $(@D) --strip-components=1 package/axe.min.js package/LICENSE
	rm $(@D)/axe.tgz

# SeaweedFS, the S3 server the archive tests run on loopback (a real
# server, not a fake). Its go.mod has replace directives, so `go install`
# refuses it: the module is downloaded and built inside a copy of itself.
SEAWEEDFS   := github.com/seaweedfs/seaweedfs@v0.0.0-20261109003541-7506e5f91cd6
WEED        := build/weed

weed: $(WEED)

$(WEED):
	@mkdir -p build
	cd "$$(mktemp -d)" && GOWORK=off GOFLAGS= $(GO) mod download -json $(SEAWEEDFS) > $(CURDIR)/build/seaweedfs.json
	rm -rf build/seaweedfs-src && cp -r "$$(sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$$/\1/p' build/seaweedfs.json)" build/seaweedfs-src && chmod -R u+w build/seaweedfs-src
	cd build/seaweedfs-src && GOWORK=off GOFLAGS= nice -n 10 $(GO) build -o $(CURDIR)/$(WEED) ./weed
	rm -rf build/seaweedfs-src build/seaweedfs.json

# deps-build installs what cgo and the Opus encoder need, deps the test
# peers, when missing, with apt-get (as root, or through sudo).
deps-build:
	@./bench/install-tools.sh $(BUILD_TOOLS)

deps: deps-build
	@./bench/install-tools.sh $(TEST_TOOLS)

deps-bench:
	@./bench/install-tools.sh $(BENCH_TOOLS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: deps axe sipjs weed lint fuzz-short
	$(GO) test -race -count=1 -timeout 20m ./...

# fuzz-short runs every fuzz target for a few seconds: seeds and quick finds.
fuzz-short:
	FUZZTIME=$${FUZZTIME:-3s} GO=$(GO) ./testdata/fuzz/run.sh

fuzz:
	FUZZTIME=$${FUZZTIME:-1m} GO=$(GO) ./testdata/fuzz/run.sh

unit:
	$(GO) test -race -count=1 -short ./...

# DEMO_ARGS passes options to the demo, e.g. DEMO_ARGS="-http 127.0.0.1:8090".
demo: build
	./bin/callgate demo $(DEMO_ARGS)

bench: deps deps-bench build weed bench-go bench-register bench-calls bench-reload bench-browser

# The browser phone: WebRTC calls' cost against desk phones' (100 at once),
# and in Chromium page load → registered / ICE connected, INVITE → ringing.
bench-browser: build
	CALLS=100 HOLD=20s ROUNDS=2 ./bench/webrtc-bench.sh
	ROUNDS=30 ./bench/browser-bench.sh

bench-go: weed
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./sip/... ./media/... ./gateway/...

bench-calls: build
	CALLS=1000 RATE=100 HOLD=60s ./bench/call-bench.sh
	TRACE=1 CALLS=500 RATE=100 HOLD=20s ./bench/call-bench.sh
	RATE=33 COUNT=300 ./bench/media-bench.sh

bench-reload: build
	CALLS=500 EMPLOYEES=1000 RATE=100 HOLD=20s ./bench/reload-bench.sh

bench-register: build
	./bench/register-bench.sh
	BUFF=4194304 PIN=1 RATES="20000 30000" ./bench/register-bench.sh

# install copies the files; as root without DESTDIR it also creates the
# callgate user and gives it its configuration (root:callgate 0640) and
# state directory (install-owners). Packages (DESTDIR) ship the sysusers.d
# and tmpfiles.d snippets, which systemd applies at boot, and run the same
# two commands in their postinst.
# bench-backup is not part of bench: its database of 1,000,000 calls, the
# copy and the copy's temporary file take about 6 GB under TMPDIR (or WORK).
bench-backup:
	RECORDS=1000000 CALLS=1000 RATE=50 ./bench/backup-bench.sh

install: bin/callgate
	install -D -m 0755 bin/callgate $(DESTDIR)$(BINDIR)/callgate
	install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)/usr/lib/sysusers.d $(DESTDIR)/usr/lib/tmpfiles.d
	sed 's|/usr/local/bin/callgate|$(BINDIR)/callgate|g; s|/usr/local/share|$(PREFIX)/share|g' systemd/callgate.service > $(DESTDIR)/lib/systemd/system/callgate.service
	chmod 0644 $(DESTDIR)/lib/systemd/system/callgate.service
	install -m 0644 systemd/callgate.sysusers $(DESTDIR)/usr/lib/sysusers.d/callgate.conf
	install -m 0644 systemd/callgate.tmpfiles $(DESTDIR)/usr/lib/tmpfiles.d/callgate.conf
	# The documents keep the repository's layout, so their links work.
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/callgate/README.md
	install -D -m 0644 configs/callgate.toml $(DESTDIR)$(PREFIX)/share/doc/callgate/configs/callgate.toml
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/doc/callgate/docs docs/install.md docs/api.md docs/architecture.md
	install -D -m 0644 -t $(DESTDIR)$(PREFIX)/share/doc/callgate/docs/fail2ban docs/fail2ban/*.conf
	install -d -m 0750 $(DESTDIR)/etc/callgate
	install -D -m 0644 configs/prometheus/callgate.rules.yml $(DESTDIR)$(PREFIX)/share/callgate/prometheus/callgate.rules.yml
	install -D -m 0644 configs/grafana/callgate.json $(DESTDIR)$(PREFIX)/share/callgate/grafana/callgate.json
	@if [ ! -e $(DESTDIR)/etc/callgate/callgate.toml ]; then \
		install -m 0640 configs/callgate.toml $(DESTDIR)/etc/callgate/callgate.toml; \
		echo "installed a starting config at $(DESTDIR)/etc/callgate/callgate.toml: edit it, then: callgate check-config"; \
	fi
	@if [ -z "$(DESTDIR)" ] && [ "$$(id -u)" = 0 ]; then \
		$(MAKE) --no-print-directory install-owners; \
	elif [ -z "$(DESTDIR)" ]; then \
		echo "not root: run 'make install-owners' as root so the callgate user can read its configuration"; \
	fi

# install-owners creates the callgate user (sysusers.d) and applies the
# ownership of tmpfiles.d: /etc/callgate root:callgate 0750, its files group
# callgate, /var/lib/callgate the user's. With DESTDIR it works on that tree
# and its etc/passwd and etc/group.
install-owners:
	systemd-sysusers --root=$(or $(DESTDIR),/) $(DESTDIR)/usr/lib/sysusers.d/callgate.conf
	systemd-tmpfiles --root=$(or $(DESTDIR),/) --create $(DESTDIR)/usr/lib/tmpfiles.d/callgate.conf

clean:
	rm -rf bin
