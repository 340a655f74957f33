"""Options that several commands take, each declared once: typer aliases (`Annotated[type,
typer.Option(...)]`) and option groups.

An option group is a frozen dataclass whose fields are such aliases with their defaults. A
command decorated with `@takes_groups` names the group once, as one parameter annotated with
the dataclass: typer is shown the group's fields in its place (so every command lists the same
options, with the same help and defaults), and the command receives the dataclass, whose
methods turn the parsed values into the library call."""

from __future__ import annotations

import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from ttgen.cli.common import _fail, _kv
from ttgen.errors import ConfigError

F = TypeVar("F", bound=Callable[..., Any])


def takes_groups(command: F) -> F:
    """Expand each parameter of `command` annotated with an option group into the group's
    options (in the group's order, where the parameter stands); call `command` with the group
    built from them."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type, list[str]]] = {}
    for param in signature.parameters.values():
        group = param.annotation
        if not (isinstance(group, type) and dataclasses.is_dataclass(group)):
            params.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
            continue
        hints = typing.get_type_hints(group, include_extras=True)
        fields = dataclasses.fields(group)
        groups[param.name] = (group, [f.name for f in fields])
        for f in fields:
            default = inspect.Parameter.empty if f.default is dataclasses.MISSING else f.default
            params.append(
                inspect.Parameter(
                    f.name, inspect.Parameter.KEYWORD_ONLY, annotation=hints[f.name],
                    default=default,
                )
            )  # fmt: skip

    @functools.wraps(command)
    def expanded(**values: Any) -> Any:
        for name, (group, fields) in groups.items():
            values[name] = group(**{f: values.pop(f) for f in fields})
        return command(**values)

    expanded.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
    expanded.__annotations__ = {p.name: p.annotation for p in params}
    return typing.cast(F, expanded)


def out_option(help: str, **kwargs: Any) -> Any:
    """`--out/-o`: where a command writes (a folder or a file, as `help` says)."""
    return typer.Option("--out", "-o", help=help, **kwargs)


# -- single options ------------------------------------------------------------------------------

TaskPaths = Annotated[list[Path], typer.Argument(help="Tasks or folders of tasks.")]
JsonOut = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON (no progress bar).")
]
TasksOut = Annotated[Path, out_option("Output folder of tasks (re-run to resume).")]
ForceBuild = Annotated[
    bool,
    typer.Option(
        "--force-build", help="Rebuild the environment image(s) without the layer cache first."
    ),
]
RayAddress = Annotated[
    str | None,
    typer.Option(
        "--address",
        help="--executor ray: the cluster (HEAD:6379, ray://HEAD:10001 or auto). Default: "
        "$RAY_ADDRESS, else a cluster started on this machine, else a new local Ray.",
        show_default=False,
    ),
]
PhaseMultiplier = Annotated[float | None, typer.Option(min=0.01, show_default=False)]
Backend = Annotated[
    str | None,
    typer.Option(
        "--backend",
        help="The sandbox backend: docker or podman (default: `backend` in ttgen.toml, else "
        "$TTGEN_BACKEND, else docker).",
        show_default=False,
    ),
]

# The model endpoint: one declaration of --base-url, required (synth) or not (agents).
_BASE_URL = typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1.")
BaseUrl = Annotated[str, _BASE_URL]
Preflight = Annotated[
    bool,
    typer.Option(
        help="Send one short request to the model endpoint before starting anything (no "
        "container, no task), and stop at once if the endpoint refuses it."
    ),
]


# -- the job options: rollout, validate, eval ----------------------------------------------------

Concurrency = Annotated[
    int, typer.Option("-n", "--concurrency", min=1, help="Trials running at once.")
]
Retries = Annotated[
    int,
    typer.Option(
        min=0,
        help="Extra runs (with backoff) of a trial that ends in an infrastructure error "
        "(build/environment/agent/LLM).",
    ),
]
KeepErrors = Annotated[
    bool,
    typer.Option(
        "--keep-errors",
        help="On resume, keep trials that ended in an infrastructure error instead of "
        "running them again.",
    ),
]
TimeoutMultiplier = Annotated[
    float, typer.Option(min=0.01, help="Multiplies every timeout (build, setup, agent, verifier).")
]
Executor = Annotated[
    str,
    typer.Option(
        "--executor",
        help="Where trials run: local (this machine's Docker engine) or ray (the nodes of a Ray "
        "cluster, each with its own Docker engine; see --address, --per-node).",
    ),
]
VerifierIsolation = Annotated[
    str,
    typer.Option(
        "--verifier-isolation",
        help="snapshot (default): tests run in a copy of the agent's container that nothing the "
        "agent left running can reach (its services still answer on localhost), so rewards "
        "cannot be forged; shared: in the agent's container itself, as Harbor does (for tests "
        "that inspect the agent's processes).",
    ),
]
PerNode = Annotated[
    int | None,
    typer.Option(
        "--per-node",
        min=1,
        help="--executor ray: trials at once on each node (default: its CPUs / 2, at least 1); "
        "replaces -n.",
        show_default=False,
    ),
]


@dataclasses.dataclass(frozen=True)
class JobFlags:
    """How a job runs its trials (concurrency, retries, timeouts, images, where)."""

    concurrency: Concurrency = 4
    retries: Retries = 2
    keep_errors: KeepErrors = False
    force_build: ForceBuild = False
    executor: Executor = "local"
    address: RayAddress = None
    per_node: PerNode = None
    verifier_isolation: VerifierIsolation = "snapshot"
    timeout_multiplier: TimeoutMultiplier = 1.0
    backend: Backend = None

    def options(self, *, verifier_env: list[str] | None = None, **timeouts: Any):  # -> JobOptions
        """The library's JobOptions (`ttgen.rollout.job.job_options`), with a command's own
        timeout settings and --ve pairs; a bad setting stops the command (exit 2)."""
        from ttgen.rollout.job import job_options

        try:
            return job_options(
                **dataclasses.asdict(self),
                verifier_env=_kv(verifier_env, "--ve", parse_json=False),
                **timeouts,
            )
        except ConfigError as exc:
            raise _fail(str(exc)) from None


# -- the agent's model endpoint: rollout, eval ---------------------------------------------------


@dataclasses.dataclass(frozen=True)
class AgentFlags:
    """The agent's settings and model endpoint: --ak, --model, --base-url, --preflight."""

    agent_kwargs: Annotated[
        list[str] | None,
        typer.Option("--ak", help="Agent option KEY=VALUE (VALUE parsed as JSON when it is)."),
    ] = None
    model: Annotated[str | None, typer.Option(help="Model name for LLM agents (terminus-2).")] = (
        None
    )
    base_url: Annotated[str | None, _BASE_URL] = None
    preflight: Preflight = True

    def kwargs(self) -> dict[str, Any]:
        """The agent's keyword arguments: the --ak pairs, then --model and --base-url."""
        kwargs = _kv(self.agent_kwargs, "--ak", parse_json=True)
        kwargs.update(
            {k: v for k, v in (("model", self.model), ("base_url", self.base_url)) if v is not None}
        )
        return kwargs
