"""`python -m job`: one training run, configured by environment variables (see --help)."""

from __future__ import annotations

import json
import sys
import textwrap
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn

import click

from job.contract import EXIT_MEANINGS, OUTPUTS, VARIABLES, ExitCode
from job.errors import JobError
from job.events import emit, log
from job.shortcuts import exit_now

if TYPE_CHECKING:
    from job.config import Config
    from job.plan import RunPlan


@dataclass
class _Known:
    """What the run has resolved so far: the settings once parsed, the plan once made (filled
    in as the run goes, hence not frozen). The fault handler reads them here rather than
    parsing the environment a second time."""

    cfg: Config | None = None
    plan: RunPlan | None = None


_pass_known = click.make_pass_decorator(_Known, ensure=True)


def _variables_help() -> str:
    width = max(len(v.name) for v in VARIABLES)
    # "\b" keeps click from re-wrapping the table.
    lines = ["\b", "Environment variables (default in brackets):"]
    for var in VARIABLES:
        lines.append(f"  {var.name:<{width}}  {var.help} [{var.default or 'empty'}]")
    lines += ["", "\b", "Exit codes (docs/contract.md):"]
    lines += [f"  {int(code):>3}  {meaning}" for code, meaning in EXIT_MEANINGS.items()]
    return "\n".join(lines)


def _outputs_help() -> str:
    text = f"Outputs in OUTPUT_DIR: {', '.join(OUTPUTS)}."
    # "\b" keeps click from re-flowing the lines wrapped here.
    return "\n".join(["\b", *textwrap.wrap(text, 90)])


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    help="Train the CIFAR-10 ResNet9 tutorial recipe; JSON-line events on stdout, progress on "
    "stderr.\n\n" + _outputs_help(),
    epilog=_variables_help(),
)
@click.option(
    "--variables", is_flag=True, help="Print every variable, its default and meaning as JSON."
)
@_pass_known
def cli(known: _Known, variables: bool) -> None:
    """The command: print the variables, or run (help text: ``_outputs_help``)."""
    if variables:
        click.echo(
            json.dumps(
                {v.name: {"default": v.default, "help": v.help} for v in VARIABLES}, indent=2
            )
        )
        return
    # Imported here so --help and --variables never load torch.
    from job.config import from_env
    from job.resources import check_output_space
    from job.runner import finish, start

    known.cfg = cfg = from_env()
    check_output_space(cfg.output_dir, cfg.model_width)  # a volume too small fails at once
    known.plan = start(cfg)
    finish(known.plan)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run, and turn every failure into its documented exit code.

    This is the one place that maps exceptions to exit codes: JobErrors carry theirs, a full
    volume and an exhausted memory are recognised here (:func:`_fault`), anything else is a
    bug and prints its traceback.
    """
    known = _Known()
    try:
        cli.main(args=argv, prog_name="python -m job", standalone_mode=False, obj=known)
        # Every output is written and fsynced: skip the teardown. Inside the try, as a SIGTERM
        # while it waits for the run's threads stops the run like any other (exit 143).
        exit_now(ExitCode.DONE)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.BAD_CONFIG)
    except JobError as exc:
        _fail(exc)
    except KeyboardInterrupt:
        emit("error", code=ExitCode.INTERRUPTED, message="Interrupted.")
        log("error: interrupted.")
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as exc:
        fault = _fault(exc, known)
        if fault is not None:
            _fail(fault)
        traceback.print_exc()
        message = (
            f"Unexpected {type(exc).__name__}: {exc}; this is a bug, please report it with the log."
        )
        emit("error", code=ExitCode.UNEXPECTED, message=message)
        log(f"error: {message}")
        sys.exit(ExitCode.UNEXPECTED)


def _fail(exc: JobError) -> NoReturn:
    """Report an expected failure: its sentence on stderr, an ``error`` event, its code."""
    reason = getattr(exc, "reason", None)
    extra = {"reason": reason} if reason is not None else {}
    emit("error", code=exc.exit_code, message=exc.message, **extra)
    log(f"error: {exc.message}")
    sys.exit(exc.exit_code)


def _fault(exc: Exception, known: _Known) -> JobError | None:
    """A fault of the machine as the expected failure it is, or None for a bug.

    A failed GPU (exit 6), a full volume (exit 5, or 3 in DATA_DIR) and a failed allocation
    (exit 5) are not bugs: they name the device, the folder and file, or BATCH_SIZE and
    MODEL_WIDTH, instead of a traceback.
    What they name comes from what the run had resolved (``known``) when the fault struck.
    """
    from job import resources

    cfg = known.cfg
    if cfg is not None and known.plan is not None and resources.is_device_failure(exc):
        return resources.device_failed(exc, str(known.plan.device), "training")
    if cfg is None or not (resources.is_no_space(exc) or resources.is_out_of_memory(exc)):
        return None  # no settings yet: nothing ran that could fill a volume or the memory
    if isinstance(exc, OSError) and resources.is_no_space(exc):
        return resources.disk_full(exc, cfg.output_dir, cfg.data_dir, cfg.promote_dir)
    # The device the run resolved; before the plan, the setting (resources reads "auto" too).
    device = str(known.plan.device) if known.plan is not None else cfg.device
    return resources.out_of_memory(exc, cfg.batch_size, cfg.model_width, device)


if __name__ == "__main__":
    main()
