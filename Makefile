# sendit: two commands on a fresh machine -> `make demo` and `make test`.
SHELL := /bin/bash
PY ?= python3.11
UV := $(shell command -v uv 2>/dev/null || echo .tools/bin/uv)
VENV := .venv
DEMO := $(CURDIR)/.demo

.PHONY: install demo demo-dasher demo-pacs receiver test test-deps lint bench dasher-dev clean airflow
# Debian packages the tests use as real parts: dciodvfy (DICOM validity), fonts for planted text
# (Latin, a monospace, Japanese: devtools/gate_recall.py and the line classifier's check too),
# a real PACS (Orthanc + DICOMweb) and dcmtk (storescu sends studies to the receiver)
PACS_PACKAGES := orthanc orthanc-dicomweb dcmtk
DEBIAN_TEST_PACKAGES := dicom3tools fonts-dejavu-core fonts-liberation fonts-noto-mono \
  fonts-droid-fallback chromium chromium-driver $(PACS_PACKAGES)

$(UV):
	$(PY) -m venv .tools && .tools/bin/pip install -q uv==0.13.9

$(VENV)/.installed: uv.lock pyproject.toml | $(UV)
	$(UV) sync --frozen --extra dev --python $(PY)
	touch $@

install: $(VENV)/.installed  ## create .venv from the lock file

demo: install  ## generate sample studies and run the pipeline on them (local keyed pseudonyms, local outbox)
	SENDIT_HOME=$(DEMO) $(VENV)/bin/sendit sample $(DEMO)/input --force
	@# exit 3 = some batches ended ERROR: the demo's three are deliberate (see below)
	SENDIT_HOME=$(DEMO) $(VENV)/bin/sendit run --input $(DEMO)/input --outbox $(DEMO)/outbox || [ $$? -eq 3 ]
	@echo; echo "the 3 ERROR batches are deliberate: a study with a corrupt file (not delivered incomplete),"
	@echo "a folder holding two study dates, and an image without an accession number."
	@echo; echo "archives:"; find $(DEMO)/outbox/Collection -name '*.tar.gz' | sed 's|^|  |'
	@echo "rows: $(DEMO)/outbox/bigquery/DEMO/dicom.jsonl ($$(wc -l < $(DEMO)/outbox/bigquery/DEMO/dicom.jsonl) rows)"
	@echo; echo "burned-in text: every frame of every image is screened. The CT study ACC10001 has a localizer"
	@echo "showing the patient's name, sex and dates with no header flag saying so: it was found, masked"
	@echo "and verified (counted in 'burned-in text' above), as were the ultrasound study ACC10009's."
	@echo; echo "held for review: the dose report screen capture (ACC10010) ends HELD: masking its text would"
	@echo "cover more than pixel_mask_max_share (10%), so no automatic pass can call it clean. Review it:"
	@echo "  on the dashboard: make airflow, then Browse -> sendit batches, 'Held for review': Release / Reject"
	@echo "  on the command line (the HELD id is in the summary above):"
	@echo "    SENDIT_HOME=$(DEMO) $(VENV)/bin/sendit run --input $(DEMO)/input --outbox $(DEMO)/outbox --release <id>   (or --reject <id>)"

test-deps:  ## Debian packages of the tests (installed when missing; needs root or sudo)
	@missing=$$(for p in $(DEBIAN_TEST_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  sudo=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  echo "installing Debian packages: $$missing"; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi

test: install test-deps  ## run the test suite (starts the services it needs)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy
	$(VENV)/bin/pytest -q -p no:cacheprovider

lint: install  ## ruff, the import contracts of the layers, mypy (pyproject.toml [tool.importlinter], [tool.mypy])
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports --no-cache
	$(VENV)/bin/mypy

bench: install  ## throughput of the pipeline vs plain pydicom vs naive deid
	$(VENV)/bin/python -m devtools.bench

# the DASHER dev server is a development tool (devtools/, not installed); its port is configurable
DASHER_PORT ?= 8765
DASHER_DEV := $(VENV)/bin/python -m devtools.dasher_server

dasher-dev: install  ## start the DASHER-compatible development server on :$(DASHER_PORT)
	$(DASHER_DEV) --port $(DASHER_PORT)

clean:
	rm -rf $(DEMO) $(DEMO)-pacs .pytest_cache

demo-pacs: install  ## a local PACS (Orthanc) with the sample studies -> retrieve DAG -> folder DAG -> outbox
	@$(MAKE) --no-print-directory test-deps DEBIAN_TEST_PACKAGES="$(PACS_PACKAGES)"
	PYTHONPATH=. $(VENV)/bin/python -m devtools.demo_pacs $(DEMO)-pacs --method $(or $(METHOD),c-get)

# the DICOM receiver (C-STORE SCP), in the foreground: studies from the allowed AE titles
# land in RECEIVER_INPUT, each closed after RECEIVER_STABLE_AGE quiet seconds (docs/pacs.md)
RECEIVER_INPUT ?= $(DEMO)/received
RECEIVER_PORT ?= 11112
RECEIVER_AES ?= STORESCU
RECEIVER_STABLE_AGE ?= 60

receiver: install  ## run the DICOM receiver on :$(RECEIVER_PORT) (Ctrl-C stops it)
	$(VENV)/bin/sendit receive --input $(RECEIVER_INPUT) --port $(RECEIVER_PORT) \
	  $(foreach ae,$(RECEIVER_AES),--allow-ae $(ae)) --stable-age $(RECEIVER_STABLE_AGE)

demo-dasher: install  ## the demo with pseudonyms from the DASHER dev server
	@$(DASHER_DEV) --port $(DASHER_PORT) --credentials-out $(DEMO)/dasher.json & pid=$$!; \
	trap "kill $$pid" EXIT; sleep 2; \
	SENDIT_HOME=$(DEMO) $(VENV)/bin/sendit sample $(DEMO)/input --force && \
	SENDIT_HOME=$(DEMO) $(VENV)/bin/sendit run --input $(DEMO)/input --outbox $(DEMO)/outbox-dasher \
	  --provider dasher --dasher-credentials $(DEMO)/dasher.json --work-root $(DEMO)/work-dasher \
	  || [ $$? -eq 3 ]
	@echo; echo "the 3 ERROR batches are deliberate (see make demo); pseudonyms came from the DASHER dev server on :$(DASHER_PORT)"
	@echo; echo "archives:"; find $(DEMO)/outbox-dasher/Collection -name '*.tar.gz' | sed 's|^|  |'
	@echo "rows: $(DEMO)/outbox-dasher/bigquery/DEMO/dicom.jsonl ($$(wc -l < $(DEMO)/outbox-dasher/bigquery/DEMO/dicom.jsonl) rows)"

# a real local Airflow (api-server, scheduler, dag-processor, triggerer; LocalExecutor) on the
# local PostgreSQL, else SQLite; its state (key, demo folder, work, outbox, AIRFLOW_HOME) in
# SENDIT_HOME; `make airflow AIRFLOW_PORT=8081 SENDIT_HOME=/tmp/x` (docs/setup.md)
AIRFLOW_PORT ?= 8080
SENDIT_HOME ?= $(CURDIR)/.sendit

airflow: install  ## a real Airflow with sendit's DAGs on :$(AIRFLOW_PORT), in the foreground (Ctrl-C stops it)
	$(VENV)/bin/python -m devtools.local_airflow --port $(AIRFLOW_PORT) --home "$(SENDIT_HOME)"
