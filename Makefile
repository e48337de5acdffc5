# The two commands a newcomer needs (see README.md):
#   make run   - install and start the service on embedded defaults
#   make test  - install and start everything the tests need, lint, run all tests
.PHONY: run test test-fast lint images

run:
	scripts/run.sh

test:
	scripts/test.sh

# A developer's quick loop: skips tests marked slow.
test-fast:
	scripts/test.sh -m "not slow"

lint:
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

images:
	scripts/ensure_docker.sh && scripts/testimages/build.sh
