# The two commands of the README. Both set everything up first (scripts/setup.sh is idempotent).
.PHONY: setup up test bench check

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
