"""`python -m job`: one training run, configured by environment variables (see --help)."""

from __future__ import annotations

import json
import sys
import traceback

import click

from job.config import VARIABLES, from_env
from job.errors import JobError
from job.events import emit, log


def _variables_help() -> str:
    width = max(len(v.name) for v in VARIABLES)
    # "\b" keeps click from re-wrapping the table.
    lines = ["\b", "Environment variables (default in brackets):"]
    for var in VARIABLES:
        lines.append(f"  {var.name:<{width}}  {var.help} [{var.default or 'empty'}]")
    lines += [
        "",
        "\b",
        "Exit codes: 0 done, 2 bad configuration, 3 data unavailable or invalid, "
        "4 training diverged, 143 stopped by SIGTERM after checkpointing (rerun to resume), "
        "1 unexpected.",
    ]
    return "\n".join(lines)


@click.command(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 120},
    epilog=_variables_help(),
)
@click.option(
    "--variables", is_flag=True, help="Print every variable, its default and meaning as JSON."
)
def cli(variables: bool) -> None:
    """Train the CIFAR-10 ResNet9 tutorial recipe; JSON-line events on stdout, progress on stderr.

    \b
    Outputs in OUTPUT_DIR: config.json, history.json, history.csv, metrics.json, model.pt,
    checkpoint.pt, accuracy.png, losses.png, lrs.png, samples.png.
    """
    if variables:
        click.echo(
            json.dumps(
                {v.name: {"default": v.default, "help": v.help} for v in VARIABLES}, indent=2
            )
        )
        return
    from job.runner import run  # torch loads only for a real run, keeping --help fast

    run(from_env())


def main(argv: list[str] | None = None) -> None:
    """Entry point: run, and turn every failure into its documented exit code."""
    try:
        cli.main(args=argv, prog_name="python -m job", standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(2)
    except JobError as exc:
        emit("error", code=exc.exit_code, message=exc.message)
        log(f"error: {exc.message}")
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        emit("error", code=130, message="Interrupted.")
        log("error: interrupted.")
        sys.exit(130)
    except Exception as exc:
        traceback.print_exc()
        message = (
            f"Unexpected {type(exc).__name__}: {exc}; this is a bug, please report it with the log."
        )
        emit("error", code=1, message=message)
        log(f"error: {message}")
        sys.exit(1)
    sys.exit(0)


if __name__ == "__main__":
    main()
