"""Reporters read ValidationReport records; none of them runs a check."""
