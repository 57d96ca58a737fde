"""Declared egress: the destinations a model may reach (`sandbox.egress`), the proxy outside its cage that
allows those and nothing else and records every connection, and the door inside the cage that leads to it."""
