"""dynamod: the Dynamo inventory daemon."""

__version__ = "0.1.0"
