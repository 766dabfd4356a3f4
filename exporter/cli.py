"""The command line: thin over the library; parses, prints, sets exit codes.

Exit codes: 0 every selected instance exported; 1 the job could not run;
2 usage error; 3 finished, but some items were not exported.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from exporter import __version__
from exporter.engine.executors import DEFAULT_DASHBOARD
from exporter.engine.job import JobSummary, RunRequest, run_job
from exporter.engine.job import Progress as EngineProgress
from exporter.errors import ExporterError
from exporter.policy.annex_e import validate_options
from exporter.policy.recipe import CompiledRecipe
from exporter.sources import NetworkSettings

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3
EXIT_INTERRUPTED = 130  # the shell's code for Ctrl-C

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold identifying values
    help="De-identifying research export of DICOM studies.",
)
# soft_wrap: an error or path is one line, whatever the width of a log.
err = Console(stderr=True, highlight=False, soft_wrap=True)


class _BarProgress(EngineProgress):
    """Studies, instances and MB/s on a terminal; silent when quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.bar: Progress | None = None

    def note(self, message: str) -> None:
        if not self.quiet:
            err.print(message, markup=False)

    def start(self, studies: int) -> None:
        if self.quiet or not err.is_terminal:
            return
        self.bar = Progress(
            TextColumn("[bold]exporting"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("studies"),
            TextColumn("{task.fields[instances]} instances"),
            TextColumn("{task.fields[rate]} MB/s"),
            TimeElapsedColumn(),
            console=err,
        )
        self.bar.start()
        self.task = self.bar.add_task("export", total=studies, instances=0, rate="-")
        self.instances = 0
        self.nbytes = 0
        self.started = time.monotonic()

    def advance(self, instances: int, nbytes: int) -> None:
        if self.bar is not None:
            self.instances += instances
            self.nbytes += nbytes
            elapsed = max(time.monotonic() - self.started, 1e-6)
            rate = f"{self.nbytes / elapsed / 1e6:.1f}"
            self.bar.update(self.task, advance=1, instances=self.instances, rate=rate)

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()


def _configure_logging(quiet: bool, verbose: bool) -> None:
    level = logging.WARNING
    if verbose:
        level = logging.DEBUG
    elif quiet:
        level = logging.ERROR
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not verbose:
        # pydicom's own warnings quote element values, which may identify.
        logging.getLogger("pydicom").setLevel(logging.ERROR)


# Policy flags shared by `run` and `recipe explain`.
OptionFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--option",
        help="Annex E option of the built-in profile (repeat; 'none' for the bare "
        "Basic Profile); a recipe file is layered on it.",
        show_default="retain_long_modified_dates, retain_patient_characteristics",
    ),
]
# Flags of the commands that read an existing workspace (verify, linkage).
ExistingWorkspaceFlag = Annotated[
    Path | None,
    typer.Option(
        "--workspace",
        help="The workspace the export was made with.",
        show_default="$EXPORTER_WORKSPACE or ./exporter-workspace",
    ),
]
DatabaseUrlFlag = Annotated[
    str | None,
    typer.Option(
        "--database-url",
        help="State database URL.",
        show_default="SQLite in the workspace",
    ),
]
FiltersFlag = Annotated[
    list[str] | None,
    typer.Option(
        "--filters",
        help="deid's shipped %filter rules to layer on the recipe (repeat): "
        "deid, deid-ultrasound, deid-xray-chest.",
    ),
]


def _summary_line(summary: JobSummary) -> str:
    rows = ", ".join(
        f"{n} {status}" for status, n in sorted(summary.rows_status.items())
    )
    scrubbed = ""
    if summary.pixels_cleaned:
        scrubbed = f"{summary.pixels_cleaned} with burned-in text scrubbed; "
    if summary.pixel_checks.get("sampled"):
        scrubbed += f"{summary.pixel_checks['sampled']} checked by sample; "
    line = (
        f"export {summary.export_id}: {summary.exported} instances exported "
        f"({summary.bytes_out / 1e6:.1f} MB) from {summary.studies} studies; "
        f"{summary.quarantined} quarantined, {summary.failed} failed; {scrubbed}"
        f"manifest rows: {rows or 'none'}"
    )
    skipped = sum(summary.source_skipped.values())
    if skipped:
        line += f"; {skipped} source files skipped"
    return line


