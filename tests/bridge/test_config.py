"""config.yaml validation (docs/configuration.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]
TOKEN_A = "service-token-a-0123456789"
TOKEN_B = "service-token-b-0123456789"


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
    monkeypatch.setenv("BRIDGE_AUTH__SERVICE_TOKENS", f'["{TOKEN_A}", "{TOKEN_B}"]')
    config = parse_config({"server": {"port": 8080}, "pachca": {"token": "from-file"}})
    assert config.pachca.token.get_secret_value() == "from-env"
    assert config.server.port == 9999
    assert config.pachca.channels.default == 42
    assert [t.get_secret_value() for t in config.auth.service_tokens] == [TOKEN_A, TOKEN_B]


def test_bad_environment_value_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "not-a-port")
    with pytest.raises(ConfigError) as info:
        parse_config({})
    # The variable's fault, not the file's: named as the variable, with the key it sets.
    assert info.value.source == "environment"
    [(name, message)] = info.value.problems
    assert name == "BRIDGE_SERVER__PORT"
    assert "server.port" in message and "integer" in message


def test_values_wrong_only_together_name_the_variables_that_set_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Each value is valid on its own; together with the file they are not. The admin is told
    # which variables took part (names only: a value may be a secret).
    monkeypatch.setenv("BRIDGE_FEED__BACKEND", "redis")
    monkeypatch.setenv("BRIDGE_FEED__CHANNEL", "bridge-x")
    monkeypatch.setenv("BRIDGE_SERVER__PORT", "8081")
    with pytest.raises(ConfigError) as info:
        parse_config({"feed": {"channel": "bridge"}}, "config.yaml")
    [(path, message)] = info.value.problems
    assert path == "feed" and "feed.url is required" in message
    assert message.endswith("(the environment sets BRIDGE_FEED__BACKEND, BRIDGE_FEED__CHANNEL)")
    assert "redis" not in message.split("(the environment")[1]
    # A problem the environment has no part in is the file's alone.
    monkeypatch.delenv("BRIDGE_FEED__BACKEND")
    monkeypatch.delenv("BRIDGE_FEED__CHANNEL")
    with pytest.raises(ConfigError) as info:
        parse_config({"feed": {"backend": "redis"}}, "config.yaml")
    [(_, message)] = info.value.problems
    assert "environment" not in message


def test_secrets_are_masked_in_reprs() -> None:
    config = parse_config(
        {
            "pachca": {"token": "tok-123", "signing_secret": ["s-1", "s-2"]},
            "auth": {"jwt_secret": "jwt-xyz" * 5, "service_tokens": ["svc-9" * 5]},
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


# --- security checks (section 16: tokens, a hostile Pachca) ---------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://api.pachca.com/api/shared/v1",
        "http://127.0.0.1:8081/api/shared/v1",
        "http://127.3.4.5/api",
        "http://[::1]:8081/api",
        "http://localhost:8081/api",
        "http://LOCALHOST/api",
    ],
)
def test_api_url_is_https_or_loopback(url: str) -> None:
    assert parse_config({"pachca": {"api_url": url}}).pachca.api_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://api.pachca.com/api/shared/v1",
        "http://10.0.0.1/api",
        "http://localhost.example.com/api",
        "http://127.0.0.1.example.com/api",
        "ftp://localhost/api",
        "api.pachca.com/api",
        "https:///api",
    ],
)
def test_api_url_refuses_plain_http_beyond_this_machine(url: str) -> None:
    assert "pachca.api_url" in problems({"pachca": {"api_url": url}})


def test_jwt_secret_when_set_has_at_least_32_bytes() -> None:
    assert "auth.jwt_secret" in problems({"auth": {"jwt_secret": "k" * 31}})
    # Bytes, not characters: 16 two-byte characters are enough.
    assert parse_config({"auth": {"jwt_secret": "é" * 16}}).auth.jwt_secret
    assert parse_config({"auth": {"jwt_secret": "k" * 32}}).auth.jwt_secret
    # Empty: a key is generated and kept in the database.
    assert parse_config({"auth": {"jwt_secret": ""}}).auth.jwt_secret.get_secret_value() == ""


def test_each_service_token_has_at_least_24_characters() -> None:
    found = problems({"auth": {"service_tokens": [TOKEN_A, "x" * 23, ""]}})
    assert set(found) == {"auth.service_tokens.1", "auth.service_tokens.2"}
    assert parse_config({"auth": {"service_tokens": ["x" * 24]}}).auth.service_tokens


def test_a_refused_secret_is_never_quoted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_AUTH__SERVICE_TOKENS", '["hunter2-env-token"]')
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"jwt_secret": "hunter2-jwt-secret"}})
    text = str(info.value) + repr(info.value.problems)
    assert "BRIDGE_AUTH__SERVICE_TOKENS" in text and "auth.service_tokens.0" in text
    assert "hunter2" not in text
    monkeypatch.delenv("BRIDGE_AUTH__SERVICE_TOKENS")
    with pytest.raises(ConfigError) as info:
        parse_config({"auth": {"jwt_secret": "hunter2-jwt-secret"}})
    text = str(info.value) + repr(info.value.problems)
    assert "auth.jwt_secret" in text and "hunter2" not in text


def test_staff_user_ids_are_pachca_user_ids() -> None:
    assert parse_config({"pachca": {"staff_user_ids": [5, 6]}}).pachca.staff_user_ids == [5, 6]
    assert parse_config({}).pachca.staff_user_ids == []
    assert "pachca.staff_user_ids.0" in problems({"pachca": {"staff_user_ids": ["the boss"]}})


def test_reminders_are_off_by_default_and_need_positive_intervals() -> None:
    shipped = load_config(REPO / "config.yaml").reminders
    assert (shipped.enabled, shipped.after_s, shipped.repeat_s) == (False, 14400, 86400)
    assert parse_config({}).reminders == shipped
    on = parse_config({"reminders": {"enabled": True, "after_s": 60, "repeat_s": 600}})
    assert (on.reminders.enabled, on.reminders.after_s, on.reminders.repeat_s) == (True, 60, 600)
    assert "reminders.after_s" in problems({"reminders": {"after_s": 0}})
    assert "reminders.repeat_s" in problems({"reminders": {"repeat_s": -1}})
    assert "reminders.every_s" in problems({"reminders": {"every_s": 5}})


def test_cors_origins_are_origins() -> None:
    config = parse_config(
        {"server": {"cors_origins": ["https://School.example/", "http://a:3000"]}}
    )
    assert config.server.cors_origins == ["https://school.example", "http://a:3000"]
    for bad in ("*", "school.example", "https://school.example/app", "ftp://school.example"):
        assert "server.cors_origins.0" in problems({"server": {"cors_origins": [bad]}})
