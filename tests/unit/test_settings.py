"""Configuration: typed, validated, with errors that say where and what."""

from __future__ import annotations

from pathlib import Path

import pytest

from interlock.settings import ConfigError, dump_settings, load_settings, parse_settings

ROOT = Path(__file__).resolve().parents[2]


def test_empty_config_is_the_embedded_default() -> None:
    s = parse_settings({})
    assert s.server.port == 8080 and s.storage.url.startswith("sqlite+aiosqlite")


def test_env_interpolation_with_default(monkeypatch: pytest.MonkeyPatch) -> None:
    data = {
        "providers": {
            "o": {
                "kind": "openai",
                "api_key": "${MY_KEY}",
                "base_url": "${BASE:-https://x.example/v1}",
            }
        }
    }
    s = parse_settings(data, env={"MY_KEY": "sk-123"})
    p = s.providers["o"]
    assert p.api_key is not None and p.api_key.get_secret_value() == "sk-123"
    assert p.base_url == "https://x.example/v1"
    assert "sk-123" not in repr(s)  # secrets never show in reprs or logs


def test_missing_env_var_names_the_field() -> None:
    with pytest.raises(
        ConfigError, match=r"f.yaml: providers.o.api_key: environment variable NOPE is not set"
    ):
        parse_settings(
            {"providers": {"o": {"kind": "openai", "api_key": "${NOPE}"}}}, "f.yaml", env={}
        )


def test_empty_optional_secret_means_no_key() -> None:
    s = parse_settings({"providers": {"o": {"kind": "openai", "api_key": "${K:-}"}}}, env={})
    assert s.providers["o"].api_key is None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"server": {"port": "http"}}, "server.port"),
        ({"server": {"prot": 1}}, "server.prot: unknown field"),
        ({"providers": {"a": {"kind": "nope"}}}, "providers.a.kind"),
        ({"providers": {"a": {"kind": "azure"}}}, "base_url is required"),
        ({"providers": {"a": {"kind": "vertex"}}}, "project and region are required"),
        (
            {"deployments": {"d": {"provider": "ghost", "model": "m"}}},
            "deployments.d.provider: unknown provider",
        ),
        ({"models": {"m": {"deployments": ["ghost"]}}}, "models.m.deployments: unknown deployment"),
        ({"models": {"m": {"deployments": []}}}, "models.m: Value error, deployments: at least"),
    ],
)
def test_validation_errors_name_file_and_field(data: dict, expected: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse_settings(data, "conf.yaml", env={})
    assert str(exc.value).startswith("conf.yaml")
    assert expected in str(exc.value)


def test_alias_cannot_mix_kinds() -> None:
    data = {
        "providers": {"p": {"kind": "openai"}},
        "deployments": {
            "c": {"provider": "p", "model": "a"},
            "e": {"provider": "p", "model": "b", "kind": "embeddings"},
        },
        "models": {"m": {"deployments": ["c", "e"]}},
    }
    with pytest.raises(ConfigError, match="mixes kinds"):
        parse_settings(data)


def test_invalid_yaml_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_settings(bad)
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "missing.yaml")


def test_example_file_loads() -> None:
    env = {
        "OPENAI_API_KEY": "sk-x",
        "ANTHROPIC_API_KEY": "a",
        "GEMINI_API_KEY": "g",
        "AZURE_OPENAI_API_KEY": "az",
        "INTERLOCK_MASTER_KEY": "m" * 24,
    }
    s = load_settings(ROOT / "interlock.example.yaml", env=env)
    assert s.models and s.deployments


def test_dump_round_trips_secrets() -> None:
    s = parse_settings(
        {"providers": {"o": {"kind": "openai", "api_key": "sk-abc"}}, "auth": {"master_key": "m"}}
    )
    again = parse_settings(dump_settings(s), expand_env=False)
    assert again == s
