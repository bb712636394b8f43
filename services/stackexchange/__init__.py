"""Import of a Stack Exchange data dump as Agora events (see docs/import.md)."""

from services.stackexchange.importer import ImportProgress, ImportSummary, import_stackexchange
from services.stackexchange.mapping import MappingReport, iter_events

__all__ = [
    "ImportProgress",
    "ImportSummary",
    "MappingReport",
    "import_stackexchange",
    "iter_events",
]
