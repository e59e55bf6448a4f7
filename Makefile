# Everything installs from the project's own files into .venv; nothing is fetched at run time.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# The Spark extra (pyspark, ~490 MB) is for the tests and `check --engine spark`; `make demo` goes without.
SPARK_STAMP := $(VENV)/.installed-spark

.PHONY: install demo test mutate bench-throughput bench-decrypt bench-icap bench-accuracy bench-collector clean

$(STAMP): pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --disable-pip-version-check --upgrade pip 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev,mutate]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import agent, collector, detectors, dpkt, presidio_analyzer, duckdb"
	touch $(STAMP)

$(SPARK_STAMP): $(STAMP)
	$(BIN)/pip install -q --disable-pip-version-check -c requirements.lock -e '.[dev,mutate,spark]' 2>&1 | grep -v "^WARNING: Location" || true
	$(BIN)/python -c "import pyspark, py4j"
	touch $(SPARK_STAMP)

install: $(STAMP)

# Self-check of the bundled demo captures against the demo filing; prints the findings. The second is an
# HTTPS export (HTTP/2 in TLS 1.3) opened with the key log its client wrote (fixtures/pcaps/README.md).
# selfcheck exits 1 when it finds mismatches, which is the demo's point, so that is not a failure here.
demo: $(STAMP)
	$(BIN)/egress-collector selfcheck fixtures/pcaps/demo.pcap --filing configs/filings/demo.yaml \
		--agent-config configs/agent.yaml --out demo-report --format table; \
	rc=$$?; [ $$rc -le 1 ] || exit $$rc
	$(BIN)/egress-collector selfcheck fixtures/pcaps/demo_tls.pcapng --keylog fixtures/pcaps/demo_tls.keys \
		--filing configs/filings/demo.yaml --agent-config configs/agent.yaml --out demo-report/tls \
		--format table; \
	rc=$$?; [ $$rc -le 1 ] || exit $$rc

test: $(SPARK_STAMP)
	$(BIN)/ruff check agent collector detectors tests bench fixtures tools
	$(BIN)/mypy agent collector detectors
	$(BIN)/python -m pytest -q

# Mutation testing (issue 10 §3b), outside `make test` and CI: slow (tens of minutes on 2 cores). Plants
# one bug at a time and lists the ones no test noticed. mutmut for collector/persons.py and
# detectors/validators.py ([tool.mutmut] in pyproject.toml), tools/mutate_sql.py for the SQL checks.
mutate: $(STAMP)
	$(BIN)/python tools/mutate_sql.py; sql=$$?; \
	$(BIN)/mutmut run --max-children 2; $(BIN)/mutmut results; \
	exit $$sql

bench-throughput: $(STAMP)
	$(BIN)/python bench/throughput.py

# Needs root (dumpcap captures the loopback traffic it makes); the capture is cached in bench/out/decrypt/.
bench-decrypt: $(STAMP)
	$(BIN)/python bench/decrypt.py

# Needs Squid (squid-openssl) and root (Squid drops to the proxy user); results in bench/out/icap/results.json.
bench-icap: $(STAMP)
	$(BIN)/python bench/icap.py

bench-accuracy: $(STAMP)
	$(BIN)/python bench/accuracy.py

# The collector at zone scale (issue 13): ingest through the service, spot check, selfcheck (and Spark when
# `check --engine` exists) at 10^6 and 10^7 pi_values rows; SIZES="1e6 1e7 1e8" for more. Results in
# bench/out/collector_scale/results.json; generated data is kept in bench/out/collector_scale/data/.
SIZES ?= 1e6 1e7
bench-collector: $(STAMP)
	$(BIN)/python bench/collector_scale.py --sizes $(SIZES)

clean:
	rm -rf $(VENV) demo-report .pytest_cache mutants
