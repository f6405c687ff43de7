"""The BM-SM string master: register table, decoding, read planner, poller, simulator."""
