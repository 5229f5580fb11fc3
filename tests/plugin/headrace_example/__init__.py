"""An example headrace plugin (see docs/extending.md)."""
