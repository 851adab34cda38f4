"""The command line's parser machinery, apart from the commands it parses.

argparse as it comes answers an unknown option of a subcommand with the
top-level usage and no hint; a subcommand's parser here names the option,
suggests the closest real one and shows its own usage. ``mount`` also takes
mount(8)'s ``-o a,b=c`` (fstab's form), turned into long options before
parsing so each value is checked, and refused with the same message, as
its long option.
"""

from __future__ import annotations

import argparse
import difflib
import sys

from vagonfs.errors import ConfigError

# what mount(8) and fstab add that means nothing to a FUSE daemon
_GENERIC_MOUNT_OPTIONS = {"rw", "dev", "nodev", "suid", "nosuid", "exec", "noexec", "auto",
                          "noauto", "user", "nouser", "users", "_netdev", "nofail",
                          "defaults", "async", "sync", "atime", "noatime", "relatime"}
# -o names that are not a long option's name with _ for -
_MOUNT_OPTION_ALIASES = {"ro": "read_only"}


class CommandParser(argparse.ArgumentParser):
    """A subcommand's parser that reports an unknown option itself: with its
    own usage, naming the option and the closest real one (argparse would
    hand it to the top-level parser, whose usage helps nobody)."""

    def __init__(self, *args, **kwargs):
        self.named_actions: list[argparse.Action] = []
        # mount's: ``-o a,b=c`` (mount(8)'s form, fstab's) becomes ``--a --b=c``
        # before parsing, so each value is checked, and refused with the same
        # message, as its long option
        self.mount_options = False
        super().__init__(*args, **kwargs)

    def add_argument(self, *args, **kwargs) -> argparse.Action:
        action = super().add_argument(*args, **kwargs)
        self.named_actions.append(action)
        return action

    def long_options(self) -> list[str]:
        return [s for a in self.named_actions for s in a.option_strings if s.startswith("--")]

    def parse_known_args(self, args=None, namespace=None):
        if self.mount_options:
            args = self._expand(list(sys.argv[1:] if args is None else args))
        namespace, extras = super().parse_known_args(args, namespace)
        if extras:
            self.error(self._unknown(extras))
        return namespace, extras

    def _unknown(self, extras: list[str]) -> str:
        option = next((e for e in extras if e.startswith("-")), None)
        if option is None:
            return f"unexpected argument: {extras[0]}"
        name = option.partition("=")[0]
        return f"unknown option {name}" + suggestion(name, self.long_options())

    def _expand(self, argv: list[str]) -> list[str]:
        out: list[str] = []
        items = iter(argv)
        for arg in items:
            if arg == "--":
                out += [arg, *items]
                break
            if arg == "-o":
                group = next(items, None)
                if group is None:
                    self.error("-o needs options (-o ro,uid=1000)")
            elif arg.startswith("-o") and not arg.startswith("--"):
                group = arg[2:]
            else:
                out.append(arg)
                continue
            for item in filter(None, group.split(",")):
                out += self._long_option(item)
        return out

    def _long_option(self, item: str) -> list[str]:
        name, eq, value = item.partition("=")
        if name in _GENERIC_MOUNT_OPTIONS or name.startswith("x-"):
            return []
        option = "--" + _MOUNT_OPTION_ALIASES.get(name, name).replace("_", "-")
        action = next((a for a in self.named_actions if option in a.option_strings), None)
        if action is None or option == "--help":
            known = [o[2:].replace("-", "_") for o in self.long_options()
                     if o != "--help"] + list(_MOUNT_OPTION_ALIASES)
            self.error(f"unknown mount option -o {name}" + suggestion(name, known, "-o "))
        if action.nargs == 0:
            if eq:
                self.error(f"mount option -o {name} takes no value")
            return [option]
        if not value:
            self.error(f"mount option -o {name} needs a value (-o {name}=...)")
        return [f"{option}={value}"]


def suggestion(name: str, known: list[str], prefix: str = "") -> str:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{close[0]}?)" if close else ""


def checked(parse):
    """An argparse type that checks a value with ``parse`` (parse_size, ...)
    and keeps its text: the command refuses a bad value naming the option,
    and the daemon is handed the same text."""
    def check(text: str) -> str:
        try:
            parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    check.__name__ = parse.__name__
    return check
