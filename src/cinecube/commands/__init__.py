"""The `cinecube` subcommands, one module per group; `cinecube.cli` wires them.

Every module here defines `register(commands, eval_commands)`, which adds its parsers to the
top-level `cinecube` subcommands and/or to `cinecube eval ...`. Handlers import heavy
modules (torch, cv2, c2pa) inside themselves so `cinecube --help` stays fast. Errors the
user can fix are raised as `CinecubeError` and printed as one line with exit status 2.
"""
