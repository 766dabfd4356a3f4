"""The domain errors of exporter.

The command line turns each of these into one line on stderr and exit code 1.
Messages name the file, row, element or recipe line, and never quote an
identifying value.
"""

from __future__ import annotations


class ExporterError(Exception):
    """Base class: a job cannot run as asked."""


class SettingsError(ExporterError):
    """The workspace, export folder or secret are unusable or unsafe."""


class ManifestError(ExporterError):
    """The cohort manifest breaks a rule; names the file, row and column."""

    def __init__(self, path: str, row: int | None, column: str | None, message: str):
        where = path
        if row is not None:
            where += f", row {row}"
        if column is not None:
            where += f", column {column}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.row = row
        self.column = column


class SourceError(ExporterError):
    """The source cannot be opened or read."""


class RecipeError(ExporterError):
    """A recipe cannot be parsed or compiled; names the file and line."""

    def __init__(self, path: str, line: int | None, message: str):
        where = path if line is None else f"{path}, line {line}"
        super().__init__(f"{where}: {message}")
        self.path = path
        self.line = line


class ActionError(ExporterError):
    """An action failed on one element; the instance must not be released."""
