"""Delivery: the reference delivery worker and the producers of delivery reports.

- `worker`: `bulkstream deliver --http URL`: sends from `bulk.sends` POSTed to a
  provider, outcomes reported on `bulk.delivery-status`, at least once;
- `provider`: one send's POST, retried with back-off, and its outcome;
- `progress`: which offsets of `bulk.sends` may be committed (pure);
- `reports`: delivery reports read, checked and produced (`bulkstream report`
  and the worker).
"""
