# Two commands do everything on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline
export WANDB_SILENT ?= true

.PHONY: setup demo pretrained test lint clean browser

# the core install, all the demo needs; torch first: the CPU wheel, so a looser requirement
# does not pull the CUDA build
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e .
	touch $@

# + the test tools, and the extras whose configs the tests run (an Optuna sweep) or compose (SLURM)
$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e ".[dev,sweep,slurm]"
	touch $@

setup: $(VENV)/.installed

DEMO := outputs/demo

VOICES := "instruments=[soprano,alto,tenor,bass]"

# encode the Bach chorales, train 240 steps on the CPU, sample 4 pieces from that
# model, and 4 from the bundled one (deeporb/pretrained/bach_chorales.ckpt) when it is there
demo: setup
	$(PY) encode.py dataset=bach_chorales
	rm -rf $(DEMO)/run
	$(PY) train.py experiment=demo hydra.run.dir=$(DEMO)/run
	$(PY) sample.py ckpt_path=$(DEMO)/run num_samples=4 bars=16 seed=1 out_dir=$(DEMO)/samples render.audio=true \
		$(VOICES) 'title="Trained just now by make demo (experiment=demo: 240 steps)"'
	@if [ -f deeporb/pretrained/bach_chorales.ckpt ]; then \
	  $(PY) sample.py ckpt_path=pretrained:bach_chorales num_samples=4 bars=16 seed=1 out_dir=$(DEMO)/pretrained \
	    render.audio=true $(VOICES) 'title="The bundled model pretrained:bach_chorales (card: deeporb/pretrained/bach_chorales.md)"' \
	  && echo "the bundled model's pieces: open $(DEMO)/pretrained/index.html"; \
	else echo "no bundled model yet (make pretrained makes it): no pieces in $(DEMO)/pretrained"; fi
	@$(PY) -m deeporb.render.page $(DEMO) >/dev/null
	@echo "demo done: open $(DEMO)/index.html (both sets of pieces, labelled: piano rolls, audio, MIDI, statistics); training run in $(DEMO)/run"

# the bundled models, each an artifact of its config: train experiment=pretrained_NAME by steps, then
# export the best checkpoint (float16 weights, session facts) and its card into deeporb/pretrained/
PRETRAINED := bach_chorales styles
CORPORA_bach_chorales := bach_chorales
CORPORA_styles := bach_chorales nottingham beethoven_quartets

pretrained: $(addprefix pretrained-,$(PRETRAINED))

# each corpus encoded afresh (seconds): a session encoded before the manifest kept mean pitches
# would train its parts in key order
pretrained-%: setup
	for corpus in $(CORPORA_$*); do $(PY) encode.py dataset=$$corpus progress=false || exit 1; done
	rm -rf outputs/pretrained/$*
	$(PY) train.py experiment=pretrained_$* hydra.run.dir=outputs/pretrained/$*
	$(PY) -m deeporb.pretrained export outputs/pretrained/$* $*

lint: $(VENV)/.installed-test
	$(PY) -m ruff check .

# the page tests drive a real headless browser: a chromium on PATH; else, as root on Debian, apt's;
# else Playwright's own download; else one line naming what to install (tests/browser.py finds
# the same browsers). Audio needs no system package (midirenderer + pretty_midi's soundfont come
# from pip), so no fluidsynth.
browser: $(VENV)/.installed-test
	@$(PY) tests/browser.py --found >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium; \
	  else $(PY) -m playwright install chromium >/dev/null 2>&1; fi; \
	  $(PY) tests/browser.py --found >/dev/null || { \
	    echo "error: the page tests need a headless chromium: install one (sudo apt-get install chromium, or: $(PY) -m playwright install chromium) and run make test again" >&2; exit 2; }; }

test: lint browser
	$(PY) -m pytest -q -n 2 --durations=10

clean:
	rm -rf $(VENV) data outputs multirun wandb
