# step-worker. `make demo` runs the whole job on an embedded AWS; `make test` runs the tests.
# Against AWS (or any endpoint in AWS_ENDPOINT_URL): make build package deploy, then make outputs.

PROJECT ?= step-worker
ENV ?= stable
REGION ?= $(or $(AWS_REGION),$(AWS_DEFAULT_REGION),eu-west-1)
STACK ?= $(PROJECT)-$(ENV)
PARAMETERS ?=
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
AWS := $(BIN)/aws --region $(REGION)
# Evaluated only by the targets that use them, so that `make test` needs no AWS credentials.
ACCOUNT = $(shell $(AWS) sts get-caller-identity --query Account --output text)
BUCKET ?= $(PROJECT)-artifacts-$(ACCOUNT)-$(REGION)

.PHONY: install build package deploy outputs delete test lint lint-template lint-security lint-python demo bench local fill watch stop resume machine clean

install: $(VENV)/.installed

# Rebuilt only when requirements-dev.txt changes.
$(VENV)/.installed: requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

# Python needs no compiling: check that handler.py compiles (tests check what it imports).
build: install
	$(BIN)/python -m py_compile handler.py

package: build
	@test -n "$(ACCOUNT)" || (echo "no AWS account: set credentials, or AWS_ENDPOINT_URL for make local" && false)
	$(AWS) s3api head-bucket --bucket $(BUCKET) 2>/dev/null || $(AWS) s3 mb s3://$(BUCKET)
	$(AWS) cloudformation package --template-file template.yml --s3-bucket $(BUCKET) \
	  --output-template-file packaged.yml

deploy: install
	$(AWS) cloudformation deploy --template-file packaged.yml --stack-name $(STACK) \
	  --capabilities CAPABILITY_IAM --no-fail-on-empty-changeset \
	  --parameter-overrides ProjectName=$(PROJECT) Env=$(ENV) $(PARAMETERS)

outputs: install
	@$(AWS) cloudformation describe-stacks --stack-name $(STACK) --query 'Stacks[0].Outputs'

delete: install
	$(AWS) cloudformation delete-stack --stack-name $(STACK)
	$(AWS) cloudformation wait stack-delete-complete --stack-name $(STACK)

test: install lint
	$(BIN)/python -m pytest -q

lint: lint-template lint-security lint-python

lint-template: install
	$(BIN)/cfn-lint template.yml

# checkov has a venv of its own; every check it skips carries its reason in template.yml.
$(VENV)/checkov/.installed: local/checkov-requirements.txt
	$(PYTHON) -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet -r local/checkov-requirements.txt
	touch $@

lint-security: $(VENV)/checkov/.installed
	$(VENV)/checkov/bin/checkov -f template.yml --framework cloudformation --compact --quiet --skip-download

lint-python: install
	$(BIN)/ruff check --line-length 110 --select E,F,W,B,UP,SIM,I handler.py local tests

demo: install
	$(BIN)/python -m local.demo

# Measurements on the embedded AWS, printed side by side (never asserted by tests).
BENCH ?=
bench: install
	$(BIN)/python -m local.bench $(BENCH)

# The embedded AWS as a server on 127.0.0.1:$(PORT), for the commands above with AWS_ENDPOINT_URL set.
PORT ?= 5000
local: install
	$(BIN)/python -m local.server --port $(PORT)

# Against the endpoint in use: fill the demo table, follow a run (the newest by default), stop one.
ITEMS ?= 10000
EXECUTION ?=
fill: install
	AWS_DEFAULT_REGION=$(REGION) $(BIN)/python -m local.demo fill --count $(ITEMS) --table $(PROJECT)-url-$(ENV)

watch: install
	AWS_DEFAULT_REGION=$(REGION) $(BIN)/python -m local.progress --stack $(STACK) $(if $(EXECUTION),--execution $(EXECUTION))

stop: install
	@test -n "$(EXECUTION)" || (echo "make stop EXECUTION=<the Puppeteer execution's ARN>" && false)
	$(AWS) stepfunctions stop-execution --execution-arn $(EXECUTION) --cause "stopped with make stop"
	@echo "Stopped. Every segment keeps its checkpoint: make resume EXECUTION=$(EXECUTION)"

resume: install
	@test -n "$(EXECUTION)" || (echo "make resume EXECUTION=<a stopped or failed execution's ARN>" && false)
	AWS_DEFAULT_REGION=$(REGION) $(BIN)/python -m local.progress --stack $(STACK) --resume --execution $(EXECUTION)

# Redraws machine.png from template.yml (needs Graphviz's dot: installed with apt when missing).
machine: install
	command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz)
	$(BIN)/python -m local.draw

clean:
	rm -rf $(VENV) packaged.yml .pytest_cache .ruff_cache
