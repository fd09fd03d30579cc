"""Plain words for a refusal and a presented chain: what was presented, why, what fixes it.

What ``check`` says of a failed request and ``fetch-chain`` of the certificates it saved;
`probe` finds out, this module puts it into words (probing again where the words need it).
"""

from __future__ import annotations

import contextlib
import os
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone

import certifi
import requests

from .adapter import without_credentials
from .bundles import CA
from .errors import ConfigError, causes
from .policy import TrustPolicy
from .probe import (
    Presented,
    ProbeError,
    Refusal,
    Route,
    fetch_chain,
    other_sources,
    plain,
    verify,
)
from .settings import REQUESTS_CA_BUNDLE, SSL_VERIFY, verify_mode


def failure(url: str, policy: TrustPolicy, route: Route, error: Exception) -> list[str]:
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


def listing(chain: list[Presented]) -> list[str]:
    """Returns five lines for each certificate: subject, issuer, validity and fingerprint."""
    lines = []
    for i, cert in enumerate(chain, 1):
        lines += [
            f"  {i}. subject:    {cert.subject}",
            f"     issuer:     {cert.issuer}",
            f"     not before: {_date(cert.not_before)}",
            f"     not after:  {_date(cert.not_after)}",
            f"     SHA-256:    {cert.sha256}",
        ]
    return lines


def fetch_advice(
    chain: list[Presented], route: Route, policy: TrustPolicy, target: str
) -> list[str]:
    """Returns what to check before trusting `chain`, saved as `target`, and what to set then."""
    lines = [
        "Check them before trusting them: compare the SHA-256 fingerprints with those the"
        " server's administrator gives you by another channel. An attacker, or a"
        " TLS-intercepting proxy, presents other certificates.",
        *_chain_warnings(chain, route),
    ]
    intercepted = _looks_intercepted(route)
    if intercepted:  # the file holds the proxy's certificate for this one host
        return [
            *lines,
            f"They came through the proxy {route.proxy_shown} (from the environment), and no"
            " public CA (certifi) verifies them: a TLS-intercepting proxy presents a certificate"
            " it made for this one host, so this file is not what to trust. Get the proxy's CA"
            f" certificate from your network administrators and trust that{_or_system(policy)}.",
        ]
    if intercepted is None:
        lines.append(
            f"They came through the proxy {route.proxy_shown}: if it intercepts TLS, they are"
            " the proxy's, made for this one host: then trust the proxy's CA instead (your"
            " network administrators have it)."
        )
    return [*lines, *_fetch_trust(chain, route, policy, target)]


# a refused certificate: what was presented, why, what fixes it


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
    problems, also = _hidden_problems(refusal, chain, route, "the server's certificate")
    return [
        f"FAILED: the trust source {_chosen(policy)} refused the certificate of {shown}",
        f"The server presented{f' (through {route.proxy_shown})' if route.proxy else ''}:",
        *_summaries(chain),
        f"Why: {_why(refusal, chain, route, policy)}",
        *also,
        *_fixes(
            "Fix: ",
            refusal,
            problems,
            chain,
            route,
            lambda: _server_trust(url, policy, route, chain),
        ),
    ]


def _server_trust(url: str, policy: TrustPolicy, route: Route, chain: list[Presented]) -> list[str]:
    """Returns what the other trust sources make of the server, then how to trust it."""
    try:
        verdicts = other_sources(route)
    except ProbeError as e:
        return [f"Other sources: not known ({e})", *_bundle_fix(url, policy, chain)]
    return [
        f"Other sources: {'; '.join(f'{n} {_verdict(v)}' for n, v in verdicts.items())}",
        *_trust_fixes(url, policy, route, chain, verdicts),
    ]


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
    return [
        *lines,
        "The proxy presented:",
        *_summaries(chain),
        f"Why: {_why(refusal, chain, hop, policy)}",
        *also,
        *_fixes(
            "Fix (the proxy's certificate): ",
            refusal,
            problems,
            chain,
            hop,
            lambda: [_proxy_trust_fix(policy)],
        ),
    ]


