"""config.yaml validation (CONTRACT section 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def problems(data: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_config(data)
    return dict(info.value.problems)


def test_shipped_config_is_valid_and_runs_embedded_default() -> None:
    config = load_config(REPO / "config.yaml")
    assert config.database.url.startswith("sqlite+aiosqlite://")
    assert config.feed.backend == "memory"
    assert config.pachca.enabled is False
    # No secret ships in git.
    assert config.pachca.token.get_secret_value() == ""
    assert config.auth.jwt_secret.get_secret_value() == ""
    assert config.auth.service_tokens == []


def test_wrong_type_names_the_key_path() -> None:
    assert "server.port" in problems({"server": {"port": "eighty"}})
    assert "pachca.channels.subjects.math" in problems(
        {"pachca": {"channels": {"subjects": {"math": "general"}}}}
    )


def test_unknown_keys_are_errors_at_every_level() -> None:
    assert "colour" in problems({"colour": "blue"})
    assert "feed.bakend" in problems({"feed": {"bakend": "redis"}})
    assert "pachca.channels.deafult" in problems({"pachca": {"channels": {"deafult": 1}}})


def test_redis_backend_needs_a_url() -> None:
    assert "feed" in problems({"feed": {"backend": "redis"}})


def test_environment_overrides_the_file(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_PACHCA__TOKEN", "from-env")
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "9999")
    monkeypatch.setenv("BRIDGE_PACHCA__CHANNELS__DEFAULT", "42")
    monkeypatch.setenv("BRIDGE_AUTH__SERVICE_TOKENS", '["a", "b"]')
    config = parse_config({"server": {"port": 8080}, "pachca": {"token": "from-file"}})
    assert config.pachca.token.get_secret_value() == "from-env"
    assert config.server.port == 9999
    assert config.pachca.channels.default == 42
    assert [t.get_secret_value() for t in config.auth.service_tokens] == ["a", "b"]


def test_bad_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "not-a-port")
    assert "server.port" in problems({})


def test_secrets_are_masked_in_reprs() -> None:
    config = parse_config(
        {
            "pachca": {"token": "tok-123", "signing_secret": ["s-1", "s-2"]},
            "auth": {"jwt_secret": "jwt-xyz", "service_tokens": ["svc-9"]},
        }
    )
    text = repr(config) + str(config)
    for secret in ("tok-123", "s-1", "s-2", "jwt-xyz", "svc-9"):
        assert secret not in text
    assert config.pachca.signing_secrets == ["s-1", "s-2"]


def test_signing_secret_accepts_one_or_a_list() -> None:
    assert parse_config({"pachca": {"signing_secret": "one"}}).pachca.signing_secrets == ["one"]
    assert parse_config({}).pachca.signing_secrets == []


def test_channel_choice_follows_the_contract() -> None:
    pachca = parse_config(
        {"pachca": {"channels": {"default": 1, "subjects": {"math": 2}, "tutors": 3}}}
    ).pachca
    assert pachca.channel_for("forum_subject", "math") == 2
    assert pachca.channel_for("forum_subject", "art") == 1
    assert pachca.channel_for("forum_tutor", "math") == 3
    no_tutors = parse_config({"pachca": {"channels": {"default": 1, "subjects": {"math": 2}}}})
    assert no_tutors.pachca.channel_for("forum_tutor", "math") == 2
    assert no_tutors.pachca.channel_for("forum_tutor", "art") == 1


def test_missing_explicit_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.yaml")


def test_invalid_yaml_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError):
        load_config(path)
