"""TrustPolicy: the environment table of DESIGN §2, bad input, debug lines."""

from __future__ import annotations

import logging
import os
import subprocess
from pathlib import Path

import pytest
import trustme

from cmem_adapter import ConfigError, TrustPolicy
from cmem_adapter.contexts import live_context

TRUE_WORDS = ["true", "1", "yes", "on", "TRUE", " Yes ", "On"]
FALSE_WORDS = ["false", "0", "no", "off", "FALSE", " No ", "oFF"]


def resolved(environ: dict[str, str]) -> tuple[str, str | None]:
    policy = TrustPolicy.from_env(environ)
    return policy.source, policy.ca.value if policy.ca else None


@pytest.mark.parametrize("word", [None, "", "  ", *TRUE_WORDS])
def test_unset_or_true_without_bundle_is_certifi(word: str | None) -> None:
    env = {} if word is None else {"SSL_VERIFY": word}
    assert resolved(env) == ("certifi", None)


@pytest.mark.parametrize("word", [None, "", *TRUE_WORDS])
def test_unset_or_true_with_bundle_is_that_bundle(word: str | None, ca_file: str) -> None:
    env = {"REQUESTS_CA_BUNDLE": ca_file} | ({} if word is None else {"SSL_VERIFY": word})
    assert resolved(env) == ("bundle", ca_file)


def test_certifi_word(ca_file: str) -> None:
    assert resolved({"SSL_VERIFY": "certifi"}) == ("certifi", None)
    assert resolved({"SSL_VERIFY": "Certifi", "REQUESTS_CA_BUNDLE": ca_file}) == (
        "certifi",
        ca_file,
    )


@pytest.mark.parametrize("word", ["system", "truststore", "SYSTEM", " TrustStore "])
def test_system_words(word: str, ca_file: str) -> None:
    assert resolved({"SSL_VERIFY": word}) == ("system", None)
    assert resolved({"SSL_VERIFY": word, "REQUESTS_CA_BUNDLE": ca_file}) == ("system", ca_file)


@pytest.mark.parametrize("word", FALSE_WORDS)
def test_false_words_are_off_whatever_the_bundle(
    word: str, caplog: pytest.LogCaptureFixture
) -> None:
    assert resolved({"SSL_VERIFY": word}) == ("off", None)
    caplog.clear()
    env = {"SSL_VERIFY": word, "REQUESTS_CA_BUNDLE": "/does/not/matter"}
    assert resolved(env) == ("off", None)
    assert "REQUESTS_CA_BUNDLE ignored: verification is off" in caplog.messages


@pytest.mark.parametrize("word", ["maybe", "ture", "2", "verify", "none", "disabled"])
def test_any_other_word_is_an_error_naming_key_value_origin_and_choices(word: str) -> None:
    with pytest.raises(ConfigError) as raised:
        TrustPolicy.from_env({"SSL_VERIFY": word})
    message = str(raised.value)
    assert f"SSL_VERIFY set by env to {word!r}" in message
    for accepted in ("true", "false", "1", "0", "yes", "no", "on", "off", "certifi", "system"):
        assert accepted in message
    assert "Fix:" in message


def test_curl_ca_bundle_is_the_fallback_in_the_same_layer(ca_file: str, other_ca_file: str) -> None:
    assert resolved({"CURL_CA_BUNDLE": ca_file}) == ("bundle", ca_file)
    both = {"REQUESTS_CA_BUNDLE": ca_file, "CURL_CA_BUNDLE": other_ca_file}
    assert resolved(both) == ("bundle", ca_file)
    assert resolved({"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": ca_file}) == ("bundle", ca_file)


def test_empty_bundle_values_count_as_unset() -> None:
    assert resolved({"REQUESTS_CA_BUNDLE": "", "CURL_CA_BUNDLE": "  "}) == ("certifi", None)


def test_environ_mapping_replaces_os_environ(monkeypatch: pytest.MonkeyPatch, ca_file: str) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", ca_file)
    monkeypatch.setenv("SSL_VERIFY", "false")
    assert resolved({}) == ("certifi", None)
    assert TrustPolicy.from_env().source == "off"


