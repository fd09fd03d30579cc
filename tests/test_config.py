"""cmemc's config.ini: sections, [DEFAULT], precedence over the environment, origins, errors."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import requests

from cmem_adapter import ConfigError, TrustPolicy, mount_from_config
from cmem_adapter.config import CmemcConfig


def write_config(path: Path, text: str) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return str(path)


@pytest.fixture
def config(tmp_path: Path, ca_file: str, other_ca_file: str) -> str:
    return write_config(
        tmp_path / "cfg" / "config.ini",
        f"""
[DEFAULT]
SSL_VERIFY = system
REQUESTS_CA_BUNDLE = {other_ca_file}

[prod]
CMEM_BASE_URI = https://prod.example.com:8443/
REQUESTS_CA_BUNDLE = {ca_file}
OAUTH_GRANT_TYPE = client_credentials
OAUTH_CLIENT_SECRET = s3cr3t-value

[dev]
CMEM_BASE_URI = http://localhost:8080
ssl_verify = false

[plain]
CMEM_BASE_URI = https://plain.example.com
""",
    )


def test_section_beats_environment_beats_default(
    config: str, ca_file: str, other_ca_file: str
) -> None:
    env = {"SSL_VERIFY": "certifi"}
    prod = TrustPolicy.from_config("prod", config, env)
    assert (prod.source, prod.ca and prod.ca.value) == ("certifi", ca_file)
    origins = {s.key: (s.origin, s.where) for s in prod.settings}
    assert origins["SSL_VERIFY"] == ("env", "")
    assert origins["REQUESTS_CA_BUNDLE"] == ("config", f"[prod] in {config}")
    plain = TrustPolicy.from_config("plain", config, {})
    assert (plain.source, plain.ca and plain.ca.value) == ("system", other_ca_file)
    assert {s.where for s in plain.settings} == {f"[DEFAULT] in {config}"}


def test_keys_are_case_insensitive_like_cmemc(config: str) -> None:
    assert TrustPolicy.from_config("dev", config, {"SSL_VERIFY": "true"}).source == "off"


def test_connection_and_file_from_the_environment(config: str, ca_file: str) -> None:
    env = {"CMEMC_CONFIG_FILE": config, "CMEMC_CONNECTION": "prod"}
    assert TrustPolicy.from_config(environ=env).ca.value == ca_file  # type: ignore[union-attr]


def test_default_location_follows_xdg_config_home(tmp_path: Path, ca_file: str) -> None:
    write_config(tmp_path / "xdg" / "cmemc" / "config.ini", f"[c]\nREQUESTS_CA_BUNDLE={ca_file}\n")
    env = {"XDG_CONFIG_HOME": str(tmp_path / "xdg"), "CMEMC_CONNECTION": "c"}
    assert TrustPolicy.from_config(environ=env).source == "bundle"


def test_no_config_file_at_all_is_the_environment_alone(tmp_path: Path) -> None:
    env = {"XDG_CONFIG_HOME": str(tmp_path / "none"), "SSL_VERIFY": "false"}
    assert TrustPolicy.from_config(environ=env).source == "off"


def test_relative_bundle_tries_current_directory_then_config_directory(
    tmp_path: Path, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_dir = tmp_path / "conf"
    config = write_config(cfg_dir / "config.ini", "[c]\nREQUESTS_CA_BUNDLE = certs/ca.pem\n")
    (cfg_dir / "certs").mkdir()
    (cfg_dir / "certs" / "ca.pem").write_bytes(Path(ca_file).read_bytes())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    policy = TrustPolicy.from_config("c", config, {})
    assert policy.ca is not None and policy.ca.value == str(cfg_dir / "certs" / "ca.pem")
    (elsewhere / "certs").mkdir()
    (elsewhere / "certs" / "ca.pem").write_bytes(Path(ca_file).read_bytes())
    contexts_first = TrustPolicy.from_config("c", config, {})
    assert contexts_first.ca is not None
    assert contexts_first.ca.value == str(elsewhere / "certs" / "ca.pem")


def test_missing_relative_bundle_names_every_path_tried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path / "conf" / "config.ini", "[c]\nREQUESTS_CA_BUNDLE=ca.pem\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as raised:
        TrustPolicy.from_config("c", config, {})
    message = str(raised.value)
    assert f"REQUESTS_CA_BUNDLE set by config ([c] in {config}) to 'ca.pem'" in message
    assert str(tmp_path / "ca.pem") in message
    assert str(tmp_path / "conf" / "ca.pem") in message


def test_unknown_connection_lists_the_known_ones(config: str) -> None:
    with pytest.raises(ConfigError, match=r"'staging': no such section .*prod, dev, plain"):
        TrustPolicy.from_config("staging", config, {})


def test_parse_error_names_the_line(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.ini", "[ok]\nA=1\nthis line is not ini\n")
    with pytest.raises(ConfigError, match=r"cannot be parsed: .*line 3"):
        TrustPolicy.from_config("ok", config, {})


def test_missing_explicit_config_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.ini")
    with pytest.raises(ConfigError, match=r"nope\.ini.*cannot be read"):
        TrustPolicy.from_config(config_file=missing, environ={})
    with pytest.raises(ConfigError, match=r"CMEMC_CONFIG_FILE set by env"):
        TrustPolicy.from_config(environ={"CMEMC_CONFIG_FILE": missing})


def test_bad_value_in_config_names_file_and_section(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.ini", "[c]\nSSL_VERIFY=sometimes\n")
    with pytest.raises(ConfigError, match=r"SSL_VERIFY set by config \(\[c\] in .*\) to 'some"):
        TrustPolicy.from_config("c", config, {})


def test_secrets_are_never_logged_or_shown(config: str, caplog: pytest.LogCaptureFixture) -> None:
    TrustPolicy.from_config("prod", config, {})
    settings = CmemcConfig.load(config, {}).settings("prod", {})
    shown = [str(s) for s in settings]
    assert "OAUTH_CLIENT_SECRET set by config" in shown
    assert "OAUTH_GRANT_TYPE set by config to client_credentials" in shown
    assert "s3cr3t" not in " ".join(shown + caplog.messages)


def test_mount_from_config_mounts_on_the_base_uri(
    config: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = requests.Session()
    adapter = mount_from_config(session, "prod", config)
    assert session.get_adapter("https://prod.example.com:8443/dataplatform") is adapter
    assert session.get_adapter("https://prod.example.com/") is not adapter
    monkeypatch.setenv("CMEMC_CONNECTION", "dev")
    dev = mount_from_config(requests.Session(), config_file=config)
    assert dev.policy.source == "off"


def test_mount_from_config_without_base_uri(tmp_path: Path) -> None:
    config = write_config(tmp_path / "config.ini", "[c]\nSSL_VERIFY=true\n")
    with pytest.raises(ConfigError, match="CMEM_BASE_URI is not set"):
        mount_from_config(requests.Session(), "c", config)
    assert os.environ.get("CMEM_BASE_URI") is None
