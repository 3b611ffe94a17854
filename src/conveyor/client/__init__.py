"""A client of a Conveyor server's HTTP API, for the `conveyor task …` commands: it
never touches a database, only what any API client may."""
