"""`python -m denoise` runs the CLI."""

from denoise.cli import app

app(prog_name="denoise")
