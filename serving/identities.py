"""The aliases `/score` accepts: the workspace's identities, resolved as of now, held in memory.

A requested id is answered for the customer it is now (`clv.inputs.identities`: the rows with
valid_from before now). An id the identities table does not hold as-is is looked up by its
pseudonym too when `alias_id` is a hashed personal column (`ingest.personal_columns` holds it
and `ingest.personal_action` is hash; `clv.inputs.personal`): a caller may send the clear
e-mail whose hash was ingested. When `customer_id` itself is a hashed personal column, every stored
id is a pseudonym, so a requested id that is not one is hashed first. The table is read once at
start and again, off the request path, when its file changes or when a row's valid_from
passes (`AliasHolder.refresh`, on the registry poll).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from clv.core.errors import ConfigError
from clv.core.settings import Settings
from clv.core.store import table_path
from clv.inputs.identities import read_identities
from clv.inputs.personal import PREFIX, personal_key, pseudonym


@dataclass(frozen=True)
class Aliases:
    """Who each alias is now; empty without an identities table."""

    moved: Mapping[str, str] = field(default_factory=dict)
    """Ids that are another customer now, and that customer."""
    held: frozenset[str] = frozenset()
    """Every id of the identities table (found as-is: no pseudonym lookup)."""
    key: bytes | None = None
    """The pseudonym key, when alias_id is stored hashed."""
    next_change: pd.Timestamp | None = None
    """The earliest valid_from after the load: the answer changes then."""
    hashed_ids: bool = False
    """customer_id is a hashed personal column: a clear id is looked up by its pseudonym."""

    def resolve(self, ids: Sequence[str]) -> list[str]:
        """The customer each requested id is now (itself when no row maps it)."""
        if not self.moved and not self.hashed_ids:
            return list(ids)
        return [self._one(i) for i in ids]

    def _one(self, given: str) -> str:
        if self.hashed_ids and self.key is not None and not given.startswith(PREFIX):
            given = pseudonym(given, self.key)  # every stored id is a pseudonym
        found = self.moved.get(given)
        if found is not None:
            return found
        if self.key is not None and given not in self.held:
            return self.moved.get(pseudonym(given, self.key), given)
        return given


def load_aliases(settings: Settings, *, now: pd.Timestamp) -> Aliases:
    """The identities as of `now`; ConfigError when alias_id is hashed and the key is unset."""
    ingest = settings.ingest
    personal = {c.strip() for c in ingest.personal_columns}
    hashing = ingest.personal_action == "hash"
    hashed_ids = hashing and "customer_id" in personal
    identities = read_identities(settings)
    if identities is None:
        return Aliases(key=personal_key(settings), hashed_ids=True) if hashed_ids else Aliases()
    hashed = hashing and ("alias_id" in personal or hashed_ids)
    key = personal_key(settings) if hashed else None
    edges = identities.edges
    held = frozenset(edges["alias_id"]) | frozenset(edges["customer_id"])
    later = edges.loc[edges["valid_from"] >= now, "valid_from"]
    return Aliases(
        moved=identities.at(now),
        held=held,
        key=key,
        next_change=pd.Timestamp(later.min()) if len(later) else None,
        hashed_ids=hashed_ids,
    )


class AliasHolder:
    """The aliases `/score` reads (one reference, swapped whole); `refresh` reloads them when
    the table's file changed or a row's valid_from passed, and keeps the old ones on failure."""

    def __init__(
        self, settings: Settings, *, clock: Callable[[], pd.Timestamp] | None = None
    ) -> None:
        self._settings = settings
        self._clock = clock or (lambda: pd.Timestamp.now(tz="UTC"))
        self._lock = threading.Lock()
        self._signature: tuple[int, int] | None = None
        self._loaded = False
        self.current = Aliases()
        self.error: str | None = None

    def refresh(self) -> bool:
        """Reload when needed; True when the aliases were replaced."""
        with self._lock:
            now = self._clock()
            signature = self._file_signature()
            due = self.current.next_change is not None and now > self.current.next_change
            same = self._loaded and signature == self._signature
            if same and not due and self.error is None:
                return False
            try:
                aliases = load_aliases(self._settings, now=now)
            except (ConfigError, OSError, ValueError, KeyError) as exc:
                self.error = f"identities: {type(exc).__name__}: {exc}"
                return False
            self._signature, self._loaded = signature, True
            self.current = aliases  # one reference assignment: a request sees old or new
            self.error = None
            return True

    def _file_signature(self) -> tuple[int, int] | None:
        path = table_path(self._settings, "identities")
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        return (stat.st_mtime_ns, stat.st_size)
