"""Suite-wide set-up: this folder on ``sys.path`` for the shared test helpers."""
