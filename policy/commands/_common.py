"""What several subcommands do first: settings from all sources, then the rules folder."""
from __future__ import annotations


def settings_and_policy(args, prog: str):
    """(settings, policy), or the exit code after saying what is wrong: 2 for bad settings,
    1 for a rules folder that does not validate (each problem on its own line)."""
    from ..rules.errors import PolicyError
    from ..rules.loader import load_policy
    from ..settings import SettingsError, load_settings
    try:
        settings = load_settings(args.config, overrides={"rules_dir": args.rules_dir,
                                                          "data_dir": args.data_dir})
    except SettingsError as e:
        print(f"smspolicy {prog}: {e}")
        return 2
    try:
        return settings, load_policy(settings.rules_dir)
    except PolicyError as e:
        print(e)
        print(f"smspolicy {prog}: the rules in {settings.rules_dir} are not valid; not starting")
        return 1
