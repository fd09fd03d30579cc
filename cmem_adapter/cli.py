"""The ``cmem-adapter`` command line: check, show, fetch-chain, demo and run.

Every line it prints goes through `terminal.say`; `explain` words the failures and the advice,
`demo` holds the ``demo`` command.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import logging
import os
import pkgutil
import runpy
import sys
from collections.abc import Callable
from typing import IO, Any

import requests

from .adapter import without_credentials
from .config import CMEM_BASE_URI, CmemcConfig, connection_name, default_config_file
from .demo import demo
from .errors import ConfigError
from .explain import failure, fetch_advice, listing
from .mounting import install, mount
from .policy import TrustPolicy
from .probe import TIMEOUT, ProbeError, Route, fetch_chain, printable
from .settings import (
    CURL_CA_BUNDLE,
    REQUESTS_CA_BUNDLE,
    SSL_CERT_DIR,
    SSL_CERT_FILE,
    Layer,
    Setting,
    first,
)
from .terminal import DEBUG_FORMAT, SafeFormatter, error, logging_to, say

log = logging.getLogger("cmem_adapter")


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code of the command in `argv` (default: the process's arguments).

    0 for success, 1 when the server or the script failed, 2 for a configuration or usage
    error. ``run`` ends the process with the script's own exit code.
    """
    given = sys.argv[1:] if argv is None else argv
    args = _parser().parse_args(given)
    if args.command == "run":
        args.args = _script_arguments(given, args.args)
    if not args.debug:
        return _command(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeFormatter(DEBUG_FORMAT))
    with logging_to(handler):
        return _command(args)


def _parser() -> argparse.ArgumentParser:
    """Returns the parser of the command line: the global options, then each command."""
    parser = argparse.ArgumentParser(
        prog="cmem-adapter",
        description="Which CAs a requests connection trusts, and why (see the cmem_adapter docs).",
    )
    _add_global_options(parser, after_command=False)
    # The same options after the command; SUPPRESS: one given before it is not overwritten.
    options = argparse.ArgumentParser(add_help=False)
    _add_global_options(options, after_command=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=help, parents=[options])

    default_url = "default: the connection's CMEM_BASE_URI"
    check = command("check", "request URL and explain how it was verified")
    check.add_argument("url", metavar="URL", nargs="?", help=default_url)
    command("show", "show the resolved configuration and where it came from")
    fetch = command("fetch-chain", "save the certificates a server presents, unverified, as PEM")
    fetch.add_argument("url", metavar="URL", nargs="?", help=default_url)
    fetch.add_argument("-o", "--output", metavar="FILE", help="PEM file (default: stdout)")
    command("demo", "show each trust source against a loopback server")
    run = command("run", "run a Python script with the adapter installed")
    run.add_argument("script", metavar="SCRIPT")
    run.add_argument("args", nargs=argparse.REMAINDER, metavar="ARGS")
    return parser


def _script_arguments(given: list[str], parsed: list[str]) -> list[str]:
    """Returns the arguments after SCRIPT as given: argparse drops a ``--`` right after it,
    which python would pass on to the script."""
    before = len(given) - len(parsed) - 1
    if before >= 0 and given[before] == "--" and given[before + 1 :] == parsed:
        return ["--", *parsed]
    return parsed


def _add_global_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
    """Adds --debug, --config-file and -c; `after_command`: with no defaults of their own."""
    unset = argparse.SUPPRESS if after_command else None
    parser.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS if after_command else False,
        help="print the library's debug lines to stderr",
    )
    parser.add_argument(
        "--config-file",
        metavar="FILE",
        default=unset,
        help="cmemc's config.ini (default: as cmemc)",
    )
    parser.add_argument(
        "-c", "--connection", metavar="NAME", default=unset, help="the config.ini section to use"
    )


def _command(args: argparse.Namespace) -> int:
    """Returns the exit code of the command `args` names, given the trust policy the options
    choose (``demo``: none)."""
    if args.command == "demo":  # no outer configuration at all
        return demo()
    if args.command == "run":  # resolves its policy as it installs it
        return _run(args)
    try:
        policy = TrustPolicy.from_config(args.connection, args.config_file)
    except ConfigError as e:
        return error(e, 2)
    return _COMMANDS[args.command](args, policy)


# check


