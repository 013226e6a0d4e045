"""The running policy daemon: the loaded rule set, the evaluation pipeline, login, gRPC."""
