# One entry point for setting up, running and checking faceid. `make help` lists the targets.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= ../shared/data
MODEL := models/facenet-20170512-110547.safetensors
GRAPH := models/facenet-20170512-110547.graph.pb
SFACE := models/sface-2021dec-float32.onnx
YUNET := models/yunet-2023mar-float32.onnx

.PHONY: help setup milvus-server compat-clients demo test stress lint eval-lfw bench bench-setup bench-tiny clean

help:
	@echo "make demo      set up (venv, packages, verified model) and run the demo"
	@echo "make test      set up and run the test suite"
	@echo "make stress    the heavier crash, concurrency and fuzz tests (400 kills, 8 writers, ~104,400 API requests, 100,000 image byte strings)"
	@echo "make lint      ruff and mypy"
	@echo "make milvus-server  a real Milvus standalone (milvus==2.3.5) in .venv-milvus, for the tests (docs/milvus-server.md)"
	@echo "make eval-lfw  LFW verification on $(DATA)/lfw"
	@echo "make bench     speed figures side by side with face_recognition (docs/speed.md)"

$(BIN)/faceid: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,milvus,ray]'
	touch $@

$(MODEL): | $(BIN)/faceid
	$(BIN)/faceid models pull

# the frozen graph made from the weights (faster start); `faceid models pull` makes it
$(GRAPH): $(MODEL)
	$(BIN)/faceid models pull

$(SFACE): | $(BIN)/faceid
	$(BIN)/faceid models pull sface

$(YUNET): | $(BIN)/faceid
	$(BIN)/faceid models pull yunet

# compreface-sdk 0.6 pins urllib3<2, which the rest of faceid's environment does not take: it gets a
# virtualenv of its own, driven by tests/test_compat_clients.py through a small script
COMPREFACE := .venv-compreface/bin/python
$(COMPREFACE):
	$(PYTHON) -m venv .venv-compreface
	.venv-compreface/bin/python -m pip install --quiet 'compreface-sdk==0.6.0' 'urllib3<2'

compat-clients: $(COMPREFACE)

setup: $(BIN)/faceid $(MODEL) $(GRAPH) $(SFACE) $(YUNET) $(COMPREFACE) milvus-server
	$(BIN)/faceid models verify
	$(BIN)/faceid models verify sface
	$(BIN)/faceid models verify yunet

# A real Milvus server for the tests (docs/milvus-server.md): the milvus wheel (Milvus
# standalone's binary) in a virtualenv of its own, without its client extra (which pins an old pymilvus).
MILVUS_VENV ?= .venv-milvus
milvus-server: $(MILVUS_VENV)/bin/milvus-server

$(MILVUS_VENV)/bin/milvus-server:
	$(PYTHON) -m venv $(MILVUS_VENV)
	$(MILVUS_VENV)/bin/python -m pip install --quiet --no-cache-dir 'milvus==2.3.5'

demo: setup
	$(BIN)/faceid demo --out out/demo

test: setup
	$(BIN)/python -m pytest --durations=15

stress: $(BIN)/faceid
	FACEID_STRESS=1 $(BIN)/python -m pytest -m stress -s tests/test_crash.py tests/test_concurrency.py
	FACEID_STRESS=1 $(BIN)/python -m pytest -s tests/test_api_fuzz.py tests/test_api_hostile.py tests/test_decoder_fuzz.py

lint: $(BIN)/faceid
	$(BIN)/ruff check faceid tests
	$(BIN)/ruff format --check faceid tests
	$(BIN)/mypy faceid

eval-lfw: setup
	$(BIN)/faceid eval lfw --data $(DATA)/lfw --plots out/eval-lfw

# face_recognition (the comparison in `make bench`): dlib-bin and the models from the extra,
# face_recognition itself without its dependencies (it would pull dlib's source build).
bench-setup: setup
	$(BIN)/python -m pip install --quiet -e '.[dev,serve,milvus,ray,bench]'
	$(BIN)/python -m pip install --quiet --no-deps 'face-recognition==1.3.0'
	$(BIN)/python -c "import os, face_recognition, face_recognition_models as m; \
		assert os.path.isfile(m.face_recognition_model_location()), 'face_recognition models missing'; \
		print('face_recognition ready, models in', os.path.dirname(m.face_recognition_model_location()))"

bench: bench-setup
	mkdir -p out
	$(BIN)/faceid bench --data $(DATA) --images 1000 | tee out/bench.jsonl

bench-tiny: setup
	$(BIN)/faceid bench --tiny --data $(DATA)

clean:
	rm -rf $(VENV) $(MILVUS_VENV) out .pytest_cache
