"""Importers that turn other tools' dumps into contexts (zarr and pyarrow load lazily)."""

from splatnlp.mechinterp.context.importers.upstream import import_upstream_dump, read_upstream_dump

__all__ = ["import_upstream_dump", "read_upstream_dump"]