def _fixes(
    label: str,
    refusal: Refusal,
    problems: list[str],
    chain: list[Presented],
    route: Route,
    trust: Callable[[], list[str]],
) -> list[str]:
    """Returns the fix lines for `refusal`: the certificate's own (after `label`) when trusting
    a CA would not help, else those of `trust()`, asked only then, with the fix of the first of
    the certificate's other `problems` (after `label`) before the one trusting its CA."""
    if refusal.kind in _CERTIFICATE_KINDS:
        return [f"{label}{_certificate_fix(refusal.kind, chain, route)}"]
    fixes = trust()
    if not problems:
        return fixes
    # The certificate first; trusting its CA only then.
    at = next(i for i, line in enumerate(fixes) if line.startswith("Fix: "))
    return [
        *fixes[:at],
        f"{label}{_first_fix(problems, chain, route)}",
        f"Then, to trust its CA: {fixes[at].removeprefix('Fix: ')}",
        *fixes[at + 1 :],
    ]


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
    leaf = chain[0]
    found = []
    if leaf.is_for(route.host) is False:
        found.append(("name mismatch", f"is for {_names(leaf)}, not {route.host}"))
    return found + _validity(leaf)


def _validity(cert: Presented) -> list[tuple[str, str]]:
    """Returns (refusal kind, words) if `cert` has expired or is not valid yet, else nothing."""
    now = datetime.now(timezone.utc)
    found = []
    if cert.expired(now):
        found.append(("expired", f"expired {_date(cert.not_after)}"))
    if cert.early(now):
        found.append(("not yet valid", f"is valid only from {_date(cert.not_before)}"))
    return found


def _names(cert: Presented) -> str:
    """Returns the names the certificate is for, else its subject."""
    return ", ".join(cert.names) or cert.subject


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
    # Not what this machine was seen refusing.
    if system is None or not system.untrusted:
        fix += _or_system(policy)
    return fix


def _or_system(policy: TrustPolicy) -> str:
    """Returns "; or set SSL_VERIFY=system if the operating system trusts that CA" ("" when
    that is the setting in effect), to end a line on trusting a proxy's CA."""
    if policy.source == "system":
        return ""
    system = _assignment(policy, SSL_VERIFY, "system")
    return f"; or set {system} if the operating system trusts that CA"


def _base_name(policy: TrustPolicy) -> str:
    """Returns whose CAs the extra CAs add to: "certifi's" or "the system's"."""
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
    """Returns one numbered line for each certificate (see `_summary`)."""
    return [f"  {i}. {_summary(cert)}" for i, cert in enumerate(chain, 1)]


def _summary(cert: Presented) -> str:
    """Returns "SUBJECT, issued by ISSUER; expires DATE" (or "expired DATE")."""
    issuer = "itself (self-signed)" if cert.self_signed else cert.issuer
    ends = "expired" if cert.expired(datetime.now(timezone.utc)) else "expires"
    return f"{cert.subject}, issued by {issuer}; {ends} {_date(cert.not_after)}"


def _date(moment: datetime) -> str:
    """Returns "YYYY-MM-DD HH:MM:SS UTC"."""
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
    """Returns which certificate or CA `refusal` is about, in words; "" when the chain does
    not tell. `trusted` names what the policy trusts."""
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
    """Returns the fix, without "Fix: ", for a certificate refused as `kind` (one of
    `_CERTIFICATE_KINDS`, or a problem `_leaf_problems` found)."""
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
    """Returns what a source makes of the server: "accepts it", "refuses it (KIND)", ..."""
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
    intercepted = _intercepted(route, public)
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


def _intercepted(route: Route, public: Refusal | None) -> bool:
    """True when the route goes through a proxy and certifi (`public`, its refusal) does not
    know the certificate's CA: a TLS-intercepting proxy's, most likely."""
    return route.proxy is not None and public is not None and public.untrusted


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


# fetch-chain: what to do with the saved chain


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
    return _intercepted(route, public)


def _chain_warnings(chain: list[Presented], route: Route) -> list[str]:
    """Returns a warning for each saved certificate that is expired, not yet valid, or (the
    server's) not for the host asked: trusting them would not be enough."""
    return [
        *(
            f"Warning: the server's certificate (1.) {text}: trusting it will not be enough"
            for _, text in _leaf_problems(chain, route)
        ),
        *(
            f"Warning: certificate {i}. {text}"
            for i, cert in enumerate(chain[1:], 2)
            for _, text in _validity(cert)
        ),
    ]
