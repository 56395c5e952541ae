"""Every change of faust, mode or aiokafka behaviour: one module per fix, each
naming the upstream issue (or the failure it prevents) and its regression test.

streams/runtime/app.py puts them together. Checked against the newest
releases (faust-streaming 0.15.3, mode-streaming 0.7.1, aiokafka 0.14.0) and
faust-streaming's master: each is still needed, none dropped.

* read_committed: faust's consumer reads `read_committed` (faust only in exactly_once)
* fetch_wait: the broker holds a fetch 100 ms, not faust's fixed 1.5 s (robinhood/faust#281)
* prefetch_backoff: records faust leaves untaken hold up the fetches 0.01 s, not aiokafka's fixed
  0.1 s (faust pauses partitions in its own bookkeeping only)
* buffer_pause: no pause of a partition for a full stream buffer (faust-streaming#53, #74, #88)
* stale_acks: no ack of a message skipped across a rebalance (faust-streaming#221/#223;
  faust's pure-Python stream iterator only)
* flow_control: resuming flow keeps the stream queues (faust-streaming#236, #253)
* durable_commit: offsets committed only after their records are in Kafka (faust-streaming#273)
* feed_handover: the command feed pauses before faust revokes, stops before faust stops
* current_event: table writes outside streams, in a stand-in event (faust-streaming#497)
* restore_hooks: a table tells what it restored from its changelog
* changelog_batch: a table writes many keys at once (one RocksDB write batch, one changelog
  record batch, in order with faust's own records)
* stale_stores: a store ahead of its changelog is rebuilt, not fatal (faust-streaming#158)
* table_readers: a store's index and filter blocks live in its block cache, partitioned
* key_families: a store's keys live in column families by kind (a compaction of a job's keys
  never rewrites the partition's)
* read_offsets: a partition assigned starts with no read offset (a revoke can leave a stale one;
  robinhood/faust#115, faust-streaming#216)
"""
