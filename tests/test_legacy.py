"""The legacy drop-in (DESIGN §6): install/uninstall, ``cmem-adapter run`` and the .pth hook."""

from __future__ import annotations

import importlib.util
import os
import shutil
import ssl
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
import urllib3.util.ssl_
from children import LEGACY_SCRIPT, REPO, child_env, run
from servers import HTTPServer, HTTPSServer

from cmem_adapter import ConfigError, TrustAdapter, TrustPolicy, install, uninstall

HOOK = "cmem_adapter_auto.pth"
DEPS = "_cmem_adapter_test_deps.pth"
DEPENDENCIES = (
    "requests",
    "urllib3",
    "idna",
    "charset_normalizer",
    "chardet",
    "certifi",
    "truststore",
)
"""What the hooked venv borrows from this environment (chardet for old requests)."""
INSTALL_THEN_RUN = (
    "import runpy, sys, cmem_adapter; cmem_adapter.install(); sys.argv = sys.argv[1:];"
    " runpy.run_path(sys.argv[0], run_name='__main__')"
)
"""What a user's own wrapper does: `install()`, then the unmodified script."""


def identities(*owners: object) -> dict[str, object]:
    """Returns every attribute of `owners` (modules, classes) by name, to compare by identity."""
    return {f"{owner!r}.{name}": value for owner in owners for name, value in vars(owner).items()}


def changed(before: dict[str, object], after: dict[str, object]) -> list[str]:
    """Returns the names whose object is not the same one, or that came or went."""
    return sorted(
        name for name in before.keys() | after.keys() if before.get(name) is not after.get(name)
    )


def requests_state() -> dict[str, object]:
    return identities(
        requests,
        requests.api,
        requests.sessions,
        requests.adapters,
        requests.Session,
        requests.adapters.HTTPAdapter,
    )


def ssl_state() -> dict[str, object]:
    return identities(ssl, ssl.SSLContext, urllib3.util.ssl_)


def write_config(path: Path, server: HTTPSServer, ca_file: str, other_ca_file: str) -> Path:
    """Writes a cmemc config.ini: [good] trusts the server's CA, [rogue] another CA."""
    path.write_text(
        f"[DEFAULT]\nSSL_VERIFY = true\n\n"
        f"[good]\nCMEM_BASE_URI = {server.url}\nREQUESTS_CA_BUNDLE = {ca_file}\n"
        "OAUTH_GRANT_TYPE = client_credentials\n\n"
        f"[rogue]\nCMEM_BASE_URI = {server.url}\nREQUESTS_CA_BUNDLE = {other_ca_file}\n"
    )
    return path


# install() and uninstall() in this process


def test_install_mounts_on_every_new_session_and_uninstall_restores_requests(
    server: HTTPSServer, ca_file: str
) -> None:
    before = requests_state()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url, timeout=10)  # stock requests trusts certifi

    install(TrustPolicy.bundle(ca_file))

    assert requests.get(server.url, timeout=10).json()["server"] == "server"
    assert isinstance(requests.Session().get_adapter(server.url), TrustAdapter)
    assert isinstance(requests.session().get_adapter("http://any.example/"), TrustAdapter)
    uninstall()
    assert changed(before, requests_state()) == []
    assert type(requests.Session().get_adapter(server.url)) is requests.adapters.HTTPAdapter
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url, timeout=10)


def test_install_never_touches_ssl(server: HTTPSServer, ca_file: str) -> None:
    context_class, create, urllib3_context_class = (
        ssl.SSLContext,
        ssl.create_default_context,
        urllib3.util.ssl_.SSLContext,
    )
    before = ssl_state()

    install(TrustPolicy.system(ca_file))
    assert requests.get(server.url, timeout=10).status_code == 200

    assert changed(before, ssl_state()) == []
    assert ssl.SSLContext is context_class
    assert ssl.create_default_context is create
    assert urllib3.util.ssl_.SSLContext is urllib3_context_class


