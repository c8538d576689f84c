"""tunekit's diagnostics inside other frameworks' trainers.

- ``tunekit.integrations.lightning.TunekitCallback``: a Lightning callback (needs the
  ``lightning`` extra: ``pip install 'tunekit[lightning]'``).
"""
