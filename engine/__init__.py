"""Keeptime's durable workflow engine."""