def test_install_is_idempotent_and_the_last_call_wins(
    server: HTTPSServer, ca_file: str, other_ca_file: str
) -> None:
    original = requests.Session.__init__
    before = requests_state()

    install(TrustPolicy.bundle(other_ca_file))
    install(TrustPolicy.bundle(ca_file))

    assert requests.Session.__init__.__wrapped__ is original  # type: ignore[attr-defined]
    assert requests.get(server.url, timeout=10).status_code == 200
    uninstall()
    uninstall()
    assert changed(before, requests_state()) == []


def test_install_and_uninstall_race_from_many_threads(ca_file: str) -> None:
    """Sessions made while other threads install and uninstall; requests is restored at the end.

    Under the GIL this fails without the lock only if install or uninstall can switch threads
    between their two writes (a call, e.g. a log line, placed there).
    """
    before = requests_state()
    policy = TrustPolicy.bundle(ca_file)
    start = threading.Barrier(8)
    failures: list[BaseException] = []

    def churn() -> None:
        start.wait()
        try:
            for _ in range(300):
                install(policy)
                requests.Session().close()
                uninstall()
        except BaseException as e:
            failures.append(e)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as CPython can
    try:
        threads = [threading.Thread(target=churn) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert failures == []
    assert changed(before, requests_state()) == []


def test_install_for_one_base_url_leaves_other_hosts_to_requests(
    server: HTTPSServer, ca_file: str
) -> None:
    install(TrustPolicy.bundle(ca_file), base_url=server.url)

    session = requests.Session()
    adapter = session.get_adapter(f"{server.url}dataplatform/")
    assert isinstance(adapter, TrustAdapter)
    assert adapter.bound_to == server.url
    other = session.get_adapter("https://example.com/")
    assert type(getattr(other, "fallback", other)) is requests.adapters.HTTPAdapter
    assert requests.get(server.url, timeout=10).status_code == 200


def test_install_follows_the_environment_the_program_writes(
    server: HTTPSServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """cmemc writes its connection's settings into os.environ after start-up (`-c NAME`)."""
    install()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url, timeout=10)  # certifi by default
    session = requests.Session()
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)  # as cmemc's apply_config() does
    assert requests.get(server.url, timeout=10).status_code == 200
    with pytest.raises(requests.exceptions.SSLError):
        session.get(server.url, timeout=10)  # a session keeps the policy it was made with
    monkeypatch.setenv("SSL_VERIFY", "sometimes")
    with pytest.raises(ConfigError, match="SSL_VERIFY set by env to 'sometimes'"):
        requests.get(server.url, timeout=10)  # never a silent fall back


def test_install_follows_the_cmemc_connection_the_environment_names(
    server: HTTPSServer,
    ca_file: str,
    other_ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = write_config(tmp_path / "config.ini", server, ca_file, other_ca_file)
    # As on many machines: requests passes this as verify=, the adapter leaves it to the policy.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    monkeypatch.setenv("CMEMC_CONFIG_FILE", str(config))
    monkeypatch.setenv("CMEMC_CONNECTION", "good")

    install()
    assert requests.get(server.url, timeout=10).status_code == 200

    monkeypatch.setenv("CMEMC_CONNECTION", "rogue")
    install()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url, timeout=10)
    monkeypatch.setenv("CMEMC_CONNECTION", "staging")
    with pytest.raises(ConfigError, match=r"'staging': no such section .*good, rogue"):
        install()


