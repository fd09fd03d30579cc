"""Test sessions. ``nox`` runs what CI runs; ``nox -s matrix`` runs every supported combination.

Interpreters: nox looks for python3.X on PATH; pyenv's installed versions are added to it.
"""

from __future__ import annotations

import glob
import os
import tarfile
import zipfile

import nox

nox.options.default_venv_backend = "venv"
nox.options.error_on_missing_interpreters = True

PYTHONS = ["3.10", "3.11", "3.12", "3.13"]
NEWEST = ""

# Every requests/urllib3 pair pip accepts ("" is the newest release; "X.Y" means X.Y.*).
# requests < 2.30 pins urllib3 < 1.27. Each requests line differs in how an adapter gets
# its pool: get_connection (<= 2.31), _get_connection (2.32.0, yanked), get_connection_with_
# tls_context (2.32.2), build_connection_pool_key_attributes (2.32.3+), and in whether it
# preloads a certifi context (2.32.0-2.32.4).
PAIRS = [("2.25.1", "1.26"), ("2.28.2", "1.26")] + [
    (requests, urllib3)
    for requests in ("2.31.0", "2.32.0", "2.32.2", "2.32.3", "2.32.5", NEWEST)
    for urllib3 in ("1.26", "2.0", "2.7", NEWEST)
]

# What CI runs (about 16 minutes with the gates on two cores): each hook generation, both
# urllib3 lines, every Python.
CI_ROWS = [
    ("3.10", "2.25.1", "1.26"),
    ("3.11", "2.31.0", "1.26"),
    ("3.11", "2.31.0", "2.0"),
    ("3.12", "2.32.0", "2.7"),
    ("3.12", "2.32.2", NEWEST),
    ("3.13", "2.32.3", "1.26"),
    ("3.13", "2.32.5", "2.7"),
    ("3.10", NEWEST, NEWEST),
    ("3.13", NEWEST, NEWEST),
]


def _add_pyenv_interpreters() -> None:
    root = os.environ.get("PYENV_ROOT", os.path.expanduser("~/.pyenv"))
    found = sorted(glob.glob(os.path.join(root, "versions", "3.1[0-9].*", "bin")))
    if found:
        os.environ["PATH"] = os.pathsep.join([*found, os.environ.get("PATH", "")])


_add_pyenv_interpreters()


def _requirement(name: str, version: str) -> str:
    if not version:
        return name
    return f"{name}=={version}" if version.count(".") == 2 else f"{name}=={version}.*"


def _id(requests: str, urllib3: str) -> str:
    return f"requests-{requests or 'newest'}+urllib3-{urllib3 or 'newest'}"


def _run_tests(session: nox.Session, requests: str, urllib3: str) -> None:
    session.install(".[test]", _requirement("requests", requests), _requirement("urllib3", urllib3))
    session.run(
        "python",
        "-c",
        "import ssl, sys, requests, urllib3, certifi, truststore;"
        "print(sys.version.split()[0], ssl.OPENSSL_VERSION, 'requests', requests.__version__,"
        " 'urllib3', urllib3.__version__, 'truststore', truststore.__version__)",
    )
    session.run("pytest", "-q", *session.posargs)


@nox.session
@nox.parametrize(
    ("python", "requests", "urllib3"),
    [nox.param(*row, id=f"{row[0]}-{_id(*row[1:])}") for row in CI_ROWS],
)
def tests(session: nox.Session, requests: str, urllib3: str) -> None:
    """The test suite on the CI subset of the matrix."""
    _run_tests(session, requests, urllib3)


@nox.session(python=PYTHONS, default=False)
@nox.parametrize(("requests", "urllib3"), [nox.param(*pair, id=_id(*pair)) for pair in PAIRS])
def matrix(session: nox.Session, requests: str, urllib3: str) -> None:
    """The test suite on every supported Python x requests x urllib3 combination."""
    _run_tests(session, requests, urllib3)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install("ruff==0.17.6")  # the formatter's output changes between releases
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def mypy(session: nox.Session) -> None:
    """mypy --strict on the package."""
    session.install(".", "mypy==2.4.1")  # new releases add checks: upgrade on purpose
    session.run("mypy", "--strict", "cmem_adapter")


@nox.session(python="3.11")
def cmempy(session: nox.Session) -> None:
    """The drop-in under the real cmem-cmempy client (newest); its tests must run, not skip."""
    session.install(".[test]", "cmem-cmempy")
    session.run(
        "pytest", "-q", "-rs", "tests/test_cmempy.py", *session.posargs, env={"REQUIRE_CMEMPY": "1"}
    )


@nox.session(python="3.11")
def docs(session: nox.Session) -> None:
    """Build the documentation site; any warning fails."""
    session.install("mkdocs-material==9.8.2", "mkdocstrings[python]==1.0.8", "ruff==0.17.6")
    session.run("mkdocs", "build", "--strict", env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session(python="3.11")
def package(session: nox.Session) -> None:
    """sdist and wheel; twine check --strict; what each must carry."""
    session.install("build", "twine")
    out = session.create_tmp()
    session.run("python", "-m", "build", "--outdir", out)
    (wheel,) = glob.glob(os.path.join(out, "*.whl"))
    (sdist,) = glob.glob(os.path.join(out, "*.tar.gz"))
    session.run("twine", "check", "--strict", wheel, sdist)
    with zipfile.ZipFile(wheel) as built_wheel, tarfile.open(sdist) as built_sdist:
        in_wheel = set(built_wheel.namelist())
        in_sdist = {name.split("/", 1)[1] for name in built_sdist.getnames() if "/" in name}
    wanted = {
        wheel: ({"cmem_adapter_auto.pth", "cmem_adapter/py.typed"}, in_wheel),
        sdist: ({"tests/test_adapter.py", "docs/index.md", "CHANGELOG.md", "LICENSE"}, in_sdist),
    }
    for built, (files, present) in wanted.items():
        if files - present:
            session.error(f"{os.path.basename(built)} lacks {sorted(files - present)}")
