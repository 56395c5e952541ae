"""The faust runtime: the app, its topics and state table (app.py), every fix of faust,
mode or aiokafka behaviour (patches/, one module per fix), and the small public
functions the rest of the tree uses on faust's objects (access.py). Nothing outside
this package touches their private attributes."""
