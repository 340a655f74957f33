"""`ttgen images`: build and manage environment images (tasks' own, the shared domain images,
a base image from Debian's archive)."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from ttgen.cli.common import _fail, _open_backend, _run, console, err_console
from ttgen.cli.options import Backend, ForceBuild
from ttgen.errors import TtgenError

images_app = typer.Typer(help="Build and manage environment images.", no_args_is_help=True)


@images_app.command("bootstrap")
def images_bootstrap(
    tag: Annotated[str, typer.Option(help="Tag of the image to create.")] = "ttgen/base:bookworm",
    suite: Annotated[str, typer.Option(help="Debian suite.")] = "bookworm",
    mirror: Annotated[str, typer.Option(help="Debian mirror.")] = "http://deb.debian.org/debian",
    package: Annotated[
        list[str], typer.Option("--package", "-p", help="Extra Debian package (repeatable).")
    ] = [],  # noqa: B006
    force: Annotated[bool, typer.Option(help="Rebuild even if the tag exists.")] = False,
    backend_name: Backend = None,
) -> None:
    """Build a base image from Debian's archive with debootstrap (no registry needed)."""
    from ttgen.sandbox.bootstrap import bootstrap_base_image

    async def go() -> None:
        async with _open_backend(backend_name) as backend:
            await backend.ping()
            if not force and await backend.image_exists(tag):
                console.print(f"{tag} already exists (use --force to rebuild)", markup=False)
                return
            with console.status(escape(f"debootstrap {suite} → {tag} ...")) as status:
                result = await bootstrap_base_image(
                    backend.docker,
                    tag=tag,
                    suite=suite,
                    mirror=mirror,
                    extra_packages=tuple(package),
                    on_line=lambda line: status.update(escape(f"debootstrap: {line[:100]}")),
                )
            console.print(
                f"[green]built[/] {escape(result.tag)} ({result.image_id[:19]}) "
                f"in {result.seconds:.0f} s"
            )

    _run(go())


@images_app.command("build")
def images_build(
    paths: Annotated[
        list[Path] | None, typer.Argument(help="Tasks or folders of tasks.", show_default=False)
    ] = None,
    domain: Annotated[
        list[str] | None,
        typer.Option(
            "--domain",
            "-d",
            help="Build this pre-built domain image (ttgen/domain:ID): an id, a comma list or "
            "'all'; repeatable. See `ttgen images domains`.",
            show_default=False,
        ),
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(
            "--base",
            help="Base image of the domain images (default: [images] domain_base, else the "
            "Dockerfiles' ubuntu:24.04; image aliases apply).",
            show_default=False,
        ),
    ] = None,
    force_build: ForceBuild = False,
    concurrency: Annotated[int, typer.Option("-n", "--concurrency", help="Builds at once.")] = 2,
    backend_name: Backend = None,
) -> None:
    """Build the environment images of tasks (each distinct environment once), and/or the
    shared domain images (--domain). Exits 1 when any build failed."""
    from ttgen.sandbox.domains import parse_domain_list
    from ttgen.task import Task, find_tasks

    if not paths and not domain:
        raise _fail("give tasks to build, or --domain ID (or --domain all)")
    try:
        domains = parse_domain_list(domain or [])
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    failed_domains = (
        _build_domains(domains, base, force_build, backend_name) if domains else 0
    )
    if not paths:
        raise typer.Exit(1 if failed_domains else 0)

    async def go() -> int:
        sem = asyncio.Semaphore(max(1, concurrency))
        table = Table(title="Images")
        for col in ("task", "image", "source", "seconds", "error"):
            table.add_column(col, overflow="fold")
        failures = 0
        async with _open_backend(backend_name) as backend:
            await backend.ping()

            async def one(path: Path) -> tuple[bool, tuple[str, str, str, str, str]]:
                async with sem:
                    try:
                        task = Task.load(path)
                        ref = await backend.ensure_image(task, force_build=force_build)
                        row = (task.name, ref.tag, ref.source, f"{ref.seconds:.1f}", "")
                        return True, tuple(escape(x) for x in row)
                    except TtgenError as exc:
                        failed = (escape(path.name), "", "[red]failed[/]", "", escape(str(exc)))
                        return False, failed

            with console.status("building images ..."):
                rows = await asyncio.gather(*(one(p) for p in find_tasks(paths)))
        for ok, row in rows:
            failures += not ok
            table.add_row(*row)
        console.print(table)
        return failures

    raise typer.Exit(1 if _run(go()) or failed_domains else 0)


