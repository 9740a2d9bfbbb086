"""What both Beam jobs (build_tfrecords, embed_catalog) share around their pipeline.

Flags: the command line splits into the job's own flags and Beam's. ``parse_known_args`` alone
hands a mistyped flag (``--numshards 3``) to Beam, which ignores it; the job then runs with the
default. Here a flag that no registered ``PipelineOptions`` defines is an error naming it and the
closest flag that exists. Then the runner (local by default), waiting for the job, and logging.
"""

import difflib
import importlib
import logging

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

# Without --runner: the local portable runner that Beam's DirectRunner itself falls back to. It
# honours --direct_num_workers / --direct_running_mode and needs no network, whereas
# `--runner DirectRunner` first tries to download and start the Prism runner (Beam 2.77).
DEFAULT_RUNNER = "FnApiRunner"
# Runners Beam ships but does not resolve by their short name (Beam 2.77 knows the others).
RUNNER_PATHS = {"daskrunner": "apache_beam.runners.dask.dask_runner.DaskRunner"}


def _register_dask_options(beam_args):
    """The DaskRunner's options exist only once its module is imported (dask is heavy: on demand)."""
    if any("dask" in a.lower() for a in beam_args):
        try:
            importlib.import_module("apache_beam.runners.dask.dask_runner")
        except ImportError:  # without dask the runner fails later, naming itself
            pass


def parse_job_args(parser, argv=None):
    """(app arguments, Beam arguments); ``parser.error`` (exit 2) on a flag that neither defines."""
    args, beam_args = parser.parse_known_args(argv)
    _register_dask_options(beam_args)
    options = PipelineOptions(beam_args)
    known = set(options.get_all_options(retain_unknown_options=False))
    unknown = [k for k in options.get_all_options(retain_unknown_options=True) if k not in known]
    if unknown:
        name = f"--{unknown[0]}"
        ours = [o for action in parser._actions for o in action.option_strings if o.startswith("--")]
        close = difflib.get_close_matches(name, ours + [f"--{k}" for k in known], n=1)
        parser.error(
            f"unrecognized argument {name}"
            + (f" (did you mean {close[0]}?)" if close else "")
            + "; it is neither a flag of this job nor a Beam pipeline option."
        )
    return args, beam_args


def pipeline_options(beam_args) -> PipelineOptions:
    """Beam's options, on DEFAULT_RUNNER unless ``--runner`` names another."""
    options = PipelineOptions(beam_args)
    standard = options.view_as(StandardOptions)
    if standard.runner is None:
        standard.runner = DEFAULT_RUNNER
    elif isinstance(standard.runner, str):
        standard.runner = RUNNER_PATHS.get(standard.runner.lower(), standard.runner)
    return options


def wait_until_finish(result) -> None:
    """Waits for the job, then closes the connection a runner's result may hold (the DaskRunner's
    dask Client), so that none outlives the job in a long-lived process."""
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)
        if client is not None and hasattr(client, "close"):
            client.close()


class _JobFormatter(logging.Formatter):
    """The job's own INFO messages as plain lines; anything else with its level and logger."""

    def format(self, record):
        ours = record.name == "__main__" or record.name.split(".")[0] == "pipelines"
        self._style._fmt = (
            "%(message)s" if ours and record.levelno == logging.INFO else "%(levelname)s %(name)s: %(message)s"
        )
        return super().format(record)


def setup_job_logging():
    """INFO for the job's own messages. The local runner's plumbing is chatty at INFO, and its job
    service repeats every worker warning; worker errors still show."""
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not root.handlers:
        root.addHandler(logging.StreamHandler())
    for handler in root.handlers:
        handler.setFormatter(_JobFormatter())
    for name in (
        "apache_beam.runners.worker",
        "apache_beam.runners.portability.local_job_service",
        "apache_beam.runners.portability.fn_api_runner",
    ):
        logging.getLogger(name).setLevel(logging.ERROR)
