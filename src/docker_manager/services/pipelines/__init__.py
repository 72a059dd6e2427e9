"""The html-site pipeline: clone, build, push, pull, run, probe."""
