"""The ``--help`` formatter of every command-line tool: each option's default is shown, once."""

from __future__ import annotations

import argparse
import copy


class DefaultsHelpFormatter(argparse.HelpFormatter):
    """Appends ``(default: X)`` to an option's help unless the help already names its default
    or there is none to show (None, False for a switch, or a required positional)."""

    @staticmethod
    def _shows_default(action: argparse.Action) -> bool:
        return not (any(action.default is nothing for nothing in (None, False, argparse.SUPPRESS))
                    or (not action.option_strings and action.nargs not in ('?', '*')))

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ''
        if 'default' in text or not self._shows_default(action):
            return text
        return f'{text} (default: {action.default})'.lstrip()

    def _format_action(self, action: argparse.Action) -> str:
        if not action.help and self._shows_default(action):  # an option without a help text
            action = copy.copy(action)
            action.help = f'(default: {action.default})'
        return super()._format_action(action)
