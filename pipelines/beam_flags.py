"""Splits a Beam job's command line into its own flags and Beam's, refusing a flag neither knows.

``parse_known_args`` alone hands a mistyped flag (``--numshards 3``) to Beam, which ignores it; the
job then runs with the default. Here a flag that no registered ``PipelineOptions`` defines is an
error naming it and the closest flag that exists.
"""
import difflib
import importlib

from apache_beam.options.pipeline_options import PipelineOptions


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
        parser.error(f"unrecognized argument {name}" + (f" (did you mean {close[0]}?)" if close else "")
                     + "; it is neither a flag of this job nor a Beam pipeline option.")
    return args, beam_args
