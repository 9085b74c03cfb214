"""The original Dynamo's import paths, for its policy scripts run as applications:
`from dynamo.dataformat import Site, Dataset` and
`from dynamo.core.executable import inventory, authorized`.  Nothing else lives
here: the daemon is `dynamod`, the clients `dynamoclient`.
"""
