# Two entry points, both self-installing:  `make demo`  and  `make test`.
# They create .venv at the repository root on first use and re-install only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU machines of this project install torch from local disk; GPU users may override TORCH_SPEC.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo_out

.PHONY: demo test test-fast lint venv clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[all]"
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/text4seg demo --out $(DEMO_OUT)

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check text4seg data_builders tests benchmarks

# `make test` installed every extra, so a test module whose extra does not import fails (tests/conftest.py);
# it also builds .venv-lmms (lmms-eval in its own environment) for tests/test_lmms_eval.py
test: lint lmms-venv
	TEXT4SEG_REQUIRE_EXTRAS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q tests

# the edit-test loop: everything but the end-to-end tests that train or run tiny models (marked slow)
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 $(PY) -m pytest -q -m "not slow" tests

clean:
	rm -rf $(VENV) $(DEMO_OUT)

# lmms-eval 0.7.3 in its own environment: its pins would break .venv (ms-swift, transformers). The lmms-eval
# tasks (lmms_tasks/, docs/lmms-eval.md) and tests/test_lmms_eval.py use it. filelock<4: lmms-eval 0.7.3
# imports filelock._api, which filelock 4 removed; qwen-vl-utils and decord: its in-process qwen2_5_vl backend.
# 3-6 min from scratch on 2 shared cores (torch from local disk).
LMMS_VENV ?= .venv-lmms
LMMS_STAMP := $(LMMS_VENV)/.installed
.PHONY: lmms-venv
lmms-venv: $(LMMS_STAMP)

$(LMMS_STAMP): pyproject.toml
	test -x $(LMMS_VENV)/bin/python || $(PYTHON) -m venv $(LMMS_VENV)
	$(LMMS_VENV)/bin/python -m pip install -q --upgrade pip
	$(LMMS_VENV)/bin/python -m pip install -q $(TORCH_SPEC)
	$(LMMS_VENV)/bin/python -m pip install -q lmms-eval==0.7.3 "filelock<4" numpy pillow pycocotools \
		qwen-vl-utils decord
	$(LMMS_VENV)/bin/python -m pip install -q --no-deps -e .
	touch $(LMMS_STAMP)