def test_relative_bundle_path_is_made_absolute_against_the_current_directory(
    monkeypatch: pytest.MonkeyPatch, ca_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(os.path.dirname(ca_file))
    assert resolved({"REQUESTS_CA_BUNDLE": "ca.pem"}) == ("bundle", ca_file)
    assert "REQUESTS_CA_BUNDLE set by env to ca.pem" in caplog.messages
    assert f"CA bundle loaded from {ca_file}" in caplog.messages


def test_pem_text_in_a_variable_is_logged_short(
    ca: trustme.CA, caplog: pytest.LogCaptureFixture
) -> None:
    pem = ca.cert_pem.bytes().decode()
    assert TrustPolicy.from_env({"REQUESTS_CA_BUNDLE": pem}).source == "bundle"
    said = f"REQUESTS_CA_BUNDLE set by env to PEM text ({len(pem.strip())} characters)"
    assert said in caplog.messages
    assert "CA bundle loaded from PEM text" in caplog.messages
    assert not any("BEGIN" in m for m in caplog.messages)


def test_debug_lines_name_each_setting_and_the_source(
    caplog: pytest.LogCaptureFixture, ca_file: str
) -> None:
    TrustPolicy.from_env({"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file})
    assert "SSL_VERIFY set by env to system" in caplog.messages
    assert f"SSL_CERT_FILE set by env to {ca_file}" in caplog.messages
    assert any(m.startswith("Trusting the system trust store (" + ca_file) for m in caplog.messages)
    caplog.clear()
    TrustPolicy.from_env({"SSL_VERIFY": "false"})
    assert caplog.messages == [
        "SSL_VERIFY set by env to false",
        "Not verifying TLS certificates (SSL_VERIFY=false)",
    ]
    assert all(r.levelno == logging.DEBUG and r.name == "cmem_adapter" for r in caplog.records)


# --- bad CA input: every kind fails when the policy is built, naming path, setting and fix ---


def pem_block(label: str, body: bytes = b"A" * 64) -> bytes:
    return b"-----BEGIN %s-----\n%s\n-----END %s-----\n" % (label.encode(), body, label.encode())


BAD_FILES = {
    "empty": (b"", "is empty"),
    "blank": (b"\n  \n", "is empty"),
    "der": (b"\x30\x82\x01\x0a" + os.urandom(64), "is DER (binary), not PEM"),
    "garbage": (b"this is not a certificate\n", "is not PEM"),
    "binary garbage": (b"\x00\xff" * 40, "is not PEM"),
    "key only": (pem_block("PRIVATE KEY"), "holds a private key but no certificate"),
    "ec key only": (pem_block("EC PRIVATE KEY"), "holds a private key but no certificate"),
    "certificate-less": (pem_block("PUBLIC KEY") + pem_block("X509 CRL"), "holds no certificate"),
    "broken certificate": (pem_block("CERTIFICATE", b"MIIB" + b"A" * 60), "could not be parsed"),
    "non-ASCII certificate": (pem_block("CERTIFICATE", "é".encode()), "could not be parsed"),
    "text starting with 0": (b"0 certificates here\n", "is not PEM"),
    "half-written": (b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n", "no END line"),
    "trusted certificate": (pem_block("TRUSTED CERTIFICATE"), "'TRUSTED CERTIFICATE' blocks"),
}


@pytest.mark.parametrize("kind", list(BAD_FILES))
def test_bad_bundle_file_is_refused_when_the_policy_is_built(kind: str, tmp_path: Path) -> None:
    content, problem = BAD_FILES[kind]
    path = tmp_path / "bundle.pem"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as raised:
        TrustPolicy.from_env({"REQUESTS_CA_BUNDLE": str(path)})
    message = str(raised.value)
    assert f"REQUESTS_CA_BUNDLE set by env to {str(path)!r}" in message
    assert problem in message
    assert "Fix:" in message


def test_a_cut_off_last_certificate_is_refused_even_after_good_ones(
    tmp_path: Path, ca: trustme.CA
) -> None:
    """A half-written bundle must not be taken for a smaller good one (rotation keeps the last)."""
    path = tmp_path / "bundle.pem"
    path.write_bytes(ca.cert_pem.bytes() + ca.cert_pem.bytes()[:200])
    with pytest.raises(ConfigError, match="no END line"):
        TrustPolicy.bundle(path)


@pytest.mark.parametrize("empty", ["", "  ", b""])
@pytest.mark.parametrize("constructor", ["bundle", "certifi", "system"])
def test_an_empty_path_is_refused_not_taken_as_the_current_directory(
    empty: object, constructor: str, tmp_path: Path, ca: trustme.CA, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match="an empty path names no CA file"):
        getattr(TrustPolicy, constructor)(empty)


def test_a_bytes_path_is_a_path(tmp_path: Path, ca: trustme.CA) -> None:
    folder = tmp_path / "é"
    folder.mkdir()
    ca.cert_pem.write_to_path(str(folder / "ca.pem"))
    policy = TrustPolicy.bundle(os.fsencode(folder / "ca.pem"))
    assert policy.ca is not None and policy.ca.value == str(folder / "ca.pem")


def test_a_dangling_symlink_is_named_as_such(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").symlink_to(tmp_path / "gone.pem")
    with pytest.raises(ConfigError, match="symbolic link that is not a regular file"):
        TrustPolicy.bundle(tmp_path / "ca.pem")


def test_der_error_says_how_to_convert(tmp_path: Path) -> None:
    path = tmp_path / "ca.der"
    path.write_bytes(BAD_FILES["der"][0])
    with pytest.raises(ConfigError, match=r"openssl x509 -inform der -in .*ca\.der"):
        TrustPolicy.bundle(path)


def test_the_broken_certificate_is_named_among_good_ones(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    path = tmp_path / "bundle.pem"
    broken = pem_block("CERTIFICATE", b"MIIB" + b"A" * 60)
    path.write_bytes(ca.cert_pem.bytes() + broken + other_ca.cert_pem.bytes())
    with pytest.raises(ConfigError, match="certificate #2 of 3 could not be parsed"):
        TrustPolicy.bundle(str(path))


def test_missing_bundle_names_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pem"
    with pytest.raises(ConfigError) as raised:
        TrustPolicy.from_env({"CURL_CA_BUNDLE": str(missing)})
    assert f"CURL_CA_BUNDLE set by env to {str(missing)!r}: no such file" in str(raised.value)


@pytest.mark.parametrize("constructor", [TrustPolicy.certifi, TrustPolicy.system])
def test_bad_extra_ca_is_refused_too(constructor: object, tmp_path: Path) -> None:
    path = tmp_path / "extra.pem"
    path.write_bytes(pem_block("PRIVATE KEY"))
    with pytest.raises(ConfigError, match=r"extra_ca set by argument to .*private key"):
        constructor(path)  # type: ignore[operator]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_bundle_is_refused(tmp_path: Path, ca: trustme.CA) -> None:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    path.chmod(0)
    with pytest.raises(ConfigError, match=r"cannot read .*ca\.pem \(Permission denied\)"):
        TrustPolicy.bundle(str(path))


@pytest.mark.skipif(not os.path.exists("/proc/self/mem"), reason="needs Linux /proc")
def test_a_file_that_fails_to_read_is_refused() -> None:
    # Reading /proc/self/mem from offset 0 fails with EIO, even for root.
    with pytest.raises(ConfigError, match=r"cannot read /proc/self/mem \(Input/output error\)"):
        TrustPolicy.bundle("/proc/self/mem")


@pytest.mark.parametrize("special", ["/dev/zero", "/dev/null"])
def test_devices_are_refused_not_read(special: str, tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    for path in (special, str(fifo)):
        with pytest.raises(ConfigError, match="is not a regular file or directory"):
            TrustPolicy.from_env({"REQUESTS_CA_BUNDLE": path})


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (pem_block("TRUSTED CERTIFICATE"), "'TRUSTED CERTIFICATE' blocks"),
        (b"-----BEGIN CERTIFICATE-----\nMIIBkTCB+wIJAK\n", "no END line"),
    ],
)
def test_a_bad_file_in_a_directory_fails_like_a_bad_bundle_file(
    content: bytes, problem: str, tmp_path: Path, ca: trustme.CA
) -> None:
    """Not skipped: a directory would trust less than it holds, or a half-written file."""
    folder = tmp_path / "certs"
    folder.mkdir()
    ca.cert_pem.write_to_path(str(folder / "good.pem"))
    (folder / "bad.pem").write_bytes(content)
    (folder / "README").write_text("files without certificates are skipped\n")
    with pytest.raises(ConfigError, match=f"the file {folder / 'bad.pem'} .*{problem}"):
        TrustPolicy.bundle(folder)


def test_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "README").write_text("no certificates here\n")
    with pytest.raises(ConfigError, match="directory holds no PEM certificate"):
        TrustPolicy.bundle(tmp_path / "certs")


# --- good CA input in every form ---


def context_ca_count(policy: TrustPolicy) -> int:
    return live_context(policy).current().cert_store_stats()["x509_ca"]


def test_directory_of_pem_files_hashed_or_not(
    tmp_path: Path, ca: trustme.CA, other_ca: trustme.CA
) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    ca.cert_pem.write_to_path(str(plain / "one.pem"))
    other_ca.cert_pem.write_to_path(str(plain / "two.crt"))
    assert context_ca_count(TrustPolicy.bundle(plain)) == 2
    hashed = tmp_path / "hashed"
    hashed.mkdir()
    ca.cert_pem.write_to_path(str(hashed / "one.pem"))
    subprocess.run(["openssl", "rehash", str(hashed)], check=True)
    assert any(name.endswith(".0") for name in os.listdir(hashed))
    assert context_ca_count(TrustPolicy.bundle(str(hashed))) == 1


def test_pem_text_in_memory(ca: trustme.CA, other_ca: trustme.CA) -> None:
    text = ca.cert_pem.bytes().decode() + other_ca.cert_pem.bytes().decode()
    policy = TrustPolicy.bundle(text)
    assert policy.ca is not None and policy.ca.kind == "pem"
    assert context_ca_count(policy) == 2
    assert context_ca_count(TrustPolicy.bundle(ca.cert_pem.bytes())) == 1


def test_certifi_source_holds_certifi_and_extra(ca_file: str) -> None:
    import certifi

    certifi_count = certifi.contents().count("BEGIN CERTIFICATE")
    assert context_ca_count(TrustPolicy.certifi()) == certifi_count
    assert context_ca_count(TrustPolicy.certifi(extra_ca=ca_file)) == certifi_count + 1


def test_system_source_honours_ssl_cert_file(ca_file: str, tmp_path: Path) -> None:
    policy = TrustPolicy.from_env({"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file})
    assert policy.system_store is not None and policy.system_store.cafile == ca_file
    empty_dir = tmp_path / "empty"
    empty_dir.mkdir()
    only = TrustPolicy.from_env(
        {"SSL_VERIFY": "system", "SSL_CERT_FILE": ca_file, "SSL_CERT_DIR": str(empty_dir)}
    )
    assert context_ca_count(only) == 1


def test_system_source_refuses_a_missing_ssl_cert_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "missing.pem")
    with pytest.raises(ConfigError, match=r"SSL_CERT_FILE set by env to .*OpenSSL would silently"):
        TrustPolicy.from_env({"SSL_VERIFY": "system", "SSL_CERT_FILE": missing})


def test_equal_policies_share_one_context(ca_file: str) -> None:
    one = TrustPolicy.from_env({"REQUESTS_CA_BUNDLE": ca_file})
    two = TrustPolicy.bundle(ca_file)
    assert one == two
    assert live_context(one).current() is live_context(two).current()
    assert live_context(TrustPolicy.certifi()) is not live_context(one)


def test_repr_is_short(ca_file: str) -> None:
    assert repr(TrustPolicy.bundle(ca_file)) == f"TrustPolicy('bundle', ca={ca_file!r})"
