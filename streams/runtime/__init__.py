"""The faust runtime: the app, its topics and state table (app.py), every fix of faust,
mode or aiokafka behaviour (patches/, one module per fix), the small public functions
the rest of the tree uses on faust's objects (access.py), and running it as a worker
process (service.py). Nothing outside this package imports faust, mode or aiokafka,
nor touches their private attributes."""