def _check(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Requests the URL as the library would; 0 when the server was accepted, any HTTP status."""
    try:
        url, base, route = _destination(args, policy)  # a bad URL or proxy: said here, once
    except ValueError as e:  # ConfigError included
        return error(e, 2)
    shown = without_credentials(url)
    with requests.Session() as session:
        try:
            # Mounted on the origin: user info in the URL still goes with the request.
            mount(session, shown, policy)
        except ConfigError as e:
            return error(e, 2)
        _say_url(url, base)
        _print_source(policy)
        try:
            status, locations = _get(session, url)
        except requests.exceptions.RequestException as e:
            say(*failure(url, policy, route, e))
            return 1
    # A redirect may lead to another server, which this check has not looked at.
    followed = f" (redirect to {locations[0]}, not followed)" if locations else ""
    say(f"OK: HTTP {status} from {shown}{followed}")
    return 0


def _destination(
    args: argparse.Namespace, policy: TrustPolicy
) -> tuple[str, Setting | None, Route]:
    """Returns the URL (see `_target`), the setting it came from if any, and the route to it.

    Raises `ValueError` (`ConfigError` included), saying why, for no URL, a bad one or a bad
    proxy.
    """
    url, base = _target(args)
    return url, base, Route.to(url, policy)


def _target(args: argparse.Namespace) -> tuple[str, Setting | None]:
    """Returns the URL given, else the connection's CMEM_BASE_URI and the setting it came from.

    Raises `ConfigError` when there is neither, saying both ways to give one.
    """
    if args.url is not None:
        return args.url, None
    config = CmemcConfig.load(args.config_file, os.environ)
    base = first(config.layers(args.connection, os.environ), CMEM_BASE_URI)
    if base is not None:
        return base.value, base
    connection = connection_name(args.connection, os.environ)
    if connection and config.path:
        where = f"in [{connection}] in {config.path} nor in the environment"
    else:
        where = "in the environment" + (
            f" nor in [DEFAULT] in {config.path}" if config.path else ""
        )
    raise ConfigError(
        f"no URL given, and {CMEM_BASE_URI} is not set {where}. Fix: give the URL, e.g."
        f" `cmem-adapter {args.command} https://cmem.example.com/`, or set {CMEM_BASE_URI}"
        " in the connection's config.ini section (chosen with -c) or in the environment"
    )


def _say_url(url: str, base: Setting | None, file: IO[str] | None = None) -> None:
    """Prints the URL when a setting gave it, and which setting, as `show` says it."""
    if base is not None:
        where = f", {base.where}" if base.where else ""
        shown = without_credentials(url)
        say(f"URL: {shown}  ({base.key} set by {base.origin}{where})", file=file)


def _get(session: requests.Session, url: str) -> tuple[int, list[str]]:
    """Returns the HTTP status of `url` and the redirect it answers with, if any, not followed.

    Raises `requests.exceptions.RequestException` when the request fails.
    """
    locations: list[str] = []
    # trust_env stays on, for the environment's proxies; the adapter ignores the
    # verify= that requests takes from REQUESTS_CA_BUNDLE: the policy decides.
    with session.get(
        url,
        timeout=TIMEOUT,
        allow_redirects=False,
        stream=True,
        hooks={"response": functools.partial(_take_location, locations)},
    ) as r:
        return r.status_code, locations


def _take_location(
    found: list[str], response: requests.Response, *args: Any, **kwargs: Any
) -> None:
    """Moves the Location header, printable, to `found`: requests would parse it even when not
    following it, and fail on a malformed one (not UTF-8, not a URL) the server sent."""
    location = response.headers.pop("Location", None)
    if location is not None:
        with contextlib.suppress(UnicodeError):  # as requests reads it, if it can
            location = location.encode("latin-1").decode("utf-8")
        found.append(printable(location))


def _print_source(policy: TrustPolicy) -> None:
    """Prints the trust source and each setting that chose it."""
    say(f"Source: {policy.describe()}")
    for setting in policy.settings:
        where = f" ({setting.where})" if setting.where else ""
        off = policy.source == "off" and setting.key in (REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE)
        say(f"  {setting}{where}" + ("; ignored: verification is off" if off else ""))
    if not policy.settings:
        say("  by default: SSL_VERIFY and REQUESTS_CA_BUNDLE are not set")


# show


def _show(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Prints the config file, the connection, every setting with its origin, and the source."""
    config = CmemcConfig.load(args.config_file, os.environ)
    connection = connection_name(args.connection, os.environ)
    missing = f"none ({default_config_file(os.environ)} does not exist)"
    say(f"Config file: {config.path or missing}")
    say(f"Connection: {connection or 'none'}")
    settings = config.settings(args.connection, os.environ)
    say("Settings:" if settings else "Settings: none")
    for setting in settings:
        say(f"  {_setting_value(setting)}")
        if _ignored(setting):
            used = Layer("env", os.environ).get(setting.key)
            if used is not None:  # below the section in `settings`, yet the one used
                say(f"  {_setting_value(used)}")
    say(f"Source: {policy.describe()}")
    return 0


def _setting_value(setting: Setting) -> str:
    """Returns "KEY = value  (set by ORIGIN, where)", saying when the policy ignores it."""
    value = "(withheld)" if setting.shown is None else setting.shown
    where = f", {setting.where}" if setting.where else ""
    ignored = "; ignored: read from the environment only" if _ignored(setting) else ""
    return f"{setting.key} = {value}  (set by {setting.origin}{where}{ignored})"


def _ignored(setting: Setting) -> bool:
    """True when a config file sets a key the policy reads from the environment only (for the
    system store)."""
    return setting.key in (SSL_CERT_FILE, SSL_CERT_DIR) and setting.origin == "config"


# fetch-chain


def _fetch_chain(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Prints what the server presents and saves it as PEM; never trusts it."""
    try:
        url, base, route = _destination(args, policy)
    except ValueError as e:  # ConfigError included
        return error(e, 2)
    try:
        chain = fetch_chain(route)
    except ProbeError as e:
        return error(e, 1)
    out = sys.stdout if args.output else sys.stderr  # stdout may be the PEM itself
    _say_url(url, base, file=out)
    say(f"{route} presented {len(chain)} certificate(s), NOT verified:", *listing(chain), file=out)
    pem = "".join(cert.pem for cert in chain)
    target = "<the saved file>"
    if args.output:
        target = os.path.abspath(args.output)
        try:
            with open(target, "w", encoding="ascii") as f:
                f.write(pem)
        except OSError as e:
            return error(f"cannot write {target}: {e.strerror}", 1)
        say(f"Saved them as PEM to {target}", file=out)
    else:
        sys.stdout.write(pem)  # base64 that OpenSSL wrote
    say(*fetch_advice(chain, route, policy, target), file=out)
    return 0


# run


def _run(args: argparse.Namespace) -> int:
    """Runs the script as ``python SCRIPT ARGS`` would, with `install` applied.

    Without --config-file or -c, new sessions follow the environment as the script changes it
    (as under CMEM_ADAPTER_AUTO=1); with them, the policy they choose holds. The script takes
    over this process: its exit code and exceptions end it as with python.
    """
    if not os.path.exists(args.script):
        return error(f"cannot run {args.script}: no such file", 2)
    # A directory or zip file runs its __main__ module, as with python (runpy.run_path asks
    # the importer python would use).
    importer = pkgutil.get_importer(args.script)
    if importer is not None and importer.find_spec("__main__") is None:
        return error(f"can't find '__main__' module in {args.script!r}", 1)
    if importer is None:
        try:
            with open(args.script, "rb"):
                pass
        except OSError as e:
            return error(f"cannot run {args.script}: {e.strerror}", 2)
    chosen = args.connection is not None or args.config_file is not None
    try:
        install(TrustPolicy.from_config(args.connection, args.config_file) if chosen else None)
    except ConfigError as e:
        return error(e, 2)
    sys.argv = [args.script, *args.args]
    script = args.script
    if importer is None:
        sys.path[0] = os.path.dirname(os.path.realpath(script))
    else:  # run_path puts the directory or zip file first (and in sys.argv[0]), as python
        del sys.path[0]
        script = os.path.join(os.getcwd(), script)
    runpy.run_path(script, run_name="__main__")
    return 0


_COMMANDS: dict[str, Callable[[argparse.Namespace, TrustPolicy], int]] = {
    "check": _check,
    "show": _show,
    "fetch-chain": _fetch_chain,
}
