# callgate — build, test, demo, benchmark and install.
#
#   make demo    the whole product on its embedded default, on loopback
#   make test    every test: unit, race, interop with sipp/baresip, systemd
#   make fuzz    every Go fuzz target for a minute each (FUZZTIME=10m, FUZZ=Name)
#   make bench   Go benchmarks and the REGISTER load against callgate and Kamailio
#   make install DESTDIR=... PREFIX=/usr/local

VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
PREFIX      ?= /usr/local
DESTDIR     ?=
BINDIR      := $(PREFIX)/bin
GO          ?= go
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
LDFLAGS     := -s -w -X main.version=$(VERSION)

# Debian packages the tests drive as independent peers.
TEST_TOOLS  := sipp:sip-tester baresip:baresip sox:sox systemd-analyze:systemd chromium:chromium chromedriver:chromium-driver svcrack:sipvicious fail2ban-regex:fail2ban linphonec:linphone-cli ip:iproute2
BENCH_TOOLS := sipp:sip-tester kamailio:kamailio rtpengine:rtpengine-daemon

.PHONY: all build test unit lint fuzz fuzz-short demo bench bench-go bench-register bench-calls bench-reload install deps deps-bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/callgate ./cmd/callgate

# deps installs missing test peers with apt-get (as root, or through sudo).
deps:
	@./bench/install-tools.sh $(TEST_TOOLS)

deps-bench:
	@./bench/install-tools.sh $(BENCH_TOOLS)

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo 'gofmt: files above need formatting'; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

test: deps lint fuzz-short
	$(GO) test -race -count=1 -timeout 20m ./...

# fuzz-short runs every fuzz target for a few seconds: seeds and quick finds.
fuzz-short:
	FUZZTIME=$${FUZZTIME:-3s} GO=$(GO) ./testdata/fuzz/run.sh

fuzz:
	FUZZTIME=$${FUZZTIME:-1m} GO=$(GO) ./testdata/fuzz/run.sh

unit:
	$(GO) test -race -count=1 -short ./...

demo: build
	./bin/callgate demo

bench: deps-bench build bench-go bench-register bench-calls bench-reload

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./sip/... ./media/... ./gateway/...

bench-calls: build
	CALLS=1000 RATE=100 HOLD=60s ./bench/call-bench.sh
	RATE=33 COUNT=300 ./bench/media-bench.sh

bench-reload: build
	CALLS=500 EMPLOYEES=1000 RATE=100 HOLD=20s ./bench/reload-bench.sh

bench-register: build
	./bench/register-bench.sh

install: build
	install -D -m 0755 bin/callgate $(DESTDIR)$(BINDIR)/callgate
	install -d $(DESTDIR)/lib/systemd/system $(DESTDIR)/usr/lib/sysusers.d
	sed 's|/usr/local/bin/callgate|$(BINDIR)/callgate|g; s|/usr/local/share|$(PREFIX)/share|g' systemd/callgate.service > $(DESTDIR)/lib/systemd/system/callgate.service
	chmod 0644 $(DESTDIR)/lib/systemd/system/callgate.service
	install -m 0644 systemd/callgate.sysusers $(DESTDIR)/usr/lib/sysusers.d/callgate.conf
	install -D -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/callgate/README.md
	install -D -m 0644 configs/callgate.toml $(DESTDIR)$(PREFIX)/share/doc/callgate/callgate.toml.example
	@if [ ! -e $(DESTDIR)/etc/callgate/callgate.toml ]; then \
		install -D -m 0640 configs/callgate.toml $(DESTDIR)/etc/callgate/callgate.toml; \
		echo "installed a starting config at $(DESTDIR)/etc/callgate/callgate.toml: edit it, then: callgate check-config"; \
	fi

clean:
	rm -rf bin
