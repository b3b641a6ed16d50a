# rtc64: two commands. `make run` starts the gateway on its embedded defaults,
# `make test` installs what the tests need and runs lint, types and the test suite.
#
# Compiled cores (optional): `make compiled` builds sip/, stun/, turn/, net/address.py and
# the TURN credentials/quotas (+ net/tokenbucket.py, gateway/ratelimit.py), gateway/proxy/{hops,splice}.py with mypyc into build/mypyc/ (never next to the sources);
# `import rtc64` uses that build only while it matches the sources byte for byte
# (src/rtc64/_compiled.py). `make test` builds it, runs the
# whole suite compiled (RTC64_COMPILED=1: a missing/stale build is an error) and the unit
# and conformance tests once more as pure Python (RTC64_PURE=1); without a C compiler it
# runs the whole suite as pure Python. RTC64_NO_COMPILE=1 skips the build. The same script
# builds the native C module io/turn_native.c (the TURN listener's ChannelData forward)
# into build/native/: the compiled run requires it, the pure run does not load it.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint typecheck unit compiled bench sysdeps venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/rtc64 serve

sysdeps:
	bash scripts/install-system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy --strict src

unit: $(STAMP)
	$(BIN)/python -m pytest -q -m 'not interop'

compiled: $(STAMP)
	$(BIN)/python scripts/build_compiled.py

test: $(STAMP) sysdeps lint typecheck
	@rc=0; $(BIN)/python scripts/build_compiled.py || rc=$$?; \
	if [ $$rc -eq 0 ]; then \
	  echo "== whole suite, compiled cores (RTC64_COMPILED=1)"; \
	  RTC64_COMPILED=1 $(BIN)/python -m pytest -q && \
	  echo "== unit and conformance tests, pure Python (RTC64_PURE=1)" && \
	  RTC64_PURE=1 $(BIN)/python -m pytest -q -m 'not interop' tests/unit tests/conformance; \
	elif [ $$rc -eq 3 ]; then \
	  echo "== whole suite, pure Python (no compiled build)"; \
	  RTC64_PURE=1 $(BIN)/python -m pytest -q; \
	else exit $$rc; fi

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
