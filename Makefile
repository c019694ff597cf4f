# Conveniences over scripts/dev.sh, which does the set-up (see README).
.PHONY: run headless test fuzz soak lint screenshot bench bench-quick clean

run:
	scripts/dev.sh run

headless:
	scripts/dev.sh run --headless

test:
	scripts/dev.sh test

# The schemathesis fuzzing of tests/test_fuzz.py at length: 2,000 examples per operation
# instead of the normal suite's 30 (about three minutes), and a summary of what it reached.
fuzz:
	scripts/dev.sh setup test
	QT_QPA_PLATFORM=offscreen TASKDESK_FUZZ_EXAMPLES=2000 timeout 900 \
		.venv/bin/python -m pytest -q -rP tests/test_fuzz.py

# The soak of scripts/soak.py (about ten minutes): steady POSTs and GETs from four client
# processes while tasks complete, a graceful restart halfway; then every accepted task must be
# completed exactly once, memory and open fds flat, /health never silent over 1 s.
soak:
	scripts/dev.sh setup test
	QT_QPA_PLATFORM=offscreen timeout 1200 .venv/bin/python scripts/soak.py --minutes 10

lint:
	scripts/dev.sh setup test
	.venv/bin/ruff check .
	.venv/bin/mypy

screenshot:
	scripts/dev.sh setup test
	QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py docs/screenshot.png
	QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py --tray-menu docs/tray-menu.png
	QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/cli_screenshot.py docs/cli.png

bench:
	scripts/dev.sh bench

bench-quick:
	scripts/dev.sh bench --quick

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache *.egg-info
