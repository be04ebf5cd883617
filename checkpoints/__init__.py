"""Small reference checkpoints trained by the project (installed as
``pixjax._checkpoints``; found with ``importlib.resources``, never by a path relative to
the source tree). Each folder holds ``metadata.json`` and an orbax ``variables/``."""
