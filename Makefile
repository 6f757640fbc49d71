# The two commands: `make run` (the demo pipeline) and `make test` (every test tier).
SHELL := /bin/bash
PY := .venv/bin/python
export RABBITMQ_URL ?= amqp://guest:guest@127.0.0.1:5672/
export MONGODB_URL ?= mongodb://127.0.0.1:27017/

.PHONY: setup deps run test unit bench bench-groups soak clean

setup:
	@bash scripts/bootstrap.sh

deps: setup
	@bash scripts/deps.sh

run: deps
	@$(PY) -m tests.harness.demo

test: deps
	@$(PY) -m pytest $(PYTEST_ARGS)

unit: setup
	@$(PY) -m pytest tests/unit $(PYTEST_ARGS)

# the benchmark: figures beside baselines of the same run (about 15 minutes; BENCH_ARGS=--quick: one)
bench: deps
	@$(PY) -m tests.bench $(BENCH_ARGS)

# Push Groups measured on its own (about 5 minutes at the default scale)
bench-groups: deps
	@$(PY) -m tests.bench --scenarios groups $(BENCH_ARGS)

# the fault-injection suite, long: DURATION seconds of changes and faults (its own RabbitMQ and MongoDB-wire nodes)
DURATION ?= 600
soak: setup
	@$(PY) -m tests.faults.runner --duration $(DURATION) $(SOAK_ARGS)

clean:
	rm -rf .run
