"""Records, the item index, readers and validation.

Every name below is imported from its submodule on first use (PEP 562): ``from
prefkit.data import PairCounts`` does not load the readers, and no reader loads pandas or
pyarrow before it reads a file.
"""

from __future__ import annotations

from prefkit import _lazy_exports

TYPE_CHECKING = False
if TYPE_CHECKING:
    from prefkit.data.errors import InvalidInputError, InvalidRow
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
    from prefkit.data.text import (
        HH_HARMLESS_SPLIT_SEED,
        BestOfN,
        TextPairs,
        TextRatings,
        hh_harmless_split,
        render_chat,
        split_train_test,
    )
    from prefkit.data.text_readers import (
        TEXT_FORMATS,
        TextReadResult,
        describe_text_formats,
        detect_text_format,
        read_preferences,
        register_text_format,
    )

__getattr__, __dir__ = _lazy_exports(__name__, {
    "prefkit.data.errors": ["InvalidInputError", "InvalidRow"],
    "prefkit.data.readers": ["FORMATS", "ReadResult", "describe_formats", "detect_format",
                             "read_votes", "register"],
    "prefkit.data.records": ["ItemIndex", "Outcome", "PairCounts", "PairwiseVotes", "Rankings",
                             "aggregate"],
    "prefkit.data.text": ["HH_HARMLESS_SPLIT_SEED", "BestOfN", "TextPairs", "TextRatings",
                          "hh_harmless_split", "render_chat", "split_train_test"],
    "prefkit.data.text_readers": ["TEXT_FORMATS", "TextReadResult", "describe_text_formats",
                                  "detect_text_format", "read_preferences",
                                  "register_text_format"],
})

__all__ = [
    "BestOfN",
    "HH_HARMLESS_SPLIT_SEED",
    "TEXT_FORMATS",
    "TextPairs",
    "TextRatings",
    "TextReadResult",
    "describe_text_formats",
    "detect_text_format",
    "hh_harmless_split",
    "read_preferences",
    "register_text_format",
    "render_chat",
    "split_train_test",
    "FORMATS",
    "InvalidInputError",
    "InvalidRow",
    "ItemIndex",
    "Outcome",
    "PairCounts",
    "PairwiseVotes",
    "Rankings",
    "ReadResult",
    "aggregate",
    "describe_formats",
    "detect_format",
    "read_votes",
    "register",
]
