"""Icons and other files the window ships with."""

from pathlib import Path

RESOURCES_DIR = Path(__file__).resolve().parent
