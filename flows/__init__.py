"""Prefect wiring for the denoise pipeline; all logic lives in src/denoise."""
