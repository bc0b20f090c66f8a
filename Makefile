# prunec — every target is idempotent; `make setup` is safe to run again.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.prunec-installed
# python3-venv/python3-dev/gcc: the .venv and the cffi builds on a bare Debian 12; cmake: the generated CMakeLists tests
DEBS := python3-venv python3-dev gcc cmake dataset-fashion-mnist gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf libc6-dev-arm64-cross libc6-dev-armhf-cross \
        gcc-arm-none-eabi libnewlib-arm-none-eabi binutils-arm-none-eabi qemu-user-static qemu-user qemu-system-arm clang
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=
DEMO_DIR ?= build/demo

.PHONY: setup debs venv test demo bench clean

setup: debs $(STAMP)

debs:
	@missing=""; for p in $(DEBS); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "Debian packages: all present"; fi

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test]'
	touch $(STAMP)

# one pytest-xdist worker per core, each test module on one worker (its module-scoped builds made once): the suite
# took 936 s on one core of the twelfth session's Intel machine, over CI's 15 minutes, and 551 s on two
test: setup
	$(VENV)/bin/pytest -q -n auto --dist loadscope $(PYTEST_ARGS)

demo: setup
	$(VENV)/bin/python benchmarks/demo.py --out $(DEMO_DIR)

BENCH_STAMP := $(VENV)/.prunec-bench-installed

$(BENCH_STAMP): $(STAMP)
	$(PIP) install -q -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: setup $(BENCH_STAMP)
	$(VENV)/bin/python benchmarks/run_all.py

clean:
	rm -rf build .pytest_cache
