import json

import pytest

from agent_router.errors import SettingsError
from agent_router.settings import Settings, SettingsStore, load


def write(tmp_path, data, name="settings.json"):
    p = tmp_path / name
    p.write_text(json.dumps(data) if not isinstance(data, str) else data)
    return p


def test_builtin_defaults_have_three_tiers_offline():
    s = Settings()
    assert set(s.tiers) == {"utility", "chat", "premium"}
    for aliases in s.tiers.values():
        assert all(a in s.models for a in aliases)


def test_every_field_is_described():
    def walk(model, path):
        for name, field in model.model_fields.items():
            assert field.description, f"{path}.{name} has no description"
            ann = field.annotation
            if isinstance(ann, type) and hasattr(ann, "model_fields"):
                walk(ann, f"{path}.{name}")

    walk(Settings, "$")


def test_bad_field_names_file_json_path_and_expectation(tmp_path):
    p = write(tmp_path, {"routing": {"thresholds": {"low": "cheap"}}})
    with pytest.raises(SettingsError) as e:
        load(p)
    msg = str(e.value)
    assert str(p) in msg and "$.routing.thresholds.low" in msg and "number" in msg


def test_unknown_key_is_rejected_with_its_path(tmp_path):
    p = write(tmp_path, {"budgets": {"dayly_usd": 5}})
    with pytest.raises(SettingsError, match=r"\$\.budgets\.dayly_usd: unknown key"):
        load(p)


def test_api_key_in_place_of_env_name_is_rejected(tmp_path):
    p = write(tmp_path, {"models": {"m": {"provider": "openai", "name": "gpt-4o", "api_key_env": "sk-abc123"}},
                         "tiers": {"utility": "m", "chat": "m", "premium": "m"}})
    with pytest.raises(SettingsError) as e:
        load(p)
    assert "environment variable" in str(e.value)
    assert "sk-abc123" not in str(e.value)


def test_tier_with_unknown_alias(tmp_path):
    p = write(tmp_path, {"models": {"m": {"provider": "openai", "name": "gpt-4o"}},
                         "tiers": {"utility": "m", "chat": "m", "premium": "nope"}})
    with pytest.raises(SettingsError, match="unknown model alias 'nope'"):
        load(p)


def test_invalid_json_and_non_utf8(tmp_path):
    with pytest.raises(SettingsError, match="invalid JSON at line 1"):
        load(write(tmp_path, "{nope"))
    bad = tmp_path / "latin.json"
    bad.write_bytes(b'{"a": "\xe9"}')
    with pytest.raises(SettingsError, match="not valid UTF-8"):
        load(bad)


def test_env_var_and_explicit_path_precedence(tmp_path, monkeypatch):
    a = write(tmp_path, {"routing": {"strategy": "latency"}}, "a.json")
    b = write(tmp_path, {"routing": {"strategy": "cost_optimized"}}, "b.json")
    monkeypatch.setenv("AGENT_ROUTER_SETTINGS", str(a))
    assert load().routing.strategy == "latency"
    assert load(b).routing.strategy == "cost_optimized"


def test_reload_keeps_last_good_settings(tmp_path):
    p = write(tmp_path, {"routing": {"strategy": "latency"}})
    store = SettingsStore(p)
    p.write_text('{"routing": {"strategy": "fastest"}}')
    assert store.reload() is False
    assert store.settings.routing.strategy == "latency"
    assert "$.routing.strategy" in str(store.last_error)
    p.write_text('{"routing": {"strategy": "quality_first"}}')
    assert store.reload() is True
    assert store.settings.routing.strategy == "quality_first"


def test_example_file_is_valid_and_shows_every_section():
    from pathlib import Path

    example = Path(__file__).parent.parent / "settings.example.json"
    s = load(example)
    data = json.loads(example.read_text())
    for section in Settings.model_fields:
        alias = Settings.model_fields[section].alias or section
        assert alias in data, f"settings.example.json lacks {alias}"
    assert s.routing.thresholds.low == 0.3
