"""The ``cmem-adapter`` command line: check, show, fetch-chain, demo and run (DESIGN §7)."""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import logging
import logging.handlers
import os
import pkgutil
import re
import runpy
import socketserver
import ssl
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime, timezone
from typing import IO, Any

import certifi
import requests

from ._throwaway_ca import ThrowawayCA
from .adapter import without_credentials
from .bundles import CA
from .config import CMEM_BASE_URI, CMEMC_CONNECTION, CmemcConfig, default_config_file
from .errors import ConfigError, redact
from .mounting import install, mount
from .policy import TrustPolicy
from .probe import (
    TIMEOUT,
    Presented,
    ProbeError,
    Refusal,
    Route,
    causes,
    fetch_chain,
    other_sources,
    plain,
    printable,
    verify,
)
from .settings import (
    REQUESTS_CA_BUNDLE,
    SSL_CERT_DIR,
    SSL_CERT_FILE,
    SSL_VERIFY,
    Layer,
    Setting,
    first,
    verify_mode,
)

log = logging.getLogger("cmem_adapter")

DEBUG_FORMAT = "[%(asctime)s] %(message)s"


def main(argv: list[str] | None = None) -> int:
    """Returns the exit code of the command in `argv` (default: the process's arguments).

    0 for success, 1 when the server or the script failed, 2 for a configuration or usage
    error. ``run`` ends the process with the script's own exit code.
    """
    args = _parser().parse_args(argv)
    if not args.debug:
        return _command(args)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter(DEBUG_FORMAT))
    with _logging_to(handler):
        return _command(args)


def _parser() -> argparse.ArgumentParser:
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


def _add_global_options(parser: argparse.ArgumentParser, after_command: bool) -> None:
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
    if args.command == "demo":  # no outer configuration at all
        return _demo()
    try:
        policy = TrustPolicy.from_config(args.connection, args.config_file)
    except ConfigError as e:
        return _error(e, 2)
    return _COMMANDS[args.command](args, policy)


def _say(*lines: str, file: IO[str] | None = None) -> None:
    """Prints `lines`, made safe: every line the command line writes goes through here.

    URL passwords are masked, and characters a terminal would act on are escaped, line by
    line, whatever the text: a message, a setting's value, an exception, a server's words.
    """
    print(*(_safe(line) for line in lines), sep="\n", file=file or sys.stdout)


def _safe(text: str) -> str:
    return "\n".join(printable(redact(line)) for line in text.split("\n"))


class _SafeFormatter(logging.Formatter):
    """Formats log records as `_say` prints lines, for the debug lines on stderr."""

    def format(self, record: logging.LogRecord) -> str:
        return _safe(super().format(record))


def _error(message: object, code: int) -> int:
    _say(f"error: {message}", file=sys.stderr)
    return code


@contextlib.contextmanager
def _logging_to(handler: logging.Handler) -> Iterator[None]:
    """Sends the library's log records, debug lines included, to `handler` meanwhile."""
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# check


