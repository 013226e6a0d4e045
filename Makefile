# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: setup up test bench check soak

setup:
	@bash scripts/setup.sh

# The whole chain on the embedded default (SQLite) and the shipped rules/.
up: setup
	.venv/bin/smspolicy up

# Every test; the Redis tests start their own redis-server (installed by .ci/run in CI).
test: setup
	.venv/bin/python -m pytest -q

check: setup
	.venv/bin/smspolicy check rules/

# the bench extra adds the peer engine (zen-engine) the rules-engine comparison runs against
bench: setup
	.venv/bin/python -m pip install --quiet -e '.[test,bench]'
	.venv/bin/python -m bench

# Issue 8's soak at full size: 100,000 messages through the whole chain under kill -9 and
# upstream faults (CI runs 5,000 in tests/soak). SOAK_ARGS="--messages 20000 --seed 7" to vary.
soak: setup
	.venv/bin/python -m tests.soak $(SOAK_ARGS)
