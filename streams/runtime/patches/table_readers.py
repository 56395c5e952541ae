"""Patch: a table's RocksDB keeps its index and filter blocks in the block cache,
in partitions, so the memory of its open files does not grow with its data.

Upstream: none (a missing option, not a fault): faust's `RocksDBOptions`
(0.15.3 and master) builds the rocksdict table factory itself, with a
binary-search index and a filter per file, both held by the file's reader
outside the block cache, and passes no other table option (`extra_options`
never reach rocksdict).

Failure it prevents: a worker whose memory follows the size of its jobs. A
job's dedupe and message-id index add two keys per user; the readers of
those files held about 3 MB per million users, so a 10M-user job's owner
peaked 35 MiB above a 1M-user job's (docs/benchmarks.md, memory). Here the
index and the filter of each file are cut in 4 KiB partitions that live in
the block cache like data blocks; only their top levels stay pinned. The
filter has 10 bits a key (with faust's 3, about one dedupe miss in four reads
a data block, which the partitions would then have to fetch as well). It
costs ingest about 2 microseconds of CPU a user (docs/benchmarks.md, memory).

The table's other options (faust's `extra_options`) reach rocksdict here too:
the state compacts level 0 once 8 files wait, not 4 (streams/runtime/app.py).

Regression test: tests/streams/runtime/test_table_readers.py.
"""

from __future__ import annotations

from typing import Any

import faust
import rocksdict
from faust.stores import rocksdb as rocksdb_store
from yarl import URL

PARTITION_BYTES = 4096


class BoundedReadersOptions(rocksdb_store.RocksDBOptions):
    """faust's options for a rocksdict store, with a table factory whose index and
    filter blocks are partitioned and cached; any other option of the table's is given
    to rocksdict's setter of that name (`level_zero_file_num_compaction_trigger`:
    `Options.set_level_zero_file_num_compaction_trigger`)."""

    def as_options(self) -> rocksdict.Options:
        if not self.use_rocksdict:
            raise RuntimeError("table_readers patches the rocksdict store only")
        options: rocksdict.Options = super().as_options()
        table = rocksdict.BlockBasedOptions()
        table.set_block_cache(rocksdict.Cache(self.block_cache_size))
        table.set_bloom_filter(self.bloom_filter_size, False)  # full filters, which partition
        table.set_partition_filters(True)
        table.set_index_type(rocksdict.BlockBasedIndexType.two_level_index_search())
        table.set_metadata_block_size(PARTITION_BYTES)
        table.set_cache_index_and_filter_blocks(True)
        table.set_pin_top_level_index_and_filter(True)
        table.set_pin_l0_filter_and_index_blocks_in_cache(True)
        options.set_block_based_table_factory(table)
        # faust keeps the options it has no field for, and never applies them.
        for name, value in self.extra_options.items():
            getattr(options, f"set_{name}")(value)
        return options


class BoundedReadersStore(rocksdb_store.Store):
    """faust's RocksDB store, opening its partitions with `BoundedReadersOptions`."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # As faust's Store builds its RocksDBOptions (0.15.3), with this class.
        self.rocksdb_options = BoundedReadersOptions(
            **(self.options or {}), use_rocksdict=self.use_rocksdict
        )


class BoundedReaders(faust.Table):  # type: ignore[type-arg]
    """A faust table whose `rocksdb://` store is a `BoundedReadersStore` (or the
    subclass its `store_class` names)."""

    store_class: type[BoundedReadersStore] = BoundedReadersStore

    def _new_store_by_url(self, url: str | URL) -> Any:
        if URL(str(url)).scheme != "rocksdb":
            return super()._new_store_by_url(url)
        return self.store_class(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
