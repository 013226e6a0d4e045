"""One fixture per settings error, asserting the exact message (envoy ratelimit style)."""
from pathlib import Path

import pytest

from policy.settings import Settings, SettingsError, describe, load_settings

FIX = Path(__file__).parent / "fixtures" / "settings"


def test_defaults_without_any_source():
    s = load_settings(env={})
    assert s == Settings()
    assert s.listen == "127.0.0.1:50051" and s.gateway_listen == "127.0.0.1:7890"


def test_file_then_env_then_command_line():
    s = load_settings(str(FIX / "good.yaml"), env={"SMSPOLICY_WINDOW": "4"},
                      overrides={"listen": "127.0.0.1:7000"})
    assert (s.window, s.listen, s.watch_rules) == (4, "127.0.0.1:7000", False)


@pytest.mark.parametrize("name,message", [
    ("unknown_key.yaml", "{f}: unknown setting 'windw' (did you mean window?)"),
    ("wrong_type.yaml", "{f}: window must be int, got 'eight'"),
    ("bad_choice.yaml", "{f}: counters_backend must be one of sqlite, redis, none, got 'postgres'"),
    ("negative.yaml", "{f}: window must not be negative, got -1"),
    ("not_mapping.yaml", "{f}: settings file must be a mapping of setting: value"),
    ("bad_yaml.yaml", "{f}:2:1: not valid YAML: expected the node content, but found '<stream end>'"),
])
def test_each_file_error_has_one_exact_message(name, message):
    path = str(FIX / name)
    with pytest.raises(SettingsError) as e:
        load_settings(path, env={})
    assert str(e.value) == message.format(f=path)


def test_environment_errors_name_the_variable():
    with pytest.raises(SettingsError) as e:
        load_settings(env={"SMSPOLICY_WATCH_RULES": "maybe"})
    assert str(e.value) == "environment SMSPOLICY_WATCH_RULES: watch_rules must be bool, got 'maybe'"
    with pytest.raises(SettingsError) as e:
        load_settings(env={"SMSPOLICY_LISTN": "x"})
    assert str(e.value) == "environment SMSPOLICY_LISTN: unknown setting 'listn' (did you mean listen?)"


def test_missing_file():
    with pytest.raises(SettingsError) as e:
        load_settings("/nonexistent/smspolicy.yaml", env={})
    assert str(e.value) == "/nonexistent/smspolicy.yaml: cannot read settings file: No such file or directory"


def test_every_knob_is_documented():
    doc = (Path(__file__).parents[1] / "docs" / "settings.md").read_text()
    for name, _, _ in describe():
        assert f"`{name}`" in doc, name