def _check(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Requests the URL as the library would; 0 when the server was accepted, any HTTP status."""
    try:
        url, base = _target(args)
        route = Route.to(url, policy)  # a bad URL or proxy: said here, once
    except ValueError as e:  # ConfigError included
        return _error(e, 2)
    shown = without_credentials(url)
    locations: list[str] = []
    with requests.Session() as session:
        try:
            # Mounted on the origin: user info in the URL still goes with the request.
            mount(session, shown, policy)
        except ConfigError as e:
            return _error(e, 2)
        if base is not None:
            _say(f"URL: {shown}  ({_set_by(base)})")
        _print_source(policy)
        try:
            # trust_env stays on, for the environment's proxies; the adapter ignores the
            # verify= that requests takes from REQUESTS_CA_BUNDLE: the policy decides.
            with session.get(
                url,
                timeout=TIMEOUT,
                allow_redirects=False,
                stream=True,
                hooks={"response": functools.partial(_take_location, locations)},
            ) as r:
                status = r.status_code
        except requests.exceptions.RequestException as e:
            _say(*_failure(url, policy, route, e))
            return 1
    # A redirect may lead to another server, which this check has not looked at.
    followed = f" (redirect to {locations[0]}, not followed)" if locations else ""
    _say(f"OK: HTTP {status} from {shown}{followed}")
    return 0


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
    connection = args.connection or os.environ.get(CMEMC_CONNECTION, "").strip()
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


def _set_by(setting: Setting) -> str:
    """Returns "KEY set by ORIGIN, where", as `show` says it."""
    return f"{setting.key} set by {setting.origin}" + (
        f", {setting.where}" if setting.where else ""
    )


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
    _say(f"Source: {policy.describe()}")
    for setting in policy.settings:
        where = f" ({setting.where})" if setting.where else ""
        _say(f"  {setting}{where}")
    if not policy.settings:
        _say("  by default: SSL_VERIFY and REQUESTS_CA_BUNDLE are not set")


def _tls_failure(url: str, policy: TrustPolicy, route: Route, error: Exception) -> list[str]:
    """Returns the explanation of a failed handshake: what was presented, why, what fixes it."""
    shown = without_credentials(url)
    try:
        chain = fetch_chain(route)
        refusal = verify(route, policy)
    except ProbeError as e:
        return [f"FAILED: {shown}: {plain(error)}", f"  (the certificate cannot be shown: {e})"]
    if refusal is None:  # not the origin's certificate: the proxy's, or gone meanwhile
        return [f"FAILED: {shown}: {plain(error)}"]
    lines = [
        f"FAILED: the trust source {_chosen(policy)} refused the certificate of {shown}",
        f"The server presented{f' (through {route.proxy_shown})' if route.proxy else ''}:",
        *_summaries(chain),
        f"Why: {_why(refusal, chain, route, policy)}",
    ]
    problems, also = _hidden_problems(refusal, chain, route, "the server's certificate")
    lines += also
    if refusal.kind in _CERTIFICATE_KINDS:
        return [*lines, f"Fix: {_certificate_fix(refusal.kind, chain, route)}"]
    try:
        verdicts = other_sources(route)
    except ProbeError as e:
        lines.append(f"Other sources: not known ({e})")
        fixes = _bundle_fix(url, policy, chain)
    else:
        lines.append(
            f"Other sources: {'; '.join(f'{n} {_verdict(v)}' for n, v in verdicts.items())}"
        )
        fixes = _trust_fixes(url, policy, route, chain, verdicts)
    if problems:  # the certificate first; trusting its CA only then
        at = next(i for i, line in enumerate(fixes) if line.startswith("Fix: "))
        fixes[at] = f"Then, to trust its CA: {fixes[at].removeprefix('Fix: ')}"
        fixes.insert(at, f"Fix: {_first_fix(problems, chain, route)}")
    return [*lines, *fixes]


def _hidden_problems(
    refusal: Refusal, chain: list[Presented], route: Route, whose: str
) -> tuple[list[str], list[str]]:
    """Returns the kinds of the leaf's problems that `refusal` does not name, and a line for
    each. OpenSSL reports the first error it meets: an untrusted CA hides an expired or
    misnamed certificate, which the chain shows all the same."""
    found = [(kind, text) for kind, text in _leaf_problems(chain, route) if kind != refusal.kind]
    enough = ""
    if refusal.untrusted and chain:
        enough = f": trusting {'it' if chain[0].self_signed else 'its CA'} will not be enough"
    return [kind for kind, _ in found], [f"Also: {whose} {text}{enough}" for _, text in found]


def _first_fix(problems: list[str], chain: list[Presented], route: Route) -> str:
    """Returns the fix of the first problem, to come before trusting the CA."""
    fix = _certificate_fix(problems[0], chain, route).removeprefix(_NO_TRUST_SETTING)
    return fix[:1].lower() + fix[1:]


def _leaf_problems(chain: list[Presented], route: Route) -> list[tuple[str, str]]:
    """Returns what, besides trust, the server's certificate fails: (refusal kind, words)."""
    if not chain:
        return []
    leaf, now = chain[0], datetime.now(timezone.utc)
    found = []
    if leaf.is_for(route.host) is False:
        found.append(("name mismatch", f"is for {_names(leaf)}, not {route.host}"))
    if leaf.expired(now):
        found.append(("expired", f"expired {_date(leaf.not_after)}"))
    if leaf.early(now):
        found.append(("not yet valid", f"is valid only from {_date(leaf.not_before)}"))
    return found


def _names(cert: Presented) -> str:
    return ", ".join(cert.names) or cert.subject


def _failure(url: str, policy: TrustPolicy, route: Route, error: Exception) -> list[str]:
    """Returns the lines saying why the request failed, and at which hop."""
    refused = any(isinstance(e, ssl.SSLCertVerificationError) for e in causes(error))
    hop = route.to_proxy
    if refused and hop is not None:  # the https:// proxy's certificate, or the server's?
        # urllib3 2 says ProxyError, 1.26 only SSLError: a look at the proxy tells.
        at_proxy = _proxy_refusal(url, policy, route, hop, error)
        if at_proxy:
            return at_proxy
    if isinstance(error, requests.exceptions.SSLError):
        return _tls_failure(url, policy, route, error)
    if isinstance(error, requests.exceptions.ProxyError) and route.proxy:
        return [
            f"FAILED: {without_credentials(url)} was not reached: the proxy {route.proxy_shown}"
            f" failed: {plain(error)}"
        ]
    return [f"FAILED: {without_credentials(url)}: {plain(error)}"]


def _proxy_refusal(
    url: str, policy: TrustPolicy, route: Route, hop: Route, error: Exception
) -> list[str]:
    """Returns the explanation of a refused TLS connection to the ``https://`` proxy (`hop`):
    which policy verified it, what it presented, why it was refused, what fixes it. Returns
    no lines when the policy accepts the proxy: then it was the server's certificate."""
    lines = [
        f"FAILED: {without_credentials(url)} was not reached: the TLS connection to the proxy"
        f" {route.proxy_shown} (from the environment) was refused: the trust source"
        f" {_chosen(policy)}, which verifies the proxy as well as the server, refused the"
        " proxy's certificate",
    ]
    try:
        chain = fetch_chain(hop)
        refusal = verify(hop, policy)
    except ProbeError as e:
        if not isinstance(error, requests.exceptions.ProxyError):
            return []  # which hop refused is not known: as for the server
        return [*lines, f"  (its certificate cannot be shown: {e})", _proxy_trust_fix(policy)]
    if refusal is None:
        return []
    problems, also = _hidden_problems(refusal, chain, hop, "the proxy's certificate")
    lines += [
        "The proxy presented:",
        *_summaries(chain),
        f"Why: {_why(refusal, chain, hop, policy)}",
        *also,
    ]
    if refusal.kind in _CERTIFICATE_KINDS:
        fix = _certificate_fix(refusal.kind, chain, hop)
        return [*lines, f"Fix (the proxy's certificate): {fix}"]
    if problems:
        trust = _proxy_trust_fix(policy).removeprefix("Fix: ")
        return [
            *lines,
            f"Fix (the proxy's certificate): {_first_fix(problems, chain, hop)}",
            f"Then, to trust its CA: {trust}",
        ]
    return [*lines, _proxy_trust_fix(policy)]


def _proxy_trust_fix(policy: TrustPolicy, system: Refusal | None = None) -> str:
    """Returns the Fix line trusting a proxy's CA on top of what `policy` trusts. `system` is
    the system store's refusal of the proxy's certificate, when it was asked."""
    ca = "<a PEM file with the proxy's CA certificate>"
    if policy.ca is not None:
        also = {"bundle": "its CAs verify the proxy and the server alike"}.get(
            policy.source, f"extra CAs to {_base_name(policy)}"
        )
        how = (
            f"add the proxy's CA certificate to {policy.ca.describe()}"
            f" ({policy.ca.setting.key}: {also})"
        )
    elif policy.source == "certifi" and _names_source(policy, "certifi"):
        how = f"set {_assignment(policy, REQUESTS_CA_BUNDLE, ca)} (extra CAs to certifi's)"
    elif policy.source == "system":
        how = f"set {_assignment(policy, REQUESTS_CA_BUNDLE, ca)} (extra CAs to the system's)"
    else:
        how = (
            f"set {_assignment(policy, REQUESTS_CA_BUNDLE, ca)} and"
            f" {_assignment(policy, SSL_VERIFY, 'certifi')} (extra CAs on top of certifi's)"
        )
    fix = f"Fix: trust the proxy's CA (your network administrators have it): {how}"
    # Not what is in effect already, nor what this machine was seen refusing.
    if policy.source != "system" and (system is None or not system.untrusted):
        fix += f"; or set {_assignment(policy, SSL_VERIFY, 'system')} if the operating system"
        fix += " trusts that CA"
    return fix


def _base_name(policy: TrustPolicy) -> str:
    return "certifi's" if policy.source == "certifi" else "the system's"


def _names_source(policy: TrustPolicy, mode: str) -> bool:
    """True when an SSL_VERIFY setting asks for `mode` by name (not "true" or unset)."""
    return any(s.key == SSL_VERIFY and verify_mode(s) == mode for s in policy.settings)


def _chosen(policy: TrustPolicy) -> str:
    """Returns the source and what chose it, e.g. "bundle (chosen by REQUESTS_CA_BUNDLE (env))"."""
    source = policy.source + (" + extra CAs" if policy.ca and policy.source != "bundle" else "")
    chosen = ", ".join(f"{s.key} ({s.where or s.origin})" for s in policy.settings)
    return f"{source} ({f'chosen by {chosen}' if chosen else 'by default'})"


def _summaries(chain: list[Presented]) -> list[str]:
    return [f"  {i}. {_summary(cert)}" for i, cert in enumerate(chain, 1)]


def _summary(cert: Presented) -> str:
    issuer = "itself (self-signed)" if cert.self_signed else cert.issuer
    ends = "expired" if cert.expired(datetime.now(timezone.utc)) else "expires"
    return f"{cert.subject}, issued by {issuer}; {ends} {_date(cert.not_after)}"


def _date(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d %H:%M:%S} UTC"


def _why(refusal: Refusal, chain: list[Presented], route: Route, policy: TrustPolicy) -> str:
    """Returns the reason in plain words, naming the certificate or CA concerned."""
    detail = _detail(refusal, chain, route, _trusted(policy))
    return f"{refusal.kind}: {detail} ({refusal.message})" if detail else refusal.message


def _trusted(policy: TrustPolicy) -> str:
    """Returns what the policy trusts, to follow "is not among"."""
    extra = f" nor the extra CAs in {policy.ca.describe()}" if policy.ca else ""
    if policy.source == "bundle":
        return f"the CAs in {policy.ca.describe() if policy.ca else 'the bundle'}"
    if policy.source == "system":
        return f"the system trust store's CAs{extra}"
    return f"certifi's CAs{extra}"


def _detail(refusal: Refusal, chain: list[Presented], route: Route, trusted: str) -> str:
    now = datetime.now(timezone.utc)
    expired = [c for c in chain if c.expired(now)]
    early = [c for c in chain if c.early(now)]
    if refusal.kind == "unknown issuer" and chain:
        return f"{chain[-1].issuer} is not among {trusted}"
    if refusal.kind == "self-signed" and chain:
        return f"{chain[-1].subject} signed its own certificate, and is not among {trusted}"
    if refusal.kind == "strict X.509":
        return "a certificate in the chain breaks a rule of strict X.509 checking"
    if refusal.kind == "expired" and expired:
        return f"{expired[0].subject} expired {_date(expired[0].not_after)}"
    if refusal.kind == "not yet valid" and early:
        return f"{early[0].subject} is valid only from {_date(early[0].not_before)}"
    if refusal.kind == "name mismatch" and chain:
        return f"the certificate is for {_names(chain[0])}, not {route.host}"
    return ""


_CERTIFICATE_KINDS = ("expired", "not yet valid", "name mismatch", "strict X.509")
"""Refusals that trusting another CA would not fix."""


_NO_TRUST_SETTING = "no trust setting fixes this. "


def _certificate_fix(kind: str, chain: list[Presented], route: Route) -> str:
    if kind == "name mismatch" and chain and chain[0].names:
        name = chain[0].names[0]
        host = f"[{name}]" if ":" in name else name
        return (
            f"{_NO_TRUST_SETTING}Use a name the certificate is for, e.g."
            f" https://{host}:{route.port}/, or have it reissued to include {route.host}"
        )
    if kind == "name mismatch":
        return f"{_NO_TRUST_SETTING}Have the certificate reissued for {route.host}"
    if kind == "strict X.509":
        return (
            "have the certificates reissued to today's rules (a CA's basicConstraints marked"
            " critical, subject and authority key identifiers, ...). Python 3.13 checks them"
            " by default, as urllib3"
            " >= 2.4 does; older Pythons and SSL_VERIFY=system (which trusts the operating"
            " system's store, with truststore's checks) accept such a CA meanwhile"
        )
    if kind == "not yet valid":
        return (
            f"{_NO_TRUST_SETTING}Check this machine's clock; if it is right, the server's"
            " administrator must reissue the certificate"
        )
    return (
        f"{_NO_TRUST_SETTING}The server's administrator must renew the certificate (or this"
        " machine's clock is wrong)"
    )


def _verdict(refusal: Refusal | None) -> str:
    if refusal is None:
        return "accepts it"
    if refusal.kind == "unavailable":
        return "is not available here"
    return f"refuses it ({refusal.kind})"


def _trusts_ca(refusal: Refusal | None) -> bool:
    """True when a source accepted the server, or refused it for its certificate only."""
    return refusal is None or refusal.kind in ("expired", "not yet valid", "name mismatch")


def _trust_fixes(
    url: str,
    policy: TrustPolicy,
    route: Route,
    chain: list[Presented],
    verdicts: Mapping[str, Refusal | None],
) -> list[str]:
    """Returns the setting that would make the server trusted, and a proxy note if it applies."""
    public, system = verdicts["certifi"], verdicts["system"]
    intercepted = route.proxy is not None and public is not None and public.untrusted
    lines = []
    if intercepted:
        lines.append(
            f"Note: the request went through the proxy {route.proxy_shown} (from the"
            " environment), and no public CA issued this certificate: it looks like it was"
            " presented by a TLS-intercepting proxy rather than the server. Then the proxy's"
            " CA must be trusted."
        )
    if _trusts_ca(system) and policy.source != "system":
        says = "accepts this server" if system is None else "trusts its CA"
        lines.append(
            f"Fix: set {_assignment(policy, SSL_VERIFY, 'system')}: the operating system's"
            f" trust store {says}"
        )
    elif _trusts_ca(public) and policy.source != "certifi":
        says = "accepts this server" if public is None else "trusts its CA"
        lines.append(
            f"Fix: set {_assignment(policy, SSL_VERIFY, 'certifi')}: certifi {says} (a"
            " REQUESTS_CA_BUNDLE then adds to certifi's CAs instead of replacing them)"
        )
    elif intercepted:
        lines.append(_proxy_trust_fix(policy, system))
    else:
        lines += _bundle_fix(url, policy, chain)
    return lines


def _bundle_fix(url: str, policy: TrustPolicy, chain: list[Presented]) -> list[str]:
    """Returns the Fix line saving the chain and trusting it, and notes on what that changes."""
    name = "ca.pem"
    if policy.ca is not None and os.path.abspath(name) == policy.ca.value:
        name = "server-ca.pem"  # never over the file in use
    fetch = (
        f"save the chain with `cmem-adapter fetch-chain {without_credentials(url)} -o {name}`,"
        " check it"
    )
    first_line, *notes = _trust_advice(policy, chain, os.path.abspath(name), fetch)
    return [f"Fix: {first_line}", *notes]


def _trust_advice(
    policy: TrustPolicy, chain: list[Presented], saved: str, fetch: str | None
) -> list[str]:
    """Returns how to trust `chain`, saved as `saved` (after `fetch`, the words saving it),
    on top of `policy`: never what is set already, nor a setting that cannot work."""
    ca = policy.ca
    then = f"{fetch}, then " if fetch else ""
    rooted = any(cert.self_signed for cert in chain)  # the server sends its root CA too
    held = ca is not None and _holds(ca, chain)
    public = _public_count(ca) if ca is not None else 0
    # The saved certificates added where they keep what the policy trusts now.
    if ca is not None and not public:
        named = f"{ca.setting.key}, {ca.setting.where or ca.setting.origin}"
        add = f"add the saved certificates to {ca.describe()} ({named})"
    else:
        add = f"set {_assignment(policy, REQUESTS_CA_BUNDLE, saved)}"
    if policy.source == "system" and not rooted:
        # truststore's flags: only a root CA is a trust anchor among the extra CAs.
        certifi = _assignment(policy, SSL_VERIFY, "certifi")
        if ca is not None:
            get_root = f"add it to {ca.describe()}"
        else:
            get_root = f"set {_assignment(policy, REQUESTS_CA_BUNDLE, '<that file>')}"
        if ca is not None and held:
            other = f"or set {certifi}, which takes every extra CA as a trust anchor: then"
            other += f" {ca.describe()} is enough"
        else:
            other = f"or {then}set {certifi} and {add.removeprefix('set ')}: there every extra CA"
            other += " is a trust anchor"
        return [
            "SSL_VERIFY=system needs the root CA among its extra CAs, and the server does not"
            " send it: get the root CA certificate (PEM) from the server's administrator and"
            f" {get_root}; {other}"
        ]
    if ca is not None and held:
        return [f"nothing more to set: {ca.describe()} ({ca.setting.key}) holds them already"]
    lines = [f"{then}{add}"]
    replaced = ""
    if policy.source == "certifi" and ca is None and not _names_source(policy, "certifi"):
        replaced = "certifi's public CAs"
    elif policy.source == "bundle" and ca is not None and public:
        replaced = f"{ca.describe()}, with its {public} public CAs"
    if replaced:
        keep = _assignment(policy, SSL_VERIFY, "certifi") + (" (or system)" if rooted else "")
        lines.append(
            f"Note: REQUESTS_CA_BUNDLE alone replaces {replaced}: other https:// servers would"
            f" fail then. To keep them, set {keep} as well: the file then adds to them"
        )
    return lines


_PEM = re.compile(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.DOTALL)


def _ders(pems: Iterable[str]) -> set[bytes]:
    """Returns the DER form of each PEM certificate, to compare certificates by content."""
    found = set()
    for pem in pems:
        with contextlib.suppress(ValueError):  # not base64: no certificate to compare
            found.add(ssl.PEM_cert_to_DER_cert(pem))
    return found


def _holds(ca: CA, chain: list[Presented]) -> bool:
    """True when `ca` holds one of the certificates in `chain`."""
    try:
        blocks, _ = ca.read()
    except ConfigError:
        return False
    return bool(_ders(blocks) & _ders([cert.pem for cert in chain]))


def _public_count(ca: CA) -> int:
    """Returns how many of certifi's public CAs `ca` holds (a distribution's bundle: most)."""
    try:
        blocks, _ = ca.read()
        with open(certifi.where(), encoding="ascii") as f:
            public = _ders(_PEM.findall(f.read()))
    except (ConfigError, OSError, UnicodeError):
        return 0
    return len(_ders(blocks) & public)


def _assignment(policy: TrustPolicy, key: str, value: str) -> str:
    """Returns "KEY=value", saying where to change it when a config file sets it now."""
    where = [s.where for s in policy.settings if s.key == key and s.origin == "config"]
    return f"{key}={value}" + (f" (in {where[0]}, which sets it now)" if where else "")


# show


def _show(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Prints the config file, the connection, every setting with its origin, and the source."""
    config = CmemcConfig.load(args.config_file, os.environ)
    connection = args.connection or os.environ.get(CMEMC_CONNECTION, "").strip()
    missing = f"none ({default_config_file(os.environ)} does not exist)"
    _say(f"Config file: {config.path or missing}")
    _say(f"Connection: {connection or 'none'}")
    settings = config.settings(args.connection, os.environ)
    _say("Settings:" if settings else "Settings: none")
    for setting in settings:
        _say(f"  {_setting_value(setting)}")
        if setting.key in _ENV_ONLY and setting.origin == "config":
            used = Layer("env", os.environ).get(setting.key)
            if used is not None:  # below the section in `settings`, yet the one used
                _say(f"  {_setting_value(used)}")
    _say(f"Source: {policy.describe()}")
    return 0


_ENV_ONLY = (SSL_CERT_FILE, SSL_CERT_DIR)
"""Keys the policy reads from the environment only (for the system store), never a config."""


def _setting_value(setting: Setting) -> str:
    value = "(withheld)" if setting.shown is None else setting.shown
    where = f", {setting.where}" if setting.where else ""
    ignored = ""
    if setting.key in _ENV_ONLY and setting.origin == "config":
        ignored = "; ignored: read from the environment only"
    return f"{setting.key} = {value}  (set by {setting.origin}{where}{ignored})"


# fetch-chain


def _fetch_chain(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Prints what the server presents and saves it as PEM; never trusts it."""
    try:
        url, base = _target(args)
        route = Route.to(url, policy)
    except ValueError as e:  # ConfigError included
        return _error(e, 2)
    try:
        chain = fetch_chain(route)
    except ProbeError as e:
        return _error(e, 1)
    out = sys.stdout if args.output else sys.stderr  # stdout may be the PEM itself
    if base is not None:
        _say(f"URL: {without_credentials(url)}  ({_set_by(base)})", file=out)
    _say(f"{route} presented {len(chain)} certificate(s), NOT verified:", file=out)
    for i, cert in enumerate(chain, 1):
        _say(
            f"  {i}. subject:    {cert.subject}",
            f"     issuer:     {cert.issuer}",
            f"     not before: {_date(cert.not_before)}",
            f"     not after:  {_date(cert.not_after)}",
            f"     SHA-256:    {cert.sha256}",
            file=out,
        )
    pem = "".join(cert.pem for cert in chain)
    target = "<the saved file>"
    if args.output:
        target = os.path.abspath(args.output)
        try:
            with open(target, "w", encoding="ascii") as f:
                f.write(pem)
        except OSError as e:
            return _error(f"cannot write {target}: {e.strerror}", 1)
        _say(f"Saved them as PEM to {target}", file=out)
    else:
        sys.stdout.write(pem)  # base64 that OpenSSL wrote
    _say(*_fetch_advice(chain, route, policy, target), file=out)
    return 0


def _fetch_advice(
    chain: list[Presented], route: Route, policy: TrustPolicy, target: str
) -> list[str]:
    lines = [
        "Check them before trusting them: compare the SHA-256 fingerprints with those the"
        " server's administrator gives you by another channel. An attacker, or a"
        " TLS-intercepting proxy, presents other certificates.",
        *_chain_warnings(chain, route),
    ]
    intercepted = _looks_intercepted(route)
    if intercepted:  # the file holds the proxy's certificate for this one host
        system = ""
        if policy.source != "system":
            system = f"; or set {_assignment(policy, SSL_VERIFY, 'system')} if the operating"
            system += " system trusts that CA"
        return [
            *lines,
            f"They came through the proxy {route.proxy_shown} (from the environment), and no"
            " public CA (certifi) verifies them: a TLS-intercepting proxy presents a certificate"
            " it made for this one host, so this file is not what to trust. Get the proxy's CA"
            f" certificate from your network administrators and trust that{system}.",
        ]
    if intercepted is None:
        lines.append(
            f"They came through the proxy {route.proxy_shown}: if it intercepts TLS, they are"
            " the proxy's, made for this one host: then trust the proxy's CA instead (your"
            " network administrators have it)."
        )
    return [*lines, *_fetch_trust(chain, route, policy, target)]


def _fetch_trust(
    chain: list[Presented], route: Route, policy: TrustPolicy, target: str
) -> list[str]:
    """Returns what to set so that `policy` trusts the server: nothing when it does already."""
    if policy.source == "off":  # which ignores REQUESTS_CA_BUNDLE
        return [
            f"Then: set {_assignment(policy, SSL_VERIFY, 'certifi')} and"
            f" {_assignment(policy, REQUESTS_CA_BUNDLE, target)}: SSL_VERIFY=false verifies"
            " nothing"
        ]
    try:
        refusal = verify(route, policy)
    except ProbeError:  # not known: as if refused
        refusal = Refusal("other", "")
    if refusal is None:
        return [f"Then: nothing to set: the trust source {_chosen(policy)} accepts the server"]
    if _trusts_ca(refusal):
        return [f"Then: nothing to set for trust: the trust source {_chosen(policy)} trusts its CA"]
    first_line, *notes = _trust_advice(policy, chain, target, None)
    lines = [f"Then: {first_line}", *notes]
    if policy.source != "system" and not any(cert.self_signed for cert in chain):
        lines.append(
            "Note: cmemc and plain requests (without cmem_adapter) on Python < 3.13 also need"
            " the root CA in the file, which the server does not send (its administrator has it)"
        )
    return lines


def _looks_intercepted(route: Route) -> bool | None:
    """Returns whether the server seen through the route's proxy has a certificate no public CA
    issued, as a TLS-intercepting proxy's: False without a proxy, None when not known."""
    if not route.proxy:
        return False
    try:
        public = verify(route, TrustPolicy.certifi())
    except (ProbeError, ConfigError):
        return None
    return public is not None and public.untrusted


def _chain_warnings(chain: list[Presented], route: Route) -> list[str]:
    """Returns a warning for each saved certificate that is expired, not yet valid, or (the
    server's) not for the host asked: trusting them would not be enough."""
    lines = [
        f"Warning: the server's certificate (1.) {text}: trusting it will not be enough"
        for _, text in _leaf_problems(chain, route)
    ]
    now = datetime.now(timezone.utc)
    for i, cert in enumerate(chain[1:], 2):
        if cert.expired(now):
            lines.append(f"Warning: certificate {i}. expired {_date(cert.not_after)}")
        if cert.early(now):
            lines.append(f"Warning: certificate {i}. is valid only from {_date(cert.not_before)}")
    return lines


# demo


def _demo() -> int:
    """Returns 0 when each trust source verified or refused a loopback server as expected."""
    ca = ThrowawayCA()
    issued = ca.issue(["localhost", "127.0.0.1"])
    with tempfile.TemporaryDirectory(prefix="cmem-adapter-demo-") as folder:
        ca_file = _write(folder, "ca.pem", ca.cert_pem)
        server_files = (
            _write(folder, "server.pem", issued.cert_pem),
            _write(folder, "server-key.pem", issued.key_pem),
        )
        with _demo_server(*server_files) as url:
            _say(
                "A throw-away CA issued a certificate for localhost and 127.0.0.1.\n"
                f"Loopback HTTPS server: {url}\n"
                f"CA certificate:        {ca_file} (removed at the end)\n"
                "Each trust source, asked through requests and a mounted TrustAdapter:"
            )
            # On macOS and Windows the system source asks the OS, which ignores SSL_CERT_FILE.
            cert_file_honoured = sys.platform not in ("darwin", "win32")
            rows = [
                ("certifi", {}, "refused", False),
                (f"bundle  {ca_file}", {"REQUESTS_CA_BUNDLE": ca_file}, "verified", True),
                ("system", {"SSL_VERIFY": "system"}, "refused", False),
                (
                    f"system + SSL_CERT_FILE={ca_file}",
                    {"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file},
                    "verified" if cert_file_honoured else "refused",
                    False,
                ),
                ("off", {"SSL_VERIFY": "false"}, "accepted", False),
            ]
            width = max(len(row[0]) for row in rows)
            unexpected = [row[0] for row in rows if not _demo_row(url, width, *row)]
    _say(
        "To use it for real: cmem_adapter.mount(session, url) in code, or `cmem-adapter run"
        " script.py`;\nchoose the source with SSL_VERIFY=system or REQUESTS_CA_BUNDLE=/path/ca.pem"
        " (environment or config.ini)."
    )
    if unexpected:
        return _error(f"unexpected outcome for: {', '.join(unexpected)}", 1)
    return 0


def _write(folder: str, name: str, text: str) -> str:
    path = os.path.join(folder, name)
    with open(path, "w", encoding="ascii") as f:
        f.write(text)
    return path


def _demo_row(
    url: str, width: int, label: str, environ: dict[str, str], expected: str, show_debug: bool
) -> bool:
    """Prints how the source from `environ` treats the server; True if it did as `expected`."""
    capture = logging.handlers.BufferingHandler(capacity=1000)
    capture.setFormatter(_SafeFormatter(DEBUG_FORMAT))
    with _logging_to(capture):
        outcome = _demo_outcome(url, environ)
    _say(f"  {label:<{width}}  {outcome}")
    for record in capture.buffer:
        if record.levelno >= logging.WARNING:
            _say(f"      {record.levelname.lower()}: {record.getMessage()}")
        elif show_debug:
            _say(f"      with --debug: {capture.format(record)}")
    return outcome.startswith(expected)


def _demo_outcome(url: str, environ: dict[str, str]) -> str:
    try:
        policy = TrustPolicy.from_env(environ)
    except ConfigError as e:
        return f"unavailable ({e})"
    with requests.Session() as session:
        session.trust_env = False  # no proxy, no REQUESTS_CA_BUNDLE from outside
        mount(session, url, policy)
        try:
            session.get(url, timeout=TIMEOUT).close()
        except requests.exceptions.SSLError as e:
            found = [c for c in causes(e) if isinstance(c, ssl.SSLCertVerificationError)]
            return f"refused   ({found[0].verify_message if found else plain(e)})"
        except requests.exceptions.RequestException as e:
            return f"failed    ({plain(e)})"
    return "accepted without verification" if policy.source == "off" else "verified"


class _DemoHandler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"Hello from the cmem-adapter demo server\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        """Keeps the demo's output to its own lines."""


@contextlib.contextmanager
def _demo_server(cert_file: str, key_file: str) -> Iterator[str]:
    """Yields the URL of an HTTPS server on 127.0.0.1, stopped and joined afterwards."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _DemoHandler)
    # Handshakes happen on accept; a client refusing the certificate is dropped quietly there.
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()  # joins the request threads
        thread.join()


# run


def _run(args: argparse.Namespace, policy: TrustPolicy) -> int:
    """Runs the script as ``python SCRIPT ARGS`` would, with `install(policy)` applied.

    The script takes over this process: its exit code and exceptions end it as with python.
    """
    if not os.path.exists(args.script):
        return _error(f"cannot run {args.script}: no such file", 2)
    # A directory or zip file runs its __main__ module, as with python (runpy.run_path asks
    # the importer python would use).
    importer = pkgutil.get_importer(args.script)
    if importer is not None and importer.find_spec("__main__") is None:
        return _error(f"can't find '__main__' module in {args.script!r}", 1)
    if importer is None:
        try:
            with open(args.script, "rb"):
                pass
        except OSError as e:
            return _error(f"cannot run {args.script}: {e.strerror}", 2)
    install(policy)
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
    "run": _run,
}
