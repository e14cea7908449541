"""Project error types: anything a user can fix by changing an input or a parameter, and the
stop of a stage whose starter ended (StoppedError)."""


class DenoiseError(Exception):
    """A problem with the user's input; the CLI prints its message on one line and exits 1."""


class ConfigError(DenoiseError):
    """An unknown key or a bad value in params.yaml."""


class VideoError(DenoiseError):
    """A video file that cannot be used: unreadable, corrupt, empty, too small or greyscale."""


class DataError(DenoiseError):
    """A stage's input files are missing or inconsistent (run the upstream stage first)."""


class ValidationError(DenoiseError):
    """Data or results that fail an expectation (params.yaml `validate`); names which and why."""


class InputError(DenoiseError):
    """An input to `denoise apply` that is missing, unreadable or of an unsupported type."""


class ModelError(DenoiseError):
    """A model that cannot be loaded: no such file, registered model or alias, or no server."""


class NotRegisteredError(ModelError):
    """No model under a registry name and alias: no tracking store yet, or no such alias."""


class TrainingError(DenoiseError):
    """Training that cannot give a model: it diverged before any epoch completed."""


class ServiceError(DenoiseError):
    """A server the pipeline needs (tracking, Prefect API, DVC remote) is down or refuses us."""


class UnreachableError(ServiceError):
    """A server that did not answer in time, or refused the connection: perhaps transient, so
    a scheduled run may try again."""


class BusyError(DenoiseError):
    """Another process holds what this one needs (a trainer's checkpoint folder)."""


class DiskFullError(DenoiseError):
    """A write failed for lack of space (or the file-size limit); the previous output stays."""


class StoppedError(BaseException):
    """The process was asked to stop (SIGTERM), or the process that started it ended.

    Not an Exception, as KeyboardInterrupt is not: a library's broad `except Exception` (as
    TensorFlow's AutoGraph has around converting a function while Keras traces a train step)
    would swallow the stop and the stage would run on. The CLI prints it as one line.
    """
