"""The command surface's one parser: words -> a Session call, for the magic and the shell."""
