"""The ``vagonfs`` command: argv to subcommands; loads the daemon only to mount."""
