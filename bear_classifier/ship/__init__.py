"""From a model to a running Space: `hub` (the Hub: pinned downloads, pushes), `spacetree` (the files a Space runs,
and its README), `spacecheck` (that tree run here first, in a venv of its own) and `deploy` (the command)."""
