"""The `denoise` command line: one command per pipeline stage, plus run, apply and the others.

Each stage command loads params.yaml and calls the stage module's run(params); heavy modules
(TensorFlow, MLflow) are imported inside the commands that need them, so light stages start
fast. The commands are thin wrappers that parse options, call one module and print its summary:
base.py holds the app and what they share, stages.py a command per DVC stage, project.py the
commands on the project as a whole (run, push, restore, recipe, ui), models.py apply and
model-summary.
"""

# Each module adds its commands to app; --help lists them in this order.
# isort: off
from denoise.cli.base import app
from denoise.cli import stages, project, models  # noqa: F401

# isort: on

__all__ = ["app"]