def _details(summary: JobSummary) -> list[str]:
    lines = [f"  {n} x {reason}" for reason, n in summary.reasons.most_common()]
    if summary.findings:
        lines += [
            f"  verify: {n} x {kind} found in the export"
            for kind, n in summary.findings.most_common()
        ]
        lines.append(
            "  where (workspace only): "
            f"{summary.workspace / 'jobs' / summary.job_id / 'verify.csv'}; "
            "do not share the export until they are gone"
        )
    lines += [f"  source: {n} x {r}" for r, n in summary.source_skipped.most_common()]
    if not summary.complete:
        lines.append(
            f"  per row: {summary.out_dir / 'reconciliation.csv'}; per file "
            f"(workspace only): {summary.workspace / 'jobs' / summary.job_id}"
            "/not-exported.csv"
        )
    if not lines and not summary.pixels_cleaned:
        return lines  # a clean run says nothing more than its summary line
    lines.append(f"  report: {summary.out_dir / 'report.html'}")
    something_to_review = (
        summary.pixels_cleaned
        or summary.quarantined
        or summary.failed
        or summary.findings
    )
    if summary.review is not None and something_to_review:
        lines.append(
            f"  review (identifying pictures, workspace only): {summary.review}"
        )
    return lines


@app.command()
def run(
    manifest: Annotated[Path, typer.Argument(help="Cohort manifest (CSV).")],
    source: Annotated[
        str,
        typer.Option(
            "--source",
            help="A folder of DICOM files, a PACS (dicom://CALLED_AE@host:port), "
            "or a DICOMweb root URL (credentials: EXPORTER_DICOMWEB_USER and "
            "_PASSWORD, or _TOKEN, or ~/.netrc).",
        ),
    ],
    out: Annotated[Path, typer.Option("--out", help="Export folder to write.")],
    workspace: Annotated[
        Path | None,
        typer.Option(
            help="Private state folder (secret, state, linkage, quarantine).",
            show_default="$EXPORTER_WORKSPACE or ./exporter-workspace",
        ),
    ] = None,
    recipe: Annotated[
        Path | None,
        typer.Option(
            help="deid recipe to apply.", show_default="recipes/basic-profile.dicom"
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes.", show_default="number of cores"),
    ] = None,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            help="Run the work on a Dask cluster: tcp://SCHEDULER:PORT (or tls://), "
            "or local:N to start N local Dask workers. Workers must see the "
            "source, export and workspace at the same paths.",
            show_default="$EXPORTER_CLUSTER, else a local pool of --workers",
        ),
    ] = None,
    dashboard_address: Annotated[
        str,
        typer.Option(
            "--dashboard-address",
            help="Where the dashboard of a local:N cluster listens.",
        ),
    ] = DEFAULT_DASHBOARD,
    database_url: Annotated[
        str | None,
        typer.Option(
            help="State database URL.", show_default="SQLite in the workspace"
        ),
    ] = None,
    option: OptionFlag = None,
    filters: FiltersFlag = None,
    verify: Annotated[
        bool,
        typer.Option(
            "--verify/--no-verify",
            help="Check the finished export for every identifying value seen.",
        ),
    ] = True,
    ae_title: Annotated[
        str,
        typer.Option(
            "--ae-title",
            help="Our calling AE title, as the PACS knows it.",
            rich_help_panel="PACS",
        ),
    ] = "EXPORTER",
    move: Annotated[
        bool,
        typer.Option(
            "--move",
            help="Retrieve with C-MOVE to our own storage SCP instead of C-GET.",
            rich_help_panel="PACS",
        ),
    ] = False,
    store_port: Annotated[
        int,
        typer.Option(
            min=1,
            max=65535,
            help="Port of our storage SCP for --move (registered on the PACS).",
            rich_help_panel="PACS",
        ),
    ] = 11113,
    store_address: Annotated[
        str,
        typer.Option(
            help="Interface our storage SCP listens on for --move.",
            rich_help_panel="PACS",
        ),
    ] = "0.0.0.0",
    timeout: Annotated[
        float,
        typer.Option(
            min=1,
            help="Seconds to wait for the PACS (connect, each reply).",
            rich_help_panel="PACS",
        ),
    ] = 30.0,
    retries: Annotated[
        int,
        typer.Option(
            min=0,
            help="Further attempts of a failed retrieval, waiting 1, 2, 4... s.",
            rich_help_panel="PACS",
        ),
    ] = 2,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors and the summary.")
    ] = False,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Debug logging (may name files).")
    ] = False,
) -> None:
    """Export the studies a cohort manifest selects, de-identified, with catalogs."""
    if quiet and verbose:
        raise typer.BadParameter("choose --quiet or --verbose, not both")
    _configure_logging(quiet, verbose)
    request = RunRequest(
        manifest=manifest,
        source=source,
        out=out,
        workspace=workspace,
        recipe=recipe,
        workers=workers or os.cpu_count() or 1,
        database_url=database_url,
        options=_options(option),
        filters=tuple(filters or ()),
        verify=verify,
        cluster=cluster,
        dashboard=dashboard_address,
        network=NetworkSettings(
            ae_title=ae_title,
            move=move,
            store_port=store_port,
            store_address=store_address,
            timeout=timeout,
            retries=retries,
        ),
    )
    try:
        summary = run_job(request, _BarProgress(quiet))
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    except KeyboardInterrupt:
        err.print(
            "interrupted: finished studies are kept; run the same command to resume",
            markup=False,
        )
        raise typer.Exit(EXIT_INTERRUPTED) from None
    typer.echo(_summary_line(summary))
    if not quiet or not summary.complete:
        for line in _details(summary):
            err.print(line, markup=False)
    raise typer.Exit(EXIT_OK if summary.complete else EXIT_INCOMPLETE)


