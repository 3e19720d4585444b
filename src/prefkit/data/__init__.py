"""Records, the item index, the one format registry and its readers, and validation.

Layout: :mod:`~prefkit.data.table` (one input, whatever holds it), :mod:`~prefkit.data.formats`
(the registry: every format of every record kind, and the one reading path), the readers
(``_formats*``: votes, judges, counts/rankings, text pairs/ratings/best-of-N/responses,
alignment rows), the entry points :func:`read_votes`, :func:`read_preferences`,
:func:`read_responses`, :func:`read_alignment_data`, and the records they return.

Every name below is imported from its submodule on first use (PEP 562): ``from
prefkit.data import PairCounts`` does not load the readers, and no reader loads pandas or
pyarrow before it reads a file.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.data.alignment import AlignmentData, read_alignment_data
    from prefkit.data.errors import InvalidInputError, InvalidRow
    from prefkit.data.formats import Format, Role, formats
    from prefkit.data.readers import (
        FORMATS,
        ReadResult,
        describe_formats,
        detect_format,
        read_votes,
        register,
    )
    from prefkit.data.records import (
        ItemIndex,
        Outcome,
        PairCounts,
        PairwiseVotes,
        Rankings,
        aggregate,
    )
    from prefkit.data.table import Table
    from prefkit.data.text import (
        HH_HARMLESS_SPLIT_SEED,
        BestOfN,
        Responses,
        TextPairs,
        TextRatings,
        hh_harmless_split,
        render_chat,
        split_train_test,
    )
    from prefkit.data.text_readers import (
        TextReadResult,
        describe_text_formats,
        detect_text_format,
        read_preferences,
        read_responses,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.data.alignment": ["AlignmentData", "read_alignment_data"],
    "prefkit.data.errors": ["InvalidInputError", "InvalidRow"],
    "prefkit.data.formats": ["Format", "Role", "formats"],
    "prefkit.data.readers": ["FORMATS", "ReadResult", "describe_formats", "detect_format",
                             "read_votes", "register"],
    "prefkit.data.records": ["ItemIndex", "Outcome", "PairCounts", "PairwiseVotes", "Rankings",
                             "aggregate"],
    "prefkit.data.table": ["Table"],
    "prefkit.data.text": ["HH_HARMLESS_SPLIT_SEED", "BestOfN", "Responses", "TextPairs",
                          "TextRatings", "hh_harmless_split", "render_chat", "split_train_test"],
    "prefkit.data.text_readers": ["TextReadResult", "describe_text_formats",
                                  "detect_text_format", "read_preferences", "read_responses"],
})

__all__ = [
    "AlignmentData",
    "BestOfN",
    "FORMATS",
    "Format",
    "HH_HARMLESS_SPLIT_SEED",
    "InvalidInputError",
    "InvalidRow",
    "ItemIndex",
    "Outcome",
    "PairCounts",
    "PairwiseVotes",
    "Rankings",
    "ReadResult",
    "Responses",
    "Role",
    "Table",
    "TextPairs",
    "TextRatings",
    "TextReadResult",
    "aggregate",
    "describe_formats",
    "describe_text_formats",
    "detect_format",
    "detect_text_format",
    "formats",
    "hh_harmless_split",
    "read_alignment_data",
    "read_preferences",
    "read_responses",
    "read_votes",
    "register",
    "render_chat",
    "split_train_test",
]
