"""The controller's phases, one small object each (see ``docs/architecture.md``)."""
