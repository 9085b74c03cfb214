"""Answers of the list queries and of get_dataset, kept encoded while memory does not
change.

A list answer (`list_sites`, `list_datasets`...) is a function of the
inventory in memory alone, and building and encoding one walks many objects
(a whole site's replicas, thousands of datasets).  The inventory changes only
through a ChangeSet, which counts every change it applies and every undo
(`Inventory.applied`, `Inventory.undone`): an answer is kept, as the JSON it
encodes to, while both counts stand.  A commit counter would not do: queries
see changes applied and not yet committed, and a failed commit, a dry run or a
refused request undoes memory without any commit.

What is kept is bounded in bytes and in number; the oldest answers go first,
and one larger than a quarter of the bytes is never kept.
"""

from collections import OrderedDict

import orjson

ANSWER_BYTES = 32 << 20
ANSWERS = 4096


class Answers:
    def __init__(self, budget: int = ANSWER_BYTES, count: int = ANSWERS):
        self.budget = budget
        self.count = count
        self._version = None    # (inventory, applied, undone) the kept answers are of
        # key -> encoded answer, oldest first (a dict's first entry is found by a walk past
        # every entry removed before it: some 2 us a call once thousands are kept)
        self._kept = OrderedDict()
        self._bytes = 0

    def get(self, inventory, key, answer) -> orjson.Fragment:
        """`answer()` encoded, kept from an earlier call at this version when there is
        one; `key` says what was asked (method and parameters)."""
        version = (inventory, inventory.applied, inventory.undone)
        if version != self._version:
            self._version = version
            self._kept.clear()
            self._bytes = 0
        encoded = self._kept.get(key)
        if encoded is None:
            encoded = orjson.dumps(answer())
            self._keep(key, encoded)
        return orjson.Fragment(encoded)

    def _keep(self, key, encoded: bytes):
        size = len(encoded)
        if size > self.budget // 4:
            return
        kept = self._kept
        while kept and (self._bytes + size > self.budget or len(kept) >= self.count):
            self._bytes -= len(kept.popitem(last=False)[1])
        kept[key] = encoded
        self._bytes += size
