"""This folder holds the stand-in harness for Azure's own SDK tests; nothing here is a test."""

collect_ignore_glob = ["*"]
