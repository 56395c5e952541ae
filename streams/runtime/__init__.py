"""The faust runtime: the app, its topics and state table, and every fix of faust,
mode or aiokafka behaviour. No other package touches their private attributes."""
