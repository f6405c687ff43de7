"""Sparkplug B: the edge node (node.py) and its payloads (payloads.py).

``vendor/sparkplug_b.proto`` is Eclipse Tahu's definition, unchanged (github.com/
eclipse/tahu, sparkplug_b/sparkplug_b.proto at commit 46f25e7; Copyright
Cirrus Link Solutions and others, EPL-2.0, see the file's header).
``sparkplug_b_pb2.py`` is what protoc 3.21.12 makes of it; ``generate.py``
makes it again and ``--check`` says whether the committed file is still
exactly that (a test runs the check).
"""
