# Two commands matter:  `make book` builds the whole book, `make test` runs every test.
# Both work on a fresh machine with only Python 3.11 and make.
#
#   PYTHON=python3.11 make ...     the Python that creates the virtual environment (3.11 only)
#   TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu make install
#                                  take torch from that index first (the CPU-only build: no
#                                  gigabytes of CUDA libraries on a laptop without a GPU)
#   CHROMIUM=/path/to/chrome make test      the browser for the built-book tests

PYTHON ?= $(shell command -v python3.11 || command -v python3)
TORCH_INDEX_URL ?=
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ASSETS := book/assets/vendor/.installed
TORCH_PIN := $(shell grep -E '^torch==' requirements.txt)
BUILD_RESULT := _build/.book-build.json
# Trained models (see README.md); the companion finds the same folder from any directory.
MODEL_CACHE := $(or $(COMPANION_CACHE_DIR),.cache/companion)

.PHONY: book test install assets browser clean clean-cache help

help:
	@echo "make book         build the HTML book (executes the chapters whose code changed) into _build/html"
	@echo "make test         run every test: build the book, then companion, notebooks (nbval), book in Chromium"
	@echo "make clean-cache  forget the trained models ($(MODEL_CACHE)); make clean: that and _build"

$(STAMP): requirements.txt pyproject.toml
	@python=$(if $(wildcard $(BIN)/python),$(BIN)/python,$(PYTHON)); \
	if [ -z "$$python" ] || ! "$$python" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then \
		version=$$("$${python:-python3}" -c 'import sys; print("Python", sys.version.split()[0])' 2>/dev/null || echo "not a working Python"); \
		echo "make: the book needs Python 3.11; '$${python:-python3}' is $$version." >&2; \
		echo "make: install Python 3.11 and run: rm -rf $(VENV); PYTHON=python3.11 make $(or $(MAKECMDGOALS),install)" >&2; \
		exit 1; \
	fi
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX_URL),$(BIN)/python -m pip install --quiet "$(TORCH_PIN)" --index-url $(TORCH_INDEX_URL))
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

# tools/build_book.py first runs tools/refresh_notebooks.py: a chapter re-executes when the
# notebook or a companion module it imports (transitively) changed, and only then.
book: $(STAMP) $(ASSETS)
	$(BIN)/python tools/build_book.py
	@echo
	@echo "The book is at file://$(CURDIR)/_build/html/index.html"
	@echo "(or serve it: $(BIN)/python -m http.server -d _build/html 8000)"

browser:
	@bash tools/ensure_chromium.sh >/dev/null

# Two timed stages. build-book executes each changed chapter once, training its models into the
# shared cache; pytest then runs the companion's tests, nbval over every chapter (loading the
# cached models) and the browser tests on the book just built (the failure of a build shows up
# there, with its log). loadfile keeps each notebook, and the browser tests, on one worker.
test: $(STAMP) $(ASSETS) browser
	@rm -f $(BUILD_RESULT) _build/stage-times.txt
	@bash tools/stage.sh build-book $(BIN)/python tools/build_book.py --log _build/book-build.log --result $(BUILD_RESULT) || true
	@BOOK_BUILD_RESULT=$(CURDIR)/$(BUILD_RESULT) bash tools/stage.sh pytest $(BIN)/python -m pytest -n 2 --dist loadfile; \
	status=$$?; echo; cat _build/stage-times.txt; exit $$status

clean-cache:
	rm -rf "$(MODEL_CACHE)"

clean: clean-cache
	rm -rf _build
