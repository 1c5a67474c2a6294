"""The importer: a file -> a dataset in the workspace, with a report.

sniff -> plan -> stage -> publish."""
