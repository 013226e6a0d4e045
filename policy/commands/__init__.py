"""Subcommands of `smspolicy`; see policy/cli.py for the module contract."""
