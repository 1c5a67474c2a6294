"""One module per file format the importer knows, each holding all of that format's rules
(how it is recognised, its column plan, its special decoding), named by formats/registry.py."""
