"""bulkstream's stream side: the faust app, its topics, agents and the CLI."""
