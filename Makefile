# Two commands matter:  `make book` builds the whole book, `make test` runs every test.
# Both work on a fresh machine with only Python 3.11 and make.

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ASSETS := book/assets/vendor/.installed
JB_FLAGS := -W -n --keep-going

.PHONY: book test install assets browser clean checkpoints help

help:
	@echo "make book   build the HTML book (executes every chapter) into _build/html"
	@echo "make test   run every test: companion, notebooks (nbval), built book in Chromium"

$(STAMP): requirements.txt pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	$(BIN)/python -m pip install --quiet --no-deps -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3" >/dev/null
	touch $@

install: $(STAMP)

# MathJax and the widget renderer, served from the book so that it works offline.
$(ASSETS): $(STAMP) package.json package-lock.json tools/install_assets.py
	$(BIN)/python tools/install_assets.py
	touch $@

assets: $(ASSETS)

# The jupyter cache re-executes a chapter only when its notebook changes; a change to the
# companion's code must re-execute every chapter, so it clears the execution cache and Sphinx's
# saved doctrees (without which Sphinx would not even re-read the unchanged notebooks).
SOURCES := $(shell find src/companion -name '*.py' -o -name '*.js')
EXEC_STAMP := _build/.companion-sources

$(EXEC_STAMP): $(SOURCES)
	rm -rf _build/.jupyter_cache _build/.doctrees
	mkdir -p _build
	touch $@

book: $(STAMP) $(ASSETS) $(EXEC_STAMP)
	$(BIN)/jupyter-book build . $(JB_FLAGS)
	@echo
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"
	@echo "(or serve it: $(BIN)/python -m http.server -d _build/html 8000)"

browser:
	bash tools/ensure_chromium.sh

# pytest's options (pyproject.toml) run nbval over every chapter notebook, failing on errors;
# loadfile keeps each notebook, and the built-book browser tests, on one worker.
test: $(STAMP) $(ASSETS) $(EXEC_STAMP) browser
	$(BIN)/python -m pytest -n 2 --dist loadfile

clean:
	rm -rf _build .cache