@app.command()
def demo(
    directory: Annotated[Path, typer.Argument(help="Folder for the demo.")] = Path(
        "exporter-demo"
    ),
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Worker processes.", show_default="number of cores"),
    ] = None,
) -> None:
    """Make a synthetic source with planted PHI, a manifest, and export it."""
    from exporter.demo import run_demo

    try:
        code = run_demo(directory, workers or os.cpu_count() or 1, echo=typer.echo)
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    raise typer.Exit(code)


@app.command()
def verify(
    export: Annotated[Path, typer.Argument(help="The export folder to check.")],
    workspace: ExistingWorkspaceFlag = None,
    database_url: DatabaseUrlFlag = None,
    workers: Annotated[
        int | None,
        typer.Option(min=1, help="Processes reading the files.", show_default="cores"),
    ] = None,
) -> None:
    """Look for every identifying value the exports saw, in every file of EXPORT.

    Prints each finding as file, place and kind of value (never the value);
    exits 1 when anything is found.
    """
    from exporter.verify.run import verify_folder

    try:
        findings, checked, ocr = verify_folder(
            export, workspace, database_url, workers or os.cpu_count() or 1
        )
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    for finding in findings:
        typer.echo(str(finding))
    verdict = f"{len(findings)} findings" if findings else "nothing identifying found"
    typer.echo(f"verify: {checked} files checked; {verdict}")
    if not ocr:
        err.print(
            "note: pixel data was not read (install the pixels extra for OCR)",
            markup=False,
        )
    raise typer.Exit(EXIT_FAILED if findings else EXIT_OK)


linkage_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="The honest broker's mapping of original to pseudonymous identifiers.",
)
app.add_typer(linkage_app, name="linkage")


@linkage_app.command("export")
def linkage_export(
    out: Annotated[Path, typer.Option("--out", help="The CSV file to write.")],
    identifying: Annotated[
        bool,
        typer.Option(
            "--i-understand-this-identifies-patients",
            help="Required: the file maps pseudonyms back to patients.",
        ),
    ] = False,
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind (patient, uid, date_offset): id_old,id_new."),
    ] = None,
    workspace: ExistingWorkspaceFlag = None,
    database_url: DatabaseUrlFlag = None,
) -> None:
    """Write original -> pseudonymous ids and UIDs (CSV), for the honest broker."""
    from exporter.verify.linkage import export_linkage
    from exporter.verify.run import workspace_database

    if not identifying:
        err.print(
            "error: the linkage file identifies patients; pass "
            "--i-understand-this-identifies-patients to write it",
            markup=False,
        )
        raise typer.Exit(EXIT_USAGE)
    try:
        rows = export_linkage(workspace_database(workspace, database_url), out, kind)
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"linkage: {rows} rows written to {out} (keep it private)")


recipe_app = typer.Typer(
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="Read, check and explain de-identification recipes.",
)
app.add_typer(recipe_app, name="recipe")


