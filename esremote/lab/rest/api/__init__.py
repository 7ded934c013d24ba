"""REST handlers, one module per API family, registered by spec API name (`routes.api`)."""