def _build_domains(
    domains: list[str], base: str | None, force: bool, backend_name: str | None
) -> int:
    """Build domain images one after another (general first); print a table; return failures."""
    from ttgen.sandbox.domains import build_domain_image, image_ref

    async def go() -> int:
        table = Table(title="Domain images")
        for col in ("domain", "tag", "result", "seconds", "size MB"):
            table.add_column(col, overflow="fold")
        failures: list[tuple[str, TtgenError]] = []
        async with _open_backend(backend_name) as backend:
            await backend.ping()
            for i, d in enumerate(domains, 1):
                t0 = time.monotonic()
                try:
                    with console.status(f"building {image_ref(d)} ({i}/{len(domains)}) ..."):
                        ref = await build_domain_image(backend, d, base=base, force=force)
                    info = await backend.image_exists(ref.tag) or {}
                except TtgenError as exc:
                    failures.append((d, exc))
                    row = (d, image_ref(d), "[red]failed[/]", f"{time.monotonic() - t0:.1f}", "")
                    table.add_row(*row)
                    continue
                size = f"{info['Size'] / 1e6:.0f}" if "Size" in info else ""
                colour = "green" if ref.source == "built" else "dim"
                table.add_row(
                    d, ref.tag, f"[{colour}]{ref.source}[/]", f"{time.monotonic() - t0:.1f}", size
                )
        console.print(table)
        for d, exc in failures:
            err_console.print(
                f"[bold red]{escape(d)} failed:[/] {escape(str(exc))}",
                highlight=False,
                soft_wrap=True,
            )
        return len(failures)

    return _run(go())


@images_app.command("domains")
def images_domains(
    dockerfile: Annotated[
        str | None,
        typer.Option(
            "--dockerfile",
            help="Print the Dockerfile of this domain (what task generation is shown) and exit.",
            show_default=False,
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print a JSON list.")] = False,
    backend_name: Backend = None,
) -> None:
    """List the pre-built domain images: tag, whether built, what each installs."""
    from ttgen.errors import DockerUnavailableError
    from ttgen.sandbox.domains import (
        DOMAIN_IMAGES,
        dockerfile_text,
        domain_description,
        domain_image_state,
        domain_packages,
        image_ref,
    )

    if dockerfile is not None:
        try:
            sys.stdout.write(dockerfile_text(dockerfile))
        except TtgenError as exc:
            raise _fail(str(exc)) from None
        raise typer.Exit(0)

    async def states() -> dict[str, tuple[str, float | None]]:
        out: dict[str, tuple[str, float | None]] = {}
        try:
            async with _open_backend(backend_name) as backend:
                await backend.ping()
                for d in DOMAIN_IMAGES:
                    info = await backend.image_exists(image_ref(d))
                    size = info["Size"] / 1e6 if info and "Size" in info else None
                    out[d] = (await domain_image_state(backend, d), size)
        except DockerUnavailableError as exc:
            err_console.print(
                f"[yellow]warning:[/] {escape(str(exc))}", highlight=False, soft_wrap=True
            )
        return out

    found = _run(states())
    rows = []
    for d in DOMAIN_IMAGES:
        state, size = found.get(d, ("unknown", None))
        rows.append(
            {
                "domain": d,
                "tag": image_ref(d),
                "state": state,
                "size_mb": None if size is None else round(size),
                "description": domain_description(d),
                "packages": domain_packages(d),
            }
        )
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        raise typer.Exit(0)
    table = Table(title="Domain images (ttgen images build --domain ID|all)")
    for col in ("domain", "tag", "state", "size MB", "installs (besides the common set)"):
        table.add_column(col, overflow="fold")
    colours = {"built": "green", "outdated": "yellow", "missing": "red"}
    for r in rows:
        pk = r["packages"]
        installs = "\n".join(
            f"{k}: {' '.join(v)}" for k, v in (("apt", pk["apt"]), ("pip", pk["pip"])) if v
        )
        state = f"[{colours.get(r['state'], 'dim')}]{r['state']}[/]"
        size = "" if r["size_mb"] is None else str(r["size_mb"])
        table.add_row(escape(r["domain"]), escape(r["tag"]), state, size, escape(installs))
    console.print(table)
    common = domain_packages(DOMAIN_IMAGES[0], "common")
    console.print(
        f"common set: apt {' '.join(common['apt'])}; pip {' '.join(common['pip'])}",
        highlight=False,
        markup=False,
        soft_wrap=True,
    )


@images_app.command("aliases")
def images_aliases() -> None:
    """Show the image aliases and CA bundle in effect, and where they come from."""
    from ttgen.settings import load_settings

    try:
        settings = load_settings()
    except TtgenError as exc:
        raise _fail(str(exc)) from None
    table = Table(title="Image aliases (first match wins)")
    table.add_column("pattern")
    table.add_column("image")
    table.add_column("from", overflow="fold")
    for a in settings.aliases:
        table.add_row(escape(a.pattern), escape(a.image), escape(a.source))
    console.print(table)
    console.print(f"extra CA bundle: {settings.extra_ca_cert or 'none'}", markup=False)
    console.print(f"config sources: {', '.join(settings.sources) or 'defaults only'}", markup=False)