def _policy(
    recipe: Path | None, options: list[str] | None, filters: list[str] | None = None
) -> tuple[CompiledRecipe, frozenset[str] | None, str]:
    """The recipe file, or the built-in profile with ``options``; then ``filters``."""
    from exporter.policy.deid_filters import with_filters
    from exporter.policy.profile import DEFAULT_OPTIONS, build_recipe
    from exporter.policy.recipe import compile_recipe, compose, load_recipe

    named = _options(options)
    chosen = DEFAULT_OPTIONS if named is None else named
    title = "Basic Profile" + "".join(f" + {o}" for o in sorted(chosen))
    # The default profile is committed: its line numbers are that file's.
    name = "recipes/basic-profile.dicom" if chosen == DEFAULT_OPTIONS else "built-in"
    profile = compile_recipe(build_recipe(chosen), name)
    extra = "".join(f" + deid's {f} filters" for f in filters or ())
    if recipe is None:
        return with_filters(profile, tuple(filters or ())), chosen, title + extra
    layered = compose(profile, load_recipe(recipe), f"{recipe.name} over {name}")
    layered = with_filters(layered, tuple(filters or ()))
    return layered, chosen, f"{recipe} layered on the {title}{extra}"


def _options(names: list[str] | None) -> frozenset[str] | None:
    """The options named on the command line; 'none' alone: the Basic Profile."""
    if not names:
        return None
    chosen = frozenset(names) - {"none"}
    try:
        validate_options(chosen)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    return chosen


@recipe_app.command("lint")
def recipe_lint(
    recipe: Annotated[Path, typer.Argument(help="The recipe file to check.")],
) -> None:
    """Check a recipe without running it: file and line of the first problem."""
    from exporter.policy.recipe import load_recipe

    try:
        compiled = load_recipe(recipe)
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    typer.echo(f"{recipe}: {len(compiled.rules)} rules, no problem found")


@recipe_app.command("explain")
def recipe_explain(
    recipe: Annotated[
        Path | None, typer.Argument(help="A recipe file; none: the built-in profile.")
    ] = None,
    option: OptionFlag = None,
    filters: FiltersFlag = None,
    output_format: Annotated[
        str, typer.Option("--format", help="md, csv or html.", show_default=True)
    ] = "md",
) -> None:
    """Print, attribute by attribute, what a policy does and what decided it."""
    from exporter.policy.explain import explain, to_csv, to_html, to_markdown
    from exporter.policy.gate import pixel_policy

    if output_format not in ("md", "csv", "html"):
        raise typer.BadParameter("--format must be md, csv or html")
    try:
        compiled, options, title = _policy(recipe, option, filters)
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    rows, findings = explain(compiled, options)
    if output_format == "csv":
        typer.echo(to_csv(rows, findings), nl=False)
    elif output_format == "html":
        typer.echo(to_html(rows, findings, f"What {title} does"), nl=False)
    else:
        pixels = pixel_policy("clean_pixel_data" in (options or ()), compiled.filters)
        text = to_markdown(rows, findings, f"What {title} does", pixels)
        typer.echo(text, nl=False)
    if findings:
        raise typer.Exit(EXIT_INCOMPLETE)


@recipe_app.command("diff")
def recipe_diff(
    first: Annotated[Path, typer.Argument(help="A recipe file.")],
    second: Annotated[Path, typer.Argument(help="The recipe file to compare with.")],
) -> None:
    """Show, attribute by attribute, what changes between two recipe files."""
    from exporter.policy.explain import diff, diff_markdown, explain
    from exporter.policy.recipe import load_recipe

    try:
        a, b = load_recipe(first), load_recipe(second)
    except ExporterError as exc:
        err.print(f"error: {exc}", markup=False)
        raise typer.Exit(EXIT_FAILED) from None
    changes = diff(explain(a, None)[0], explain(b, None)[0])
    typer.echo(diff_markdown(changes, first.name, second.name), nl=False)


@app.callback(invoke_without_command=True)
def _version(
    version: Annotated[
        bool, typer.Option("--version", help="Print the version.")
    ] = False,
) -> None:
    if version:
        typer.echo(f"exporter {__version__}")
        raise typer.Exit(EXIT_OK)


def main() -> None:
    """Entry point of the ``exporter`` command."""
    sys.exit(app())
