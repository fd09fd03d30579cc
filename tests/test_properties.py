"""Property-based tests: any configuration text gives a policy or a ConfigError, nothing else."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import requests
import trustme
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cmem_adapter import ConfigError, TrustPolicy, mount
from cmem_adapter.adapter import origin_of

FALSE_WORDS = {"false", "0", "no", "off"}
WORDS = ["true", "1", "yes", "on", *FALSE_WORDS, "certifi", "system", "truststore"]
CA_PEM = trustme.CA().cert_pem.bytes().decode()

# Values a person might type, and anything at all.
word = st.sampled_from(WORDS).flatmap(
    lambda w: st.sampled_from([w, w.upper(), w.title(), f" {w} ", f"{w}\n"])
)
verify_values = st.one_of(st.none(), word, st.text(max_size=20))
bundle_values = st.one_of(
    st.none(),
    st.just("ca.pem"),
    st.just("certs"),
    st.sampled_from(["", " ", ".", "..", "/", "/dev/null", "ca.pem\x00", "~/ca.pem"]),
    st.just(CA_PEM),
    st.text(max_size=40),
    st.text(max_size=40).map(
        lambda t: f"-----BEGIN CERTIFICATE-----\n{t}\n-----END CERTIFICATE-----"
    ),
)


@contextlib.contextmanager
def in_scratch_directory() -> Iterator[Path]:
    """A current directory holding ca.pem and certs/, so relative paths can be found."""
    before = os.getcwd()
    with tempfile.TemporaryDirectory() as scratch:
        Path(scratch, "ca.pem").write_text(CA_PEM)
        Path(scratch, "certs").mkdir()
        Path(scratch, "certs", "a.pem").write_text(CA_PEM)
        os.chdir(scratch)
        try:
            yield Path(scratch)
        finally:
            os.chdir(before)


def policy_or_config_error(environ: dict[str, str]) -> TrustPolicy | None:
    try:
        return TrustPolicy.from_env(environ)
    except ConfigError:
        return None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(verify=verify_values, bundle=bundle_values, curl=st.one_of(st.none(), bundle_values))
@example(verify="off", bundle="ca.pem", curl=None)
@example(verify=" FALSE ", bundle=None, curl=None)
def test_any_environment_gives_a_policy_or_a_config_error(
    verify: str | None, bundle: str | None, curl: str | None
) -> None:
    environ = {
        key: value
        for key, value in (
            ("SSL_VERIFY", verify),
            ("REQUESTS_CA_BUNDLE", bundle),
            ("CURL_CA_BUNDLE", curl),
        )
        if value is not None
    }
    with in_scratch_directory():
        policy = policy_or_config_error(environ)
    said = (verify or "").strip().lower()
    if policy is not None and policy.source == "off":
        assert said in FALSE_WORDS
    if said in FALSE_WORDS:
        assert policy is not None and policy.source == "off"
    if said in WORDS and not (bundle or "").strip() and not (curl or "").strip():
        assert policy is not None  # a valid word alone never fails


ini_lines = st.one_of(
    st.sampled_from(
        ["[c]", "[DEFAULT]", "[c", "SSL_VERIFY = false", "SSL_VERIFY=system", "ssl_verify: 1"]
    ),
    st.sampled_from(["REQUESTS_CA_BUNDLE = ca.pem", "REQUESTS_CA_BUNDLE=", "CMEM_BASE_URI=x"]),
    st.builds(
        lambda k, v: f"{k}={v}",
        st.sampled_from(["SSL_VERIFY", "CURL_CA_BUNDLE"]),
        st.text(max_size=12),
    ),
    st.text(max_size=30),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(ini_lines, max_size=8), connection=st.sampled_from([None, "c", "x"]))
def test_any_config_file_gives_a_policy_or_a_config_error(
    lines: list[str], connection: str | None
) -> None:
    with in_scratch_directory() as scratch:
        config = scratch / "config.ini"
        config.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
        try:
            policy = TrustPolicy.from_config(connection, config, {})
        except ConfigError:
            return
    verify_lines = [
        line for line in lines if line.replace(" ", "").lower().startswith("ssl_verify")
    ]
    if policy.source == "off":
        assert any(w in line.lower() for line in verify_lines for w in FALSE_WORDS)


host_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
hosts = st.lists(host_label, min_size=1, max_size=3).map(".".join)
ports = st.one_of(st.none(), st.sampled_from([443, 8443, 80, 4430, 844]))
suffixes = st.text(alphabet=".@:-_/?#abcz0189", min_size=0, max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    host=hosts,
    port=ports,
    suffix=suffixes,
    other_port=ports,
    userinfo=st.sampled_from(["", "u@", "u:p@", ":@", "h@"]),
)
def test_mounted_adapter_sends_for_its_origin_and_nothing_else(
    host: str, port: int | None, suffix: str, other_port: int | None, userinfo: str
) -> None:
    base = f"https://{host}" + (f":{port}" if port else "")
    session = requests.Session()
    adapter = mount(session, base, TrustPolicy.certifi())
    candidate = f"https://{userinfo}{host}{suffix}" + (f":{other_port}" if other_port else "")
    candidate += "/x"
    try:
        prepared = session.prepare_request(requests.Request("GET", candidate)).url or ""
    except requests.exceptions.RequestException:
        prepared = candidate  # requests would not send it; the raw string must not match either
    try:
        same = origin_of(prepared) == origin_of(base)
    except ValueError:  # a port urllib.parse cannot read
        same = False
    assert (sender(session, prepared) is adapter) == same, (base, prepared)


def sender(session: requests.Session, url: str) -> object:
    """Returns the adapter that sends a request for `url`, through mount()'s origin router."""
    chosen = session.get_adapter(url)
    routes = getattr(chosen, "routes", None)
    if routes is None:
        return chosen
    try:
        return routes.get(origin_of(url), chosen.fallback)  # type: ignore[attr-defined]
    except ValueError:
        return chosen.fallback  # type: ignore[attr-defined]