def test_install_reads_cmemcs_default_config_like_the_cli(
    server: HTTPSServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No CMEMC_* variable: the default config.ini still applies, as for `cmem-adapter check`."""
    config = Path(os.environ["XDG_CONFIG_HOME"]) / "cmemc" / "config.ini"
    config.parent.mkdir(parents=True)
    config.write_text(f"[DEFAULT]\nREQUESTS_CA_BUNDLE = {ca_file}\n")
    install()
    assert requests.get(server.url, timeout=10).status_code == 200
    monkeypatch.setenv("SSL_VERIFY", "certifi")  # the environment is above [DEFAULT]
    install()
    assert requests.get(server.url, timeout=10).status_code == 200  # certifi + extra CA
    config.write_text("[DEFAULT]\nSSL_VERIFY = certifi\n")
    monkeypatch.delenv("SSL_VERIFY")
    install()
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(server.url, timeout=10)


# Unmodified scripts in child processes: install, cmem-adapter run, and the .pth hook


@dataclass(frozen=True)
class Venv:
    python: Path
    site_packages: Path


@pytest.fixture(scope="session")
def source_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns a copy of the checkout: pip builds in the tree it is given, this one is ours."""
    tree = tmp_path_factory.mktemp("source") / "cmem-adapter"
    ignored = shutil.ignore_patterns(".*", "build", "dist", "*.egg-info", "__pycache__")
    shutil.copytree(REPO, tree, ignore=ignored)
    return tree


def pip(*args: str | Path) -> None:
    done = run(dict(os.environ), "-m", "pip", "--no-input", *args)  # pip as this machine has it
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.fixture(scope="session")
def wheel(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Returns the wheel ``pip wheel --no-deps`` builds of the checkout."""
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-deps", "-q", "-w", out, source_tree)
    (built,) = out.glob("cmem_adapter-*.whl")
    return built


@pytest.fixture(scope="session")
def hooked_venv(source_tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Venv:
    """Returns a new virtual environment holding ``pip install --no-deps .`` (not editable).

    Its dependencies are this environment's: a path file puts their directory on sys.path.
    It is named to sort before the hook, as site reads .pth files in name order.
    """
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", root], check=True)
    python = root / ("Scripts" if os.name == "nt" else "bin") / "python"
    pip("--python", python, "install", "--no-deps", "-q", source_tree)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site_packages = Path(run(dict(os.environ), "-c", purelib, python=python).stdout.strip())
    deps = {
        str(Path(spec.origin).parents[1])
        for name in DEPENDENCIES
        if (spec := importlib.util.find_spec(name)) is not None and spec.origin
    }
    (site_packages / DEPS).write_text("\n".join(sorted(deps)) + "\n")
    return Venv(python, site_packages)


@pytest.fixture
def legacy_script(tmp_path: Path) -> Path:
    script = tmp_path / "legacy.py"
    script.write_text(LEGACY_SCRIPT)
    return script


@pytest.fixture
def http_server() -> Iterator[HTTPServer]:
    with HTTPServer() as running:
        yield running


def test_wheel_puts_the_hook_at_the_top_of_site_packages(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as whl:
        names = whl.namelist()
        record = whl.read(next(n for n in names if n.endswith(".dist-info/RECORD"))).decode()
        hook = whl.read(HOOK)

    assert hook == (REPO / HOOK).read_bytes()
    assert any(line.startswith(f"{HOOK},sha256=") for line in record.splitlines())


def test_pip_install_puts_the_hook_in_site_packages(hooked_venv: Venv) -> None:
    (record,) = hooked_venv.site_packages.glob("cmem_adapter-*.dist-info/RECORD")

    assert (hooked_venv.site_packages / HOOK).read_bytes() == (REPO / HOOK).read_bytes()
    assert f"{HOOK}," in record.read_text()  # so pip uninstall removes it


ROUTES: dict[str, tuple[str, ...]] = {
    "install": ("-c", INSTALL_THEN_RUN),
    "run": ("-m", "cmem_adapter", "run"),
    "pth": (),
}


@pytest.mark.parametrize("source", ["env", "config.ini"])
@pytest.mark.parametrize("route", ROUTES)
def test_an_unmodified_script_gets_the_configured_trust(
    route: str,
    source: str,
    hooked_venv: Venv,
    legacy_script: Path,
    server: HTTPSServer,
    ca_file: str,
    other_ca_file: str,
    tmp_path: Path,
) -> None:
    if source == "env":
        env = child_env(tmp_path, SSL_VERIFY="system", SSL_CERT_FILE=ca_file)
    else:  # [good] names the server's CA; the environment's bundle is another CA's
        config = write_config(tmp_path / "config.ini", server, ca_file, other_ca_file)
        env = child_env(
            tmp_path,
            CMEMC_CONFIG_FILE=str(config),
            CMEMC_CONNECTION="good",
            REQUESTS_CA_BUNDLE=other_ca_file,
        )
    stock = run(env, legacy_script, server.url, "3")
    python = Path(sys.executable)
    if route == "pth":
        python = hooked_venv.python
        env["CMEM_ADAPTER_AUTO"] = "1"
    else:
        env["PYTHONPATH"] = str(REPO)

    done = run(env, *ROUTES[route], legacy_script, server.url, "3", python=python)

    assert "CERTIFICATE_VERIFY_FAILED" in stock.stderr
    assert (done.returncode, done.stdout, done.stderr) == (3, "status 200\n", "")


IMPORTED = (
    "import sys; print(sorted({m.split('.')[0] for m in sys.modules}"
    " & {'cmem_adapter', 'requests', 'urllib3', 'certifi', 'truststore'}))"
)


@pytest.mark.parametrize(
    ("auto", "imported"),
    [
        (None, "[]"),
        ("", "[]"),
        ("0", "[]"),
        (" Off ", "[]"),
        ("1", "['certifi', 'cmem_adapter', 'requests', 'urllib3']"),
    ],
)
def test_the_hook_imports_nothing_unless_asked(
    auto: str | None, imported: str, hooked_venv: Venv, tmp_path: Path
) -> None:
    env = child_env(tmp_path)
    if auto is not None:
        env["CMEM_ADAPTER_AUTO"] = auto

    done = run(env, "-c", IMPORTED, python=hooked_venv.python)

    assert (done.stdout, done.stderr) == (imported + "\n", "")


HOOK_COST = """\
import pathlib, site, sys, time
sys.path += [sys.argv[1], *pathlib.Path(sys.argv[2]).read_text().split()]
start = time.perf_counter()
site.addpackage(sys.argv[1], sys.argv[3], set())
print((time.perf_counter() - start) * 1e6)
"""
"""Times what site does with the hook at start-up, once, in an interpreter started without it."""


def test_the_hook_costs_well_under_a_millisecond(hooked_venv: Venv, tmp_path: Path) -> None:
    deps = hooked_venv.site_packages / DEPS
    times = []
    for _ in range(5):
        done = run(
            child_env(tmp_path),
            *("-S", "-c", HOOK_COST, hooked_venv.site_packages, deps, HOOK),
            python=hooked_venv.python,
        )
        assert (done.returncode, done.stderr) == (0, ""), done.stderr
        times.append(float(done.stdout))

    print(f"{HOOK} without CMEM_ADAPTER_AUTO: {min(times):.0f} µs (best of 5 start-ups)")
    assert min(times) < 1000  # importing cmem_adapter (and requests) would take 30 ms or more


@pytest.mark.parametrize(
    ("settings", "said"),
    [
        ({"SSL_VERIFY": "sometimes"}, "SSL_VERIFY set by env to 'sometimes': not an accepted"),
        ({"REQUESTS_CA_BUNDLE": "/nowhere/ca.pem"}, "/nowhere/ca.pem"),
        ({"CMEMC_CONNECTION": "staging"}, "connection 'staging': no such section"),
        ({"CMEM_ADAPTER_AUTO": "maybe"}, "CMEM_ADAPTER_AUTO='maybe' is not 1 or 0"),
    ],
    ids=["ssl-verify", "bundle", "connection", "auto"],
)
def test_a_broken_configuration_says_one_line_and_the_script_goes_on(
    settings: dict[str, str],
    said: str,
    hooked_venv: Venv,
    legacy_script: Path,
    http_server: HTTPServer,
    tmp_path: Path,
) -> None:
    env = child_env(tmp_path, **{"CMEM_ADAPTER_AUTO": "1", **settings})

    done = run(env, legacy_script, http_server.url, "3", python=hooked_venv.python)

    assert (done.returncode, done.stdout) == (3, "status 200\n")
    (line,) = done.stderr.splitlines()
    assert line.startswith("cmem-adapter: not installed, TLS trust left to requests: ")
    assert said in line
