# Conveniences over scripts/dev.sh, which does the set-up (see README).
.PHONY: run headless test lint screenshot bench bench-quick clean

run:
	scripts/dev.sh run

headless:
	scripts/dev.sh run --headless

test:
	scripts/dev.sh test

lint:
	scripts/dev.sh setup test
	.venv/bin/ruff check .
	.venv/bin/mypy

screenshot:
	scripts/dev.sh setup test
	QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/screenshot.py docs/screenshot.png

bench:
	scripts/dev.sh bench

bench-quick:
	scripts/dev.sh bench --quick

clean:
	rm -rf .venv .pytest_cache .mypy_cache .ruff_cache *.egg-info
