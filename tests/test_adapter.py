"""TrustAdapter over real TLS on loopback: each source refuses what it does not trust."""

from __future__ import annotations

import contextlib
import os
import pickle
import shutil
import ssl
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import pytest
import requests
import trustme
from conftest import issue_files
from servers import ConnectProxy, HTTPServer, HTTPSProxy, HTTPSServer
from urllib3.exceptions import InsecureRequestWarning

from cmem_adapter import ConfigError, TrustAdapter, TrustPolicy, contexts, mount
from cmem_adapter.contexts import LIVE_CONTEXTS_KEPT, URLLIB3_MATCHES_NAMES, live_context
from cmem_adapter.policy import OFF_WARNING

REFUSED = (requests.exceptions.SSLError, requests.exceptions.ProxyError)


def session_for(
    policy: TrustPolicy, proxy_policy: TrustPolicy | None = None, **kwargs: object
) -> requests.Session:
    """Returns a session whose every URL goes through one TrustAdapter."""
    session = requests.Session()
    adapter = TrustAdapter(policy, proxy_policy, **kwargs)  # type: ignore[arg-type]
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session


def refuses(session: requests.Session, url: str, **kwargs: object) -> bool:
    try:
        session.get(url, timeout=10, **kwargs)  # type: ignore[arg-type]
    except REFUSED as e:
        # urllib3 1.26 matches names itself: "hostname '127.0.0.1' doesn't match 'x'".
        return any(s in str(e) for s in ("CERTIFICATE_VERIFY_FAILED", "doesn't match"))
    return False


# --- each source trusts exactly what it says -------------------------------------------------


def test_bundle_trusts_its_cas_only(
    server: HTTPSServer,
    rogue_server: HTTPSServer,
    ca_file: str,
    other_ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    session = session_for(TrustPolicy.bundle(ca_file))
    assert session.get(server.url, timeout=10).json()["ok"]
    assert refuses(session, rogue_server.url)
    with pytest.raises(requests.exceptions.SSLError) as raised:
        session.get(rogue_server.url, timeout=10)
    assert "HTTPSConnectionPool(host='127.0.0.1'" in str(raised.value)  # as stock requests
    # requests turns these into verify=<other_ca_file>; the adapter's policy still decides.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    assert refuses(session_for(TrustPolicy.bundle(ca_file)), rogue_server.url)
    monkeypatch.delenv("REQUESTS_CA_BUNDLE")
    monkeypatch.setenv("CURL_CA_BUNDLE", other_ca_file)
    assert refuses(session_for(TrustPolicy.bundle(ca_file)), rogue_server.url)


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_certifi_refuses_a_private_ca_even_when_the_env_names_it(
    server: HTTPSServer, ca_file: str, variable: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert refuses(session_for(TrustPolicy.certifi()), server.url)
    monkeypatch.setenv(variable, ca_file)
    assert refuses(session_for(TrustPolicy.certifi()), server.url)
    # Stock requests, for contrast, trusts whatever the variable names.
    assert requests.get(server.url, timeout=10).ok


def test_certifi_source_is_what_the_certifi_package_holds(
    server: HTTPSServer, rogue_server: HTTPSServer, ca: trustme.CA, tmp_path: Path
) -> None:
    """A fake certifi holding only `ca`: then certifi trusts `server`, and only it."""
    fake = tmp_path / "fake" / "certifi"
    fake.mkdir(parents=True)
    ca.cert_pem.write_to_path(str(fake / "cacert.pem"))
    (fake / "__init__.py").write_text(
        textwrap.dedent(
            """
            import os
            __version__ = "0.0.fake"
            def where():
                return os.path.join(os.path.dirname(__file__), "cacert.pem")
            def contents():
                with open(where()) as f:
                    return f.read()
            """
        )
    )
    script = textwrap.dedent(
        f"""
        import certifi, requests
        assert certifi.__version__ == "0.0.fake", certifi.__file__
        from cmem_adapter import TrustAdapter, TrustPolicy
        s = requests.Session()
        s.mount("https://", TrustAdapter(TrustPolicy.certifi()))
        print(s.get({server.url!r}, timeout=10).status_code)
        try:
            s.get({rogue_server.url!r}, timeout=10)
        except requests.exceptions.SSLError:
            print("refused")
        """
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), os.getcwd()])}
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["200", "refused"], out.stderr


