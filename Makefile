# aicp developer entry points. `make test` and `make demo` work on a fresh clone:
# they create .venv and install everything themselves (registries only, no model hubs).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# llama-cpp-python ships as source only: build it once, keep the wheel in a wheelhouse.
# GGML_NATIVE=OFF with an AVX2 baseline: the native build enables ggml's AMX kernels,
# which crash (SIGSEGV in ggml_backend_amx_mul_mat) on VMs that advertise AMX.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON
WHEELHOUSE ?= $(HOME)/.cache/aicp-wheels/llama-$(LLAMA_VERSION)-avx2
PYTEST_ARGS ?=

.PHONY: install install-man dev test test-long lint man demo bench clean wheelhouse test-chatterbox
# `make install-man PREFIX=DIR` copies the man pages to DIR/share/man/man1.
PREFIX ?= $(HOME)/.local

install: $(VENV)/.installed
	@echo "installed in $(VENV): run '. $(VENV)/bin/activate' (or call $(BIN)/aicp)"
	@echo "man pages: export MANPATH=\"$(CURDIR)/man:\$$MANPATH\" (then: man aicp), or make install-man PREFIX=DIR"

install-man:
	install -d $(PREFIX)/share/man/man1
	install -m 644 man/man1/*.1 $(PREFIX)/share/man/man1/
	@echo "man pages in $(PREFIX)/share/man/man1; man finds them when $(PREFIX)/bin is on PATH or $(PREFIX)/share/man on MANPATH"

dev: $(VENV)/.installed-dev

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

wheelhouse: $(BIN)/python
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (about 5 minutes, once per machine)"; \
	  mkdir -p $(WHEELHOUSE) && \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel -q --no-deps --no-cache-dir \
	    -w $(WHEELHOUSE) llama-cpp-python==$(LLAMA_VERSION); \
	fi

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(MAKE) wheelhouse
	$(BIN)/python -m pip install -q $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(BIN)/python -m pip install -q -e '.[serve,kokoro]'
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/python -m pip install -q -e '.[dev,serve,kokoro]'
	touch $@

test: dev
	$(BIN)/python -m pytest -m 'not long' $(PYTEST_ARGS)

# the runs too long for `make test` (a 2,000-word long-form episode on the real model: ~6 min)
test-long: dev
	$(BIN)/python -m pytest -m long $(PYTEST_ARGS)

lint: dev
	$(BIN)/ruff check ai_content_pipeline tests bench
	$(BIN)/mypy ai_content_pipeline

man: dev
	$(BIN)/python -m ai_content_pipeline.cli.manpages man

demo: install
	$(BIN)/aicp run-chain --config examples/radio-intros.yaml --overwrite --stream 2>progress.jsonl
	@echo "events: progress.jsonl ($$(wc -l < progress.jsonl) lines)"
	@echo "audio files:"; ls -1 aicp-out/radio-intros/audio/
	$(BIN)/python examples/demo_songs.py --out-dir aicp-out/radio-intros/songs \
	  < aicp-out/radio-intros/02-voice.jsonl \
	  | $(BIN)/aicp mix --segue talk-up --show aicp-out/radio-intros/show.mp3 --title "aicp demo show" \
	      --playlist aicp-out/radio-intros/playout.m3u8 --overwrite -q > aicp-out/radio-intros/03-mix.jsonl
	@echo "show: aicp-out/radio-intros/show.mp3 (a chapter per song), playlist: aicp-out/radio-intros/playout.m3u8"

bench: dev
	$(BIN)/python bench/script_overhead.py
	$(BIN)/python bench/batch_ceiling.py
	$(BIN)/python bench/script_quality.py
	$(BIN)/python bench/voice_overhead.py
	$(BIN)/python bench/longform.py
	$(BIN)/python bench/service_overhead.py
	$(BIN)/python bench/scale_out.py

# Opt-in (not part of `make test`): the real chatterbox-tts package from the registries in
# its own venv (several GB: torch with CUDA libraries), a checkpoint of the real model classes
# with random weights, and aicp-voice --backend chatterbox on two records on the CPU.
# See tests/chatterbox_real/run_check.py.
CB_VENV := .venv-chatterbox
CB_BIN := $(CB_VENV)/bin
CB_CHECK_ARGS ?=

$(CB_BIN)/python:
	$(PYTHON) -m venv $(CB_VENV)
	$(CB_BIN)/python -m pip install -q --upgrade pip

$(CB_VENV)/.installed: pyproject.toml | $(CB_BIN)/python
	$(MAKE) wheelhouse
	$(CB_BIN)/python -m pip install -q $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl
	$(CB_BIN)/python -m pip install -q --find-links $(WHEELHOUSE) -e '.[chatterbox]'
	touch $@

test-chatterbox: $(CB_VENV)/.installed
	$(CB_BIN)/python tests/chatterbox_real/run_check.py --work $(CB_VENV)/check $(CB_CHECK_ARGS)

clean:
	rm -rf aicp-out progress.jsonl .pytest_cache .mypy_cache .ruff_cache
