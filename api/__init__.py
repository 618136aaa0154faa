"""The HTTP service, the `qa` command and the web page."""

from __future__ import annotations

DISTRIBUTION = "verbatim-qa"  # pyproject.toml [project] name: where the installed version is read from


def version() -> str:
    """The installed distribution's version (its metadata, so it is never out of step with pyproject)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed(DISTRIBUTION)
    except PackageNotFoundError:  # a checkout on sys.path that was never `pip install`ed
        return "0+unknown"