def test_system_trusts_ssl_cert_file_only(
    server: HTTPSServer,
    rogue_server: HTTPSServer,
    ca_file: str,
    other_ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    empty = tmp_path / "no-certs"
    empty.mkdir()
    env = {"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file, "SSL_CERT_DIR": str(empty)}
    session = session_for(TrustPolicy.from_env(env))
    assert session.get(server.url, timeout=10).ok
    assert refuses(session, rogue_server.url)


def test_system_default_store_refuses_a_private_ca(server: HTTPSServer) -> None:
    assert refuses(session_for(TrustPolicy.system()), server.url)


def test_extra_ca_is_added_to_the_source(server: HTTPSServer, ca_file: str) -> None:
    assert session_for(TrustPolicy.certifi(extra_ca=ca_file)).get(server.url, timeout=10).ok


def test_off_accepts_anything_warns_once_and_silences_only_its_own_connections(
    rogue_server: HTTPSServer, caplog: pytest.LogCaptureFixture
) -> None:
    filters_before = list(warnings.filters)
    for _ in range(3):  # three sessions, three adapters, one policy value
        session = session_for(TrustPolicy.from_env({"SSL_VERIFY": "false"}))
        # filterwarnings=error: an InsecureRequestWarning would raise here.
        assert session.get(rogue_server.url, timeout=10).ok
    warned = [r for r in caplog.records if r.levelname == "WARNING"]
    assert [r.getMessage() for r in warned] == [OFF_WARNING]
    assert warned[0].name == "cmem_adapter"
    assert warnings.filters == filters_before
    # urllib3's warning is untouched elsewhere in the process:
    with pytest.warns(InsecureRequestWarning):
        requests.get(rogue_server.url, verify=False, timeout=10)


def test_verify_false_under_an_off_policy_is_the_policys_choice(
    rogue_server: HTTPSServer,
) -> None:
    """cmempy passes verify=False on every request when SSL_VERIFY=false: warn once, not each."""
    session = session_for(TrustPolicy.from_env({"SSL_VERIFY": "false"}))
    for _ in range(3):  # filterwarnings=error: an InsecureRequestWarning would raise
        assert session.get(rogue_server.url, timeout=10, verify=False).ok


def test_off_warning_is_once_per_process_for_a_legacy_loop(rogue_server: HTTPSServer) -> None:
    script = textwrap.dedent(
        f"""
        import requests, cmem_adapter
        cmem_adapter.install()
        for _ in range(5):
            requests.get({rogue_server.url!r}, timeout=10)
        """
    )
    env = {**os.environ, "SSL_VERIFY": "false", "PYTHONPATH": os.getcwd()}
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [OFF_WARNING]


# --- the context is never widened or weakened ------------------------------------------------


def test_context_is_not_changed_by_anything_requests_does(
    server: HTTPSServer,
    rogue_server: HTTPSServer,
    ca: trustme.CA,
    ca_file: str,
    other_ca_file: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = TrustPolicy.bundle(ca_file)
    context = live_context(policy).current()
    before = context.cert_store_stats()
    session = session_for(policy)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    client_cert = ca.issue_cert("client@example.com")
    cert_file = tmp_path / "client.pem"
    client_cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    session.get(server.url, timeout=10)
    session.get(server.url, timeout=10, cert=str(cert_file))
    with pytest.warns(InsecureRequestWarning):
        session.get(rogue_server.url, timeout=10, verify=False)
    explicit = tmp_path / "explicit-other-ca.pem"
    explicit.write_bytes(Path(other_ca_file).read_bytes())
    session.get(rogue_server.url, timeout=10, verify=str(explicit))
    session.get(server.url, timeout=10)
    assert context.cert_store_stats() == before
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is not URLLIB3_MATCHES_NAMES  # see contexts.py
    assert live_context(policy).current() is context


# --- per-request verify gets a pool of its own and never sticks ------------------------------


def test_verify_false_does_not_stick(
    server: HTTPSServer, rogue_server: HTTPSServer, ca_file: str
) -> None:
    session = session_for(TrustPolicy.bundle(ca_file))
    with pytest.warns(InsecureRequestWarning):
        assert session.get(rogue_server.url, timeout=10, verify=False).ok
    assert refuses(session, rogue_server.url)
    with pytest.warns(InsecureRequestWarning):
        assert session.get(server.url, timeout=10, verify=False).ok
    assert session.get(server.url, timeout=10).ok
    assert server.handshakes == 2  # the unverified connection was not reused (CVE-2024-35195)


@pytest.mark.parametrize("form", ["str", "Path", "relative"])
def test_verify_path_is_honoured_and_does_not_stick(
    form: str, server: HTTPSServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(os.path.dirname(ca_file))
    verify = {"str": ca_file, "Path": Path(ca_file), "relative": "ca.pem"}[form]
    session = session_for(TrustPolicy.certifi())
    assert session.get(server.url, timeout=10, verify=verify).ok  # type: ignore[arg-type]
    assert refuses(session, server.url)
    assert session.get(server.url, timeout=10, verify=verify).ok  # type: ignore[arg-type]
    assert server.handshakes == 1  # the third request reused the pool of the first


def test_contexts_for_many_verify_paths_do_not_pile_up(
    server: HTTPSServer, ca_file: str, tmp_path: Path
) -> None:
    """A program writing a new CA file for each request keeps a bounded number of contexts."""
    session = session_for(TrustPolicy.certifi())
    paths = [tmp_path / f"ca-{i}.pem" for i in range(LIVE_CONTEXTS_KEPT + 10)]
    for path in paths:
        shutil.copyfile(ca_file, path)
        assert session.get(server.url, timeout=10, verify=str(path)).ok
    assert len(contexts._live) <= LIVE_CONTEXTS_KEPT
    assert session.get(server.url, timeout=10, verify=str(paths[0])).ok  # built again
    assert refuses(session, server.url)


def test_bad_verify_path_is_a_config_error_naming_it(server: HTTPSServer, tmp_path: Path) -> None:
    session = session_for(TrustPolicy.certifi())
    with pytest.raises(ConfigError, match=r"verify set by argument \(given with the request\)"):
        session.get(server.url, timeout=10, verify=str(tmp_path / "missing.pem"))


def test_session_verify_is_honoured_unless_requests_replaces_it(
    rogue_server: HTTPSServer, ca_file: str, other_ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = session_for(TrustPolicy.bundle(ca_file))
    session.verify = other_ca_file
    assert session.get(rogue_server.url, timeout=10).ok
    # requests#3829: with REQUESTS_CA_BUNDLE set, requests passes the variable instead of
    # session.verify; the adapter then keeps its policy (never less strict).
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)
    assert refuses(session_for(TrustPolicy.bundle(ca_file)), rogue_server.url)


def test_enforce_ignores_per_request_verify(
    rogue_server: HTTPSServer, ca_file: str, other_ca_file: str
) -> None:
    session = session_for(TrustPolicy.bundle(ca_file), enforce=True)
    assert refuses(session, rogue_server.url, verify=False)
    assert refuses(session, rogue_server.url, verify=other_ca_file)


def test_client_certificate_does_not_bleed_to_other_hosts(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    chain, key = issue_files(ca, tmp_path, "mtls")
    client = ca.issue_cert("client@example.com")
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    client.private_key_pem.write_to_path(str(key_file))
    with (
        HTTPSServer(chain, key, client_ca_pem_file=ca_file) as a,
        HTTPSServer(chain, key, host="localhost", client_ca_pem_file=ca_file) as b,
    ):
        session = session_for(TrustPolicy.bundle(ca_file))
        session.get(a.url, timeout=10, cert=(str(cert_file), str(key_file)))
        session.get(b.url, timeout=10)
        session.get(a.url, timeout=10)
        assert a.client_cert_subjects[0] is not None
        assert a.client_cert_subjects[1:] == [None]
        assert b.client_cert_subjects == [None]


def test_missing_client_certificate_file(server: HTTPSServer, ca_file: str) -> None:
    session = session_for(TrustPolicy.bundle(ca_file))
    with pytest.raises(OSError, match="Could not find the TLS certificate file"):
        session.get(server.url, timeout=10, cert="/nonexistent/client.pem")


# --- proxies: both hops verified, each by its own policy ------------------------------------


@pytest.fixture
def proxy_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def proxy_ca_file(proxy_ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "proxy-ca.pem"
    proxy_ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_connect_proxy_origin_is_verified_by_the_policy(
    server: HTTPSServer, rogue_server: HTTPSServer, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", proxy.url)
        session = session_for(TrustPolicy.bundle(ca_file))
        assert session.get(server.url, timeout=10).ok
        assert refuses(session, rogue_server.url)
        assert proxy.log == [
            f"CONNECT 127.0.0.1:{server.port}",
            f"CONNECT 127.0.0.1:{rogue_server.port}",
        ]


def test_https_proxy_hop_uses_proxy_policy(
    server: HTTPSServer,
    proxy_ca: trustme.CA,
    proxy_ca_file: str,
    ca_file: str,
    tmp_path: Path,
) -> None:
    with HTTPSProxy(*issue_files(proxy_ca, tmp_path, "proxy")) as proxy:
        proxies = {"https": proxy.url, "http": proxy.url}
        good = session_for(TrustPolicy.bundle(ca_file), TrustPolicy.bundle(proxy_ca_file))
        assert good.get(server.url, timeout=10, proxies=proxies).ok
        # Without proxy_policy, the proxy must be trusted by the policy itself: it is not.
        assert refuses(session_for(TrustPolicy.bundle(ca_file)), server.url, proxies=proxies)
        # The origin is still checked by the policy, not by the proxy's CA.
        only_proxy = session_for(TrustPolicy.bundle(proxy_ca_file))
        assert refuses(only_proxy, server.url, proxies=proxies)


def test_rogue_https_proxy_is_refused_for_https_and_http_urls(
    server: HTTPSServer,
    other_ca: trustme.CA,
    proxy_ca_file: str,
    ca_file: str,
    tmp_path: Path,
) -> None:
    with (
        HTTPSProxy(*issue_files(other_ca, tmp_path, "rogue-proxy")) as rogue,
        HTTPServer() as plain,
    ):
        proxies = {"https": rogue.url, "http": rogue.url}
        session = session_for(TrustPolicy.bundle(ca_file), TrustPolicy.bundle(proxy_ca_file))
        assert refuses(session, server.url, proxies=proxies)
        assert refuses(session, plain.url, proxies=proxies)
        # An origin verify=False must not switch off the proxy hop (urllib3#3472).
        assert refuses(session, server.url, proxies=proxies, verify=False)
        assert rogue.log == []


def test_http_url_through_good_https_proxy(
    proxy_ca: trustme.CA, proxy_ca_file: str, ca_file: str, tmp_path: Path
) -> None:
    with HTTPSProxy(*issue_files(proxy_ca, tmp_path, "proxy")) as proxy, HTTPServer() as plain:
        session = session_for(TrustPolicy.bundle(ca_file), TrustPolicy.bundle(proxy_ca_file))
        assert session.get(plain.url, timeout=10, proxies={"http": proxy.url}).ok
        assert proxy.log == [f"GET {plain.url}"]


# --- host-exact mounting ---------------------------------------------------------------------


def adapter_for(session: requests.Session, url: str) -> requests.adapters.BaseAdapter:
    """Returns the adapter the session picks for `url`, prepared as requests would."""
    # An URL requests cannot prepare is never sent; the prefix match must still fail.
    with contextlib.suppress(requests.exceptions.InvalidURL):
        url = session.prepare_request(requests.Request("GET", url)).url or ""
    return session.get_adapter(url)


@pytest.mark.parametrize(
    ("base", "matching", "hostile"),
    [
        (
            "https://h.example:8443",
            ["https://h.example:8443/", "https://H.EXAMPLE:8443/x?y", "HTTPS://h.example:8443"],
            [
                "https://h.example:8443.evil.net/",
                "https://h.example:8443@evil.net/",
                "https://h.example:84430/",
                "https://h.example/",
                "https://h.example.evil.net:8443/",
                "http://h.example:8443/",
            ],
        ),
        (
            "https://h.example",
            ["https://h.example/", "https://h.example:443/a", "https://h.example"],
            ["https://h.example.com/", "https://h.examples/", "https://h.example:8443/"],
        ),
        (
            "https://bücher.example/base/path",
            ["https://bücher.example/", "https://xn--bcher-kva.example/x"],
            ["https://bücher.example.evil/"],
        ),
        (
            "https://[::1]:8443",
            ["https://[::1]:8443/x"],
            ["https://[::1]:84/", "https://[::2]:8443/"],
        ),
    ],
)
def test_mount_is_host_exact(base: str, matching: list[str], hostile: list[str]) -> None:
    session = requests.Session()
    adapter = mount(session, base, TrustPolicy.certifi())
    for url in matching:
        assert adapter_for(session, url) is adapter, url
    for url in hostile:
        assert adapter_for(session, url) is not adapter, url


@pytest.mark.parametrize("base", ["ftp://h.example", "h.example", "https://", "https://u:p@h/"])
def test_mount_refuses_what_is_not_an_origin(base: str) -> None:
    with pytest.raises(ConfigError, match="base URL"):
        mount(requests.Session(), base, TrustPolicy.certifi())


@pytest.mark.parametrize(
    "spelling",
    [
        "https://user@{host}:{port}/",
        "https://user:pw@{host}:{port}/",
        "https://127.1:{port}/",
        "https://2130706433:{port}/",
        "https://127.000.000.001:{port}/",
    ],
)
def test_other_spellings_of_a_mounted_origin_get_its_policy(
    spelling: str,
    rogue_server: HTTPSServer,
    ca_file: str,
    other_ca_file: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No prefix matches these URLs; stock requests would trust REQUESTS_CA_BUNDLE for them."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", other_ca_file)  # trusts the rogue server
    session = requests.Session()
    adapter = mount(session, rogue_server.url, TrustPolicy.bundle(ca_file))
    url = spelling.format(host="127.0.0.1", port=rogue_server.port)
    assert session.get_adapter(url) is not adapter  # requests' prefix match misses it ...
    assert refuses(session, url)  # ... and the policy still decides
    other = session.get_adapter("https://example.com/")
    assert type(getattr(other, "fallback", other)) is requests.adapters.HTTPAdapter


def test_bound_adapter_refuses_other_hosts(
    server: HTTPSServer, rogue_server: HTTPSServer, ca_file: str
) -> None:
    session = requests.Session()
    adapter = mount(session, server.url, TrustPolicy.bundle(ca_file))
    assert session.get(server.url + "x", timeout=10).ok
    session.mount("https://", adapter)  # a careless broad mount
    with pytest.raises(requests.exceptions.InvalidURL) as raised:
        session.get(rogue_server.url, timeout=10)
    assert server.url in str(raised.value)
    assert f"127.0.0.1:{rogue_server.port}" in str(raised.value)
    with pytest.raises(requests.exceptions.InvalidURL) as raised:
        session.get(rogue_server.url.replace("//", "//user:s3cret@"), timeout=10)
    assert "s3cret" not in str(raised.value)
    assert rogue_server.connections == 0


# --- pickling and threads --------------------------------------------------------------------


def test_pickled_session_works_in_another_process(
    server: HTTPSServer, rogue_server: HTTPSServer, ca_file: str, tmp_path: Path
) -> None:
    session = requests.Session()
    mount(session, server.url, TrustPolicy.bundle(ca_file))
    assert session.get(server.url, timeout=10).ok
    copy = pickle.loads(pickle.dumps(session))
    assert copy.get(server.url, timeout=10).ok
    assert copy.get_adapter(server.url).policy == TrustPolicy.bundle(ca_file)
    pickled = tmp_path / "session.pickle"
    pickled.write_bytes(pickle.dumps(session))
    script = textwrap.dedent(
        f"""
        import pickle, requests
        s = pickle.loads(open({str(pickled)!r}, "rb").read())
        print(s.get({server.url!r}, timeout=10).status_code)
        s.mount("https://", s.get_adapter({server.url!r}))
        try:
            s.get({rogue_server.url!r}, timeout=10)
        except requests.exceptions.InvalidURL:
            print("refused")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": os.getcwd()},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.stdout.split() == ["200", "refused"], out.stderr


def test_threads_share_one_adapter_and_handshake_in_parallel(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    delay = 0.5
    with HTTPSServer(*issue_files(ca, tmp_path, "slow"), handshake_delay=delay) as slow:
        session = session_for(TrustPolicy.bundle(ca_file))
        results: list[int] = []
        barrier = threading.Barrier(8)

        def fetch() -> None:
            barrier.wait()
            results.append(session.get(slow.url, timeout=30).status_code)

        threads = [threading.Thread(target=fetch) for _ in range(8)]
        started = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
    assert results == [200] * 8
    assert slow.handshakes == 8
    assert elapsed < 3 * delay, f"8 handshakes took {elapsed:.2f}s: serialised?"


def test_plain_http_is_untouched() -> None:
    with HTTPServer() as plain:
        assert session_for(TrustPolicy.certifi()).get(plain.url, timeout=10).ok


def test_names_are_checked_on_both_hops(
    ca: trustme.CA, ca_file: str, proxy_ca: trustme.CA, proxy_ca_file: str, tmp_path: Path
) -> None:
    """A trusted chain for the wrong name is refused: origin direct, origin via proxy, proxy."""
    wrong_origin = issue_files(ca, tmp_path, "wrong-origin", "other.example")
    wrong_proxy = issue_files(proxy_ca, tmp_path, "wrong-proxy", "other.example")
    good_proxy = issue_files(proxy_ca, tmp_path, "good-proxy")
    policy, proxy_policy = TrustPolicy.bundle(ca_file), TrustPolicy.bundle(proxy_ca_file)
    session = session_for(policy, proxy_policy)
    with (
        HTTPSServer(*wrong_origin) as origin,
        HTTPSProxy(*good_proxy) as proxy,
        HTTPSProxy(*wrong_proxy) as misnamed_proxy,
        ConnectProxy() as plain_proxy,
    ):
        assert refuses(session, origin.url)
        for via in (proxy, plain_proxy):
            assert refuses(session, origin.url, proxies={"https": via.url})
        with HTTPSServer(*issue_files(ca, tmp_path, "good-origin")) as good:
            assert session.get(good.url, proxies={"https": proxy.url}, timeout=10).ok
            assert refuses(session, good.url, proxies={"https": misnamed_proxy.url})
            assert refuses(
                session,
                good.url.replace("127.0.0.1", "localhost"),
                proxies={"https": misnamed_proxy.url.replace("127.0.0.1", "localhost")},
            )


@pytest.mark.parametrize("kept", ["server certificate only", "intermediate only"])
def test_bundle_of_part_of_the_chain_is_trusted_on_every_python(
    kept: str, ca: trustme.CA, tmp_path: Path
) -> None:
    """What cmemc's docs (first certificate only) and fetch-chain (no root) save just works."""
    intermediate = ca.create_child_ca()
    chain, key = issue_files(intermediate, tmp_path, "chained")
    leaf_pem, intermediate_pem = Path(chain).read_text().split("-----END CERTIFICATE-----\n")[:2]
    bundle = tmp_path / "partial.pem"
    bundle.write_text(
        (leaf_pem if kept == "server certificate only" else intermediate_pem)
        + "-----END CERTIFICATE-----\n"
    )
    with HTTPSServer(chain, key) as chained, HTTPSServer(*issue_files(ca, tmp_path, "x")) as other:
        session = session_for(TrustPolicy.bundle(bundle))
        assert session.get(chained.url, timeout=10).ok
        assert refuses(session, other.url)  # signed by the root, which is not in the bundle


@pytest.mark.parametrize("verify", [True, None, "", b"", "  ", 0, 1])
def test_verify_values_that_are_no_choice_keep_the_policy(
    verify: object, server: HTTPSServer, rogue_server: HTTPSServer, ca_file: str
) -> None:
    session = session_for(TrustPolicy.bundle(ca_file))
    assert session.get(server.url, timeout=10, verify=verify).ok  # type: ignore[arg-type]
    assert refuses(session, rogue_server.url, verify=verify)


def test_client_certificate_given_as_a_pair_with_no_key(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    combined = tmp_path / "client.pem"
    ca.issue_cert("client@example.com").private_key_and_cert_chain_pem.write_to_path(str(combined))
    with HTTPSServer(*issue_files(ca, tmp_path, "mtls"), client_ca_pem_file=ca_file) as server:
        session = session_for(TrustPolicy.bundle(ca_file))
        assert session.get(server.url, timeout=10, cert=(str(combined), None)).ok
        assert server.client_cert_subjects[0] is not None


def test_an_encrypted_client_key_is_an_error_not_a_prompt(
    ca: trustme.CA, ca_file: str, tmp_path: Path
) -> None:
    from cryptography.hazmat.primitives import serialization

    client = ca.issue_cert("client@example.com")
    key = serialization.load_pem_private_key(client.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"pass phrase"),
    )
    cert_file, key_file = tmp_path / "client.pem", tmp_path / "client.key"
    client.cert_chain_pems[0].write_to_path(str(cert_file))
    key_file.write_bytes(encrypted)
    with HTTPSServer(*issue_files(ca, tmp_path, "mtls"), client_ca_pem_file=ca_file) as server:
        session = session_for(TrustPolicy.bundle(ca_file))
        # stdin closed: a prompt would fail differently, and a terminal would hang
        with pytest.raises(ConfigError, match="its key is encrypted"):
            session.get(server.url, timeout=10, cert=(str(cert_file), str(key_file)))


@pytest.mark.parametrize("wrong", ["system", "off", {"source": "off"}])
def test_a_policy_that_is_not_a_trust_policy_is_a_type_error(wrong: object) -> None:
    with pytest.raises(TypeError, match="must be a TrustPolicy"):
        TrustAdapter(wrong)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="must be a TrustPolicy"):
        mount(requests.Session(), "https://h.example", wrong)  # type: ignore[arg-type]


def test_a_refusal_says_which_trust_refused_it(
    rogue_server: HTTPSServer, ca_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    session = requests.Session()
    mount(session, rogue_server.url, TrustPolicy.from_env({"REQUESTS_CA_BUNDLE": ca_file}))
    with pytest.raises(requests.exceptions.SSLError) as refused:
        session.get(rogue_server.url, timeout=10)
    note = (
        f"cmem_adapter checked {rogue_server.url} against the policy: CA bundle loaded from"
        f" {ca_file} (chosen by REQUESTS_CA_BUNDLE set by env)."
        f" `cmem-adapter check {rogue_server.url}` explains the refusal"
    )
    assert note in caplog.messages
    if sys.version_info >= (3, 11):  # notes are shown under the traceback
        assert refused.value.__notes__ == [note]


def test_a_refused_https_proxy_says_which_trust_refused_it(
    server: HTTPSServer,
    other_ca: trustme.CA,
    ca_file: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The proxy hop is refused with a ProxyError (urllib3 2.x) or SSLError (1.26): both say."""
    session = session_for(TrustPolicy.bundle(ca_file))
    refused = (requests.exceptions.ProxyError, requests.exceptions.SSLError)
    with (
        HTTPSProxy(*issue_files(other_ca, tmp_path, "rogue-proxy")) as rogue,
        pytest.raises(refused),
    ):
        session.get(server.url, proxies={"https": rogue.url}, timeout=10)
    assert (
        f"cmem_adapter checked {server.url} against the policy: CA bundle loaded from {ca_file}"
        f" (chosen by TrustPolicy.bundle() in code)."
        f" `cmem-adapter check {server.url}` explains the refusal"
    ) in caplog.messages
